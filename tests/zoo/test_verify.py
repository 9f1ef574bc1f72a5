"""Verified zoos: every kind of damage is named by `verify_zoo`, refused by `Zoo.open` with a
`ZooError` (no other exception) and by `weightspace zoo verify` with exit 2; a clean zoo
verifies clean; a resumed writer writes a damaged shard again."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.specs import random_weights
from weightspace import NetworkSpec, Weights
from weightspace.cli import app
from weightspace.zoo import verify as verify_module
from weightspace.zoo.damage import DAMAGE as KIT
from weightspace.zoo.damage import (
    edit_table,
    header,
    parse_header,
    poke,
    rewrite_header,
    set_cell,
    shard_file,
)
from weightspace.zoo.store import Zoo, ZooError, ZooWarning, ZooWriter, assign_splits
from weightspace.zoo.verify import verify_zoo

SPEC = NetworkSpec.siren(2, [8, 8], 1)
N = 4  # networks per shard; 3 shards: ids 0..11
runner = CliRunner()


def _weights(k: int) -> Weights:
    return random_weights(SPEC, N, generator=torch.Generator().manual_seed(k))


def _columns(k: int, splits: np.ndarray) -> dict:
    return {"label": [(k * N + r) % 3 for r in range(N)], "split": list(splits[k * N:(k + 1) * N]),
            "score": [0.25 * r for r in range(N)]}


def _build(path: Path, shards: int = 3, *, finalize: bool = True):
    splits = assign_splits(3 * N, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    w = ZooWriter(path, SPEC, shard_size=N, provenance={"test": True})
    for k in range(shards):
        w.write_shard(k, _weights(k), _columns(k, splits))
    return w.finalize() if finalize else w


@pytest.fixture
def zoo(tmp_path) -> Path:
    _build(tmp_path / "z")
    return tmp_path / "z"


_shard, _header, _parse, _table, _set = shard_file, header, parse_header, edit_table, set_cell
_rewrite_header = rewrite_header


def _poke(file: Path, name: str, element: int, value: float) -> None:
    """Overwrite one F32 element of tensor ``name`` (flat index over [n, ...]) in place."""
    poke(file, name, 0, element, value)


# damage -> (file the problem names, relative to the zoo; what it says); the damage itself: zoo.damage.DAMAGE
EXPECT = {
    "nan": r"content hash mismatch.*'layers\.1\.weight' holds 1 NaN/inf value, the first NaN at row 2 \(id 6\)",
    "inf": r"content hash mismatch.*'layers\.2\.bias' holds 1 NaN/inf value, the first inf at row 3 \(id 3\)",
    "exponent_bit": r"content hash mismatch: the shard changed after it was written \(sha256 \w+…, recorded \w+…\)$",
    "random_bytes": r"content hash mismatch",
    "swapped_shards": r"is shard 2 by its own metadata, not shard 1: shard files exchanged",
    "overlapping_offsets": r"tensors 'layers\.0\.bias' and 'layers\.1\.bias' overlap",
    "f16": r"tensor 'layers\.0\.weight' is F16, the zoo stores F32",
    "f64": r"tensor 'layers\.0\.weight' is F64, the zoo stores F32",
    "i32": r"tensor 'layers\.0\.weight' is I32, the zoo stores F32",
    "duplicated_row": r"ids listed more than once: 4$",
    "negative_row": r"ids 11: negative shard or row \(id 11 is at shard 2 row -1\)",
    "row_past_end": r"ids 11: row past the end of the shard \(id 11 is at row 7 of shard 2, which holds 4 networks\)",
    "missing_row": r"rows 2 \(ids 6\) are not in table\.parquet",
    "label_in_table_changed": r"column 'label' differs from the shards' own copy of their rows at ids 7 \(id 7: 2 in the table, 1 in shard 1\)",
    "table_deleted": r"is missing, but zoo\.json lists 3 shards and 3 shard files are on disk",
    "zoo_json_nested": r"damaged zoo\.json \(RecursionError",
    "spec_nested": r"damaged zoo\.json \(RecursionError",
    "version_string": r"zoo format version is '2', not a positive integer",
    "shard_is_directory": r"is a directory, not a safetensors file",
    "shard_missing": r"is missing \(listed in table\.parquet\)",
    "truncated": r"truncated or padded",
}
DAMAGE = {name: (apply, file, EXPECT[name]) for name, (apply, file) in KIT.items()}


def test_every_damage_has_an_expected_message():
    assert set(EXPECT) == set(KIT)


def _first_line(report, path: Path, file: str, what: str) -> str:
    named = [str(p) for p in report.problems if p.file == path / file and re.search(what, p.what)]
    assert named, f"no problem names {file}: {what!r}; got {report.lines()}"
    return named[0]


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_is_named_refused_and_exits_2(zoo, case):
    damage, file, what = DAMAGE[case]
    damage(zoo)
    report = verify_zoo(zoo)
    assert not report.ok
    line = _first_line(report, zoo, file, what)
    assert not any("verification stopped" in p for p in report.lines())  # every case met by a named check
    with pytest.raises(ZooError) as e:
        Zoo.open(zoo)
    assert str(e.value).startswith(str(zoo)) and "\n" not in str(e.value)
    assert str(e.value).split(" (and ")[0] == report.lines()[0]  # the first problem, as verify names it
    r = runner.invoke(app, ["zoo", "verify", str(zoo)])
    assert r.exit_code == 2
    assert line in r.stdout.splitlines()
    r = runner.invoke(app, ["zoo", "verify", str(zoo), "--json"])
    assert r.exit_code == 2 and json.loads(r.stdout)["problems"]


def test_clean_zoo_verifies_clean(zoo):
    report = verify_zoo(zoo)
    assert report.ok, report.lines()
    assert (report.networks, len(report.shards), report.hashes_checked, report.values_checked) == (12, 3, 3, True)
    assert report.warnings == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZooWarning)  # no warning either
        z = Zoo.open(zoo)
    assert len(z) == 12 and torch.equal(z.weights([6]).weights[1][0, 0], _weights(1).weights[1][2, 0])
    r = runner.invoke(app, ["zoo", "verify", str(zoo)])
    assert r.exit_code == 0 and "ok, 12 networks in 3 shards (3 content hashes checked, values checked)" in r.stdout
    assert json.loads(runner.invoke(app, ["zoo", "verify", str(zoo), "--json"]).stdout)["ok"] is True
    assert runner.invoke(app, ["zoo", "info", str(zoo)]).exit_code == 0


def test_what_is_recorded_per_shard(zoo):
    meta = json.loads((zoo / "zoo.json").read_text())
    assert [(e["index"], e["ids"]) for e in meta["shards"]] == [(0, [0, 4]), (1, [4, 8]), (2, [8, 12])]
    for e in meta["shards"]:
        own = _header(_shard(zoo, e["index"]))[0]["__metadata__"]
        assert own["shard"] == str(e["index"]) and json.loads(own["ids"]) == e["ids"] and own["sha256"] == e["sha256"]
    assert len({e["sha256"] for e in meta["shards"]}) == 3


def test_a_shard_replaced_by_another_consistent_one_is_caught(zoo, tmp_path):
    # shard 1 of another zoo with the same spec carries a matching hash of its own; zoo.json's copy differs
    other = tmp_path / "other"
    w = ZooWriter(other, SPEC, shard_size=N)
    w.write_shard(1, _weights(7), {"label": [0] * N, "split": ["train"] * N, "score": [0.0] * N})
    _shard(zoo, 1).write_bytes(_shard(other, 1).read_bytes())
    report = verify_zoo(zoo)
    _first_line(report, zoo, "shards/00001.safetensors", "its content hash is not the one zoo.json records")


def test_list_valued_columns_are_compared_too(tmp_path):
    # parquet gives such a column back as arrays, the shards' JSON rows as lists
    w = ZooWriter(tmp_path / "z", SPEC, shard_size=N)
    w.write_shard(0, _weights(0), {"label": [0, 1, 2, 0], "hidden": [[8, 8]] * 3 + [[8, 9]]})
    w.finalize()
    assert verify_zoo(tmp_path / "z").ok
    _table(tmp_path / "z", lambda t: t.assign(hidden=[[8, 8]] * 4))
    _first_line(verify_zoo(tmp_path / "z"), tmp_path / "z", "table.parquet",
                r"column 'hidden' differs from the shards' own copy of their rows at ids 3 \(id 3: array\(\[8, 8\]\) in the table, \[8, 9\] in shard 0\)")


def test_cheap_open_reads_no_data_but_refuses_nan_when_gathered(zoo):
    _poke(_shard(zoo, 1), "layers.0.weight", 16 * 3, float("nan"))  # row 3 of shard 1: id 7
    z = Zoo.open(zoo, verify="cheap")
    assert torch.isfinite(z.weights([0, 1, 11]).weights[0]).all()
    with pytest.raises(ZooError, match=r"00001\.safetensors: row 3 \(id 7\) holds NaN or inf"):
        z.weights([0, 7])
    with pytest.raises(ZooError, match="content hash mismatch"):  # the hash still catches it at allow_nonfinite
        Zoo.open(zoo, allow_nonfinite=True)
    assert torch.isnan(Zoo.open(zoo, verify="cheap", allow_nonfinite=True).weights([7]).weights[0]).any()
    with pytest.raises(ValueError, match="verify must be"):
        Zoo.open(zoo, verify="none")


def _strip_hashes(path: Path) -> None:
    """Make ``path`` look like a zoo written before hashes were recorded."""
    meta = json.loads((path / "zoo.json").read_text())
    meta.pop("shards")
    (path / "zoo.json").write_text(json.dumps(meta))
    for file in (path / "shards").glob("*.safetensors"):
        _rewrite_header(file, lambda h: {**h, "__metadata__": {k: v for k, v in h["__metadata__"].items()
                                                                 if k in ("format", "shard", "rows")}})


def test_old_zoo_without_hashes_opens_with_one_warning(zoo):
    _strip_hashes(zoo)
    report = verify_zoo(zoo)
    assert report.ok and report.hashes_checked == 0 and len(report.warnings) == 1
    with pytest.warns(ZooWarning, match="3 of 3 shards were written without a content hash") as caught:
        Zoo.open(zoo)
    assert len([w for w in caught if issubclass(w.category, ZooWarning)]) == 1
    r = runner.invoke(app, ["zoo", "verify", str(zoo)])
    assert r.exit_code == 0 and "warning:" in r.stderr
    # its values are still checked: NaN is refused unless allowed
    _poke(_shard(zoo, 2), "layers.0.bias", 0, float("nan"))
    with pytest.raises(ZooError, match=r"00002\.safetensors: tensor 'layers\.0\.bias' holds 1 NaN/inf value, the first NaN at row 0 \(id 8\); allow_nonfinite"):
        Zoo.open(zoo)
    with pytest.warns(ZooWarning):
        z = Zoo.open(zoo, allow_nonfinite=True)
    assert torch.isnan(z.weights([8]).biases[0]).any()
    assert runner.invoke(app, ["zoo", "verify", str(zoo)]).exit_code == 2
    assert runner.invoke(app, ["zoo", "verify", str(zoo), "--allow-nonfinite"]).exit_code == 0
    assert runner.invoke(app, ["zoo", "info", str(zoo)]).exit_code == 2
    assert runner.invoke(app, ["zoo", "info", str(zoo), "--allow-nonfinite"]).exit_code == 0


@pytest.mark.parametrize("labels, shown", [
    ([0, 1, 2, 10**9], "1000000000"), ([0, 1, 2, float("nan")], "nan"), ([0, 1, 2, -1], "-1"),
    ([0, 1, 2, 2.5], "2.5"), (["0", "1", "2", "cat"], "'0'"),
])
def test_labels_that_are_not_classes(tmp_path, monkeypatch, labels, shown):
    # a zoo written with such labels (by an older weightspace or another tool): hashes agree, labels do not
    monkeypatch.setattr(verify_module, "label_problem", lambda *a, **k: None)
    splits = assign_splits(2 * N, {"train": 0.5, "test": 0.5}, seed=0)
    w = ZooWriter(tmp_path / "z", SPEC, shard_size=N)
    for k in range(2):
        ok = [str(v) for v in range(N)] if isinstance(labels[0], str) else [0, 1, 2, 0]
        w.write_shard(k, _weights(k), {**_columns(k, splits), "label": labels if k == 1 else ok})
    w.finalize()
    monkeypatch.undo()
    first = 0 if isinstance(labels[0], str) else 7
    what = rf"column 'label' holds {re.escape(shown)} at id {first}\b.*: class labels must be integers in \[0, 100000\)"
    report = verify_zoo(tmp_path / "z")
    line = _first_line(report, tmp_path / "z", "table.parquet", what)
    with pytest.raises(ZooError, match=what):
        Zoo.open(tmp_path / "z")
    r = runner.invoke(app, ["zoo", "verify", str(tmp_path / "z")])
    assert r.exit_code == 2 and line in r.stdout.splitlines()
    # and the writer refuses such labels before writing anything
    w = ZooWriter(tmp_path / "y", SPEC, shard_size=N)
    with pytest.raises(ValueError, match=what.replace(f"id {first}", f"id {first % N + N}")):
        w.write_shard(1, _weights(1), {"label": labels})
    assert not _shard(tmp_path / "y", 1).exists()


def test_classify_refuses_a_target_that_is_not_categorical(tmp_path):
    from weightspace.tasks.classify import classify_zoo

    splits = assign_splits(3 * N, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    w = ZooWriter(tmp_path / "z", SPEC, shard_size=N)
    for k in range(3):
        w.write_shard(k, _weights(k), {**_columns(k, splits), "big": [10**9] * N})
    zoo = w.finalize()
    with pytest.raises(ValueError, match=r"column 'score' holds 0\.25 at id 1 \(9 such values\): class labels must be integers"):
        classify_zoo(zoo, "mlp", target="score")
    with pytest.raises(ValueError, match=r"column 'big' holds 1000000000 at id 0"):
        classify_zoo(zoo, "mlp", target="big")


@pytest.mark.parametrize("damage", ["random_bytes", "swapped_shards", "shard_is_directory", "nan", "f16"])
def test_resume_writes_a_damaged_shard_again(tmp_path, damage):
    path = tmp_path / "z"
    _build(path, shards=3, finalize=False)  # a build stopped before it was finalized
    hit = {"random_bytes": {2}, "swapped_shards": {1, 2}, "shard_is_directory": {1}, "nan": {1}, "f16": {1}}[damage]
    DAMAGE[damage][0](path)
    with pytest.warns(ZooWarning, match=r"\.safetensors: .*; moved to .*\.damaged, its networks will be written again"):
        w = ZooWriter(path, SPEC, shard_size=N)
    assert w.completed_shards() == {0, 1, 2} - hit
    for k in hit:
        assert (path / "shards" / f"0000{k}.safetensors.damaged").exists()  # set aside, not deleted
        assert not _shard(path, k).exists()
    done = w.completed_shards()
    splits = assign_splits(3 * N, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    for k in range(3):
        if k not in done:
            w.write_shard(k, _weights(k), _columns(k, splits))
    zoo = w.finalize()
    assert verify_zoo(path).ok
    assert all(torch.equal(a, b) for a, b in zip(zoo.weights().tensors(), Weights.cat([_weights(k) for k in range(3)]).tensors()))
    assert zoo.table["id"].tolist() == list(range(12))


def test_resume_rebuilds_a_damaged_table_from_the_shards(zoo):
    _table(zoo, _set("label", 7, 2))
    assert not verify_zoo(zoo).ok
    assert ZooWriter(zoo, SPEC, shard_size=N).completed_shards() == {0, 1, 2}
    assert verify_zoo(zoo).ok and Zoo.open(zoo).table["label"].iat[7] == 1


def test_single_byte_changes_anywhere_in_a_shard_are_detected_or_harmless(zoo):
    # every byte of the file, header included: a change is named, never a traceback, unless
    # it left the parsed content the same (a padding space turned into other whitespace)
    file = _shard(zoo, 1)
    clean = file.read_bytes()
    header, start = _parse(clean)
    rng = np.random.default_rng(1)
    positions = np.concatenate([rng.choice(start, 80, replace=False), rng.choice(np.arange(start, len(clean)), 20)])
    missed = 0
    for at in positions:
        data = bytearray(clean)
        data[at] ^= int(rng.integers(1, 256))
        file.write_bytes(bytes(data))
        report = verify_zoo(zoo)
        assert not any("verification stopped" in p for p in report.lines()), (at, report.lines())
        if report.ok:
            missed += 1
            assert _parse(bytes(data)) == (header, start) and data[start:] == clean[start:], at
        else:
            with pytest.raises(ZooError):
                Zoo.open(zoo)
    assert missed <= 5  # only whitespace in the header's padding can change harmlessly
    file.write_bytes(clean)
    assert verify_zoo(zoo).ok
