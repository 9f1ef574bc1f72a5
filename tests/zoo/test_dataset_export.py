"""Zoos as datasets: `ZooDataset` over the memory maps, exports to Hugging Face parquet and
numpy that round-trip exactly, and incomplete zoos refused unless asked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from tests.specs import random_weights
from weightspace import NetworkSpec
from weightspace.cli import app
from weightspace.zoo.dataset import ZooDataset
from weightspace.zoo.export import export_hf, export_numpy, import_hf, tensor_names, to_arrow
from weightspace.zoo.store import Zoo, ZooError, ZooWriter, assign_splits

SPEC = NetworkSpec.siren(2, [8, 8], 1)
N = 4  # networks per shard
runner = CliRunner()


def _build(path, shards: int = 3, *, finalize: bool = True):
    splits = assign_splits(shards * N, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    w = ZooWriter(path, SPEC, shard_size=N, num_networks=shards * N, provenance={"test": True})
    for k in range(shards):
        cols = {"label": [(k * N + r) % 3 for r in range(N)], "split": list(splits[k * N:(k + 1) * N]),
                "score": [0.25 * r + k for r in range(N)]}
        w.write_shard(k, random_weights(SPEC, N, generator=torch.Generator().manual_seed(k)), cols)
    return w.finalize() if finalize else w


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors()))


def test_dataset_items_and_batches_are_the_zoo_networks(tmp_path) -> None:
    zoo = _build(tmp_path / "z")
    ds = ZooDataset(zoo, split="train")
    pos = zoo.split("train")
    assert len(ds) == len(pos)
    w, y = ds[2]
    assert len(w) == 1 and y.dtype == torch.int64 and y.ndim == 0
    assert _same_weights(w, zoo.weights([pos[2]])) and int(y) == zoo.table["label"].iat[pos[2]]
    w, y = ds[[0, 3, 1]]
    assert _same_weights(w, zoo.weights(pos[[0, 3, 1]]))
    assert y.tolist() == zoo.table["label"].to_numpy()[pos[[0, 3, 1]]].tolist()
    assert ds.ids.tolist() == zoo.table["id"].to_numpy()[pos].tolist()
    w, y = ds[-1]
    assert _same_weights(w, zoo.weights([pos[-1]]))
    with pytest.raises(IndexError):
        ds[len(ds)]
    scores = ZooDataset(zoo, target="score")
    assert scores.targets.dtype == torch.float32 and len(scores) == len(zoo)
    assert isinstance(ZooDataset(zoo, target=None)[0], type(w))


def test_loader_visits_every_network_once_in_a_seeded_order(tmp_path) -> None:
    zoo = _build(tmp_path / "z")
    ds = ZooDataset(zoo, target="score")  # scores are distinct: they name the networks

    def order(**kw):
        seen = []
        for w, y in ds.loader(batch_size=5, **kw):
            assert len(w) == len(y) <= 5
            assert _same_weights(w, zoo.weights(np.searchsorted(zoo.table["score"].to_numpy(), y.numpy())))
            seen += y.tolist()
        return seen

    assert sorted(order(shuffle=True, seed=1)) == sorted(zoo.table["score"].tolist())
    assert order(shuffle=True, seed=1) == order(shuffle=True, seed=1) != order(shuffle=True, seed=2)
    assert order() == zoo.table["score"].tolist()


def test_dataset_refuses_bad_targets_and_incomplete_zoos(tmp_path) -> None:
    zoo = _build(tmp_path / "z")
    with pytest.raises(KeyError, match="no column 'nope'"):
        ZooDataset(zoo, target="nope")
    with pytest.raises(ValueError, match="'split' is object, not numeric"):
        ZooDataset(zoo, target="split")
    _build(tmp_path / "half", shards=3, finalize=False)
    partial = Zoo.open(tmp_path / "half", allow_incomplete=True)
    with pytest.raises(ZooError, match=r"incomplete: 12 of 12 networks planned are written"):
        ZooDataset(partial)
    assert len(ZooDataset(partial, allow_incomplete=True)) == 12


def test_open_refuses_an_incomplete_zoo_saying_how_much_is_there(tmp_path) -> None:
    w = ZooWriter(tmp_path / "z", SPEC, shard_size=N, num_networks=5 * N)
    w.write_shard(0, random_weights(SPEC, N, generator=torch.Generator().manual_seed(0)),
                  {"label": [0, 1, 2, 0], "split": ["train"] * 4})
    with pytest.raises(ZooError, match=r"incomplete: 4 of 20 networks planned are written \(1 of 5 shards\).*allow-incomplete"):
        Zoo.open(tmp_path / "z")
    assert len(Zoo.open(tmp_path / "z", allow_incomplete=True)) == 4
    r = runner.invoke(app, ["train", str(tmp_path / "z"), "--epochs", "1", "--no-progress"])
    assert r.exit_code == 2 and "4 of 20 networks" in r.output and "--allow-incomplete" in r.output
    r = runner.invoke(app, ["zoo", "info", str(tmp_path / "z")])  # info describes what is there
    assert r.exit_code == 0 and "INCOMPLETE" in r.output


def test_hf_export_round_trips_exactly(tmp_path) -> None:
    zoo = _build(tmp_path / "z")
    files = export_hf(zoo, tmp_path / "hf")
    assert sorted(f.name for f in files) == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet",
                                             "val-00000-of-00001.parquet"]
    t = pq.read_table(files[0])
    meta = json.loads(t.schema.metadata[b"weightspace"])
    assert NetworkSpec.from_dict(meta["spec"]) == SPEC
    hf = json.loads(t.schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["layers.0.weight"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 16, "_type": "Sequence"}
    back = import_hf(tmp_path / "hf", tmp_path / "back", shard_size=5)
    assert len(back) == len(zoo) and back.spec == SPEC
    assert _same_weights(back.weights(), zoo.weights())
    for c in ("label", "split", "score"):
        assert back.table[c].tolist() == zoo.table[c].tolist()
    assert back.provenance["imported_from"]["format"] == "weightspace-zoo-rows"


def test_numpy_export_loads_without_pickle(tmp_path) -> None:
    zoo = _build(tmp_path / "z")
    out = export_numpy(zoo, tmp_path / "z.npz", split="val")
    with np.load(out, allow_pickle=False) as f:
        pos = zoo.split("val")
        w = zoo.weights(pos)
        for name, t in zip(tensor_names(SPEC), w.tensors()):
            assert np.array_equal(f[name], t.squeeze(1).numpy())
        assert f["table.split"].tolist() == ["val"] * len(pos)
        assert NetworkSpec.from_json(str(f["__spec__"])) == SPEC


def test_import_checks_what_it_reads(tmp_path) -> None:
    zoo = _build(tmp_path / "z")
    table = to_arrow(zoo)
    plain = tmp_path / "plain.parquet"
    pq.write_table(table.replace_schema_metadata(None), plain)
    with pytest.raises(ValueError, match="no weightspace metadata"):
        import_hf(plain, tmp_path / "a")
    bad = table.to_pandas()
    bad.loc[1, "layers.1.bias"] = np.asarray(bad.loc[1, "layers.1.bias"]) * np.nan
    broken = tmp_path / "nan.parquet"
    pq.write_table(__import__("pyarrow").Table.from_pandas(bad, schema=table.schema), broken)
    with pytest.raises(ValueError, match=r"column 'layers\.1\.bias' holds NaN or inf"):
        import_hf(broken, tmp_path / "b")
    dup = pd.concat([table.to_pandas(), table.to_pandas().iloc[:1]])
    twice = tmp_path / "dup.parquet"
    pq.write_table(__import__("pyarrow").Table.from_pandas(dup, schema=table.schema, preserve_index=False), twice)
    with pytest.raises(ValueError, match="ids listed more than once"):
        import_hf(twice, tmp_path / "c")


def test_datasets_library_reads_the_export(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # nothing may download: the export is read from disk
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    datasets = pytest.importorskip("datasets")
    zoo = _build(tmp_path / "z")
    export_hf(zoo, tmp_path / "hf")
    dd = datasets.load_dataset("parquet", data_dir=str(tmp_path / "hf" / "data"), cache_dir=str(tmp_path / "cache"))
    assert sorted(dd) == ["test", "train", "validation"] and len(dd["train"]) == len(zoo.split("train"))  # HF names val so
    assert dd["train"].features["layers.0.weight"].length == 16
    with pytest.raises(ValueError, match="pass spec="):  # load_dataset drops the schema metadata
        import_hf(dd, tmp_path / "nospec")
    back = import_hf(dd, tmp_path / "back", spec=zoo.spec)  # a DatasetDict straight back into a zoo
    assert _same_weights(back.weights(), zoo.weights())
    ds = zoo.to_hf("train")
    assert len(ds) == len(zoo.split("train"))
    again = import_hf(ds, tmp_path / "again")
    assert _same_weights(again.weights(), zoo.weights(zoo.split("train")))


def test_export_and_import_commands(tmp_path) -> None:
    zoo = _build(tmp_path / "z")
    r = runner.invoke(app, ["zoo", "export", str(zoo.path), "--format", "hf", "-o", str(tmp_path / "hf")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["zoo", "import", "hf", str(tmp_path / "hf"), "-o", str(tmp_path / "back")])
    assert r.exit_code == 0, r.output
    assert _same_weights(Zoo.open(tmp_path / "back").weights(), zoo.weights())
    r = runner.invoke(app, ["zoo", "export", str(zoo.path), "--format", "numpy", "-o", str(tmp_path / "z.npz")])
    assert r.exit_code == 0 and (tmp_path / "z.npz").is_file(), r.output
    r = runner.invoke(app, ["zoo", "export", str(zoo.path), "--format", "csv", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown format 'csv'" in r.output


def test_import_refuses_rows_of_the_wrong_length_and_a_damaged_sidecar(tmp_path) -> None:
    import pyarrow as pa

    zoo = _build(tmp_path / "z")
    table = to_arrow(zoo)
    df = table.to_pandas()
    # one row two values short, the next two long: the column's total is right, the rows are not
    a, b = list(df.loc[0, "layers.1.bias"]), list(df.loc[1, "layers.1.bias"])
    df.at[0, "layers.1.bias"], df.at[1, "layers.1.bias"] = a[:-2], b + a[-2:]
    schema = table.schema.set(table.schema.get_field_index("layers.1.bias"), pa.field("layers.1.bias", pa.list_(pa.float32())))
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), ragged)
    with pytest.raises(ValueError, match=r"column 'layers\.1\.bias' has rows of other lengths than 8"):
        import_hf(ragged, tmp_path / "a")
    export_hf(zoo, tmp_path / "hf")
    for f in (tmp_path / "hf" / "data").iterdir():  # readers that drop metadata then need the sidecar
        pq.write_table(pq.read_table(f).replace_schema_metadata(None), f)
    (tmp_path / "hf" / "weightspace.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"weightspace\.json: damaged"):
        import_hf(tmp_path / "hf", tmp_path / "b")
    (tmp_path / "afile").write_text("x")
    r = runner.invoke(app, ["zoo", "export", str(zoo.path), "--format", "hf", "-o", str(tmp_path / "afile")])
    assert r.exit_code == 2 and "is a file; the hf export is a folder" in r.output
