import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.specs import SPECS, random_weights
from weightspace import NetworkSpec, Weights
from weightspace.zoo.store import Zoo, ZooError, ZooWriter, assign_splits

SPEC = NetworkSpec.siren(2, [8, 8], 1)


def _shard_weights(spec, k, n):
    return random_weights(spec, n, generator=torch.Generator().manual_seed(k))


def _write(path, spec=SPEC, shards=3, n=4):
    w = ZooWriter(path, spec, shard_size=n, provenance={"test": True})
    for k in range(shards):
        w.write_shard(k, _shard_weights(spec, k, n), {"label": [k] * n, "split": ["train"] * (n - 1) + ["test"]})
    return w.finalize()


@pytest.mark.parametrize("name", ["siren", "mixed_bias", "cnn"])
def test_write_read_is_exact(tmp_path, name):
    spec = SPECS[name]
    zoo = _write(tmp_path / "z", spec)
    assert len(zoo) == 12 and zoo.complete
    assert list(zoo.table["id"]) == list(range(12))
    expected = Weights.cat([_shard_weights(spec, k, 4) for k in range(3)])
    got = zoo.weights()
    assert all(torch.equal(a, b) for a, b in zip(got.tensors(), expected.tensors()))
    order = [11, 0, 5, 5, 7]
    assert all(torch.equal(a, b) for a, b in zip(zoo.weights(order).tensors(), expected[order].tensors()))
    w, table = zoo.load("test")
    assert len(w) == 3 and set(table["split"]) == {"test"}
    assert zoo.info()["splits"] == {"test": 3, "train": 9}


def test_shards_are_plain_safetensors(tmp_path):
    # readable by the safetensors library itself, no custom code needed
    zoo = _write(tmp_path / "z")
    tensors = load_file(str(tmp_path / "z" / "shards" / "00001.safetensors"))
    assert torch.equal(tensors["layers.0.weight"], _shard_weights(SPEC, 1, 4).weights[0][:, 0])
    assert len(Zoo.open(zoo.path)) == 12


def test_resume_recovers_a_shard_written_before_the_table(tmp_path):
    zoo = _write(tmp_path / "z")
    # as if the writer died between renaming shard 2 into place and rewriting the table
    zoo.table[zoo.table["shard"] < 2].to_parquet(tmp_path / "z" / "table.parquet")
    (tmp_path / "z" / "shards" / ".00003.safetensors.tmp").write_bytes(b"half a shard")
    w = ZooWriter(tmp_path / "z", SPEC, shard_size=4)
    assert w.completed_shards() == {0, 1, 2}
    assert not list((tmp_path / "z" / "shards").glob(".*"))
    assert list(w.finalize().table["label"]) == [0] * 4 + [1] * 4 + [2] * 4


def test_killed_writer_resumes_with_nothing_lost_or_duplicated(tmp_path):
    path = tmp_path / "z"
    child = textwrap.dedent(
        f"""
        import sys, time, torch
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from tests.zoo.test_store import SPEC, _shard_weights
        from weightspace.zoo.store import ZooWriter
        w = ZooWriter({str(path)!r}, SPEC, shard_size=64)
        for k in range(1000):
            if k not in w.completed_shards():
                w.write_shard(k, _shard_weights(SPEC, k, 64), {{"label": [k] * 64}})
                print(k, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    done = [int(proc.stdout.readline()) for _ in range(3)]
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup handlers run: a real crash
    proc.wait()
    assert done == [0, 1, 2]
    w = ZooWriter(path, SPEC, shard_size=64)
    have = w.completed_shards()
    assert have == set(range(len(have))) and len(have) >= 3
    for k in range(len(have) + 2):
        if k not in have:
            w.write_shard(k, _shard_weights(SPEC, k, 64), {"label": [k] * 64})
    zoo = w.finalize()
    n = len(have) + 2
    assert list(zoo.table["id"]) == list(range(64 * n))
    assert zoo.table["label"].tolist() == [k for k in range(n) for _ in range(64)]
    for k in range(n):
        got = zoo.weights(np.arange(64 * k, 64 * (k + 1)))
        assert all(torch.equal(a, b) for a, b in zip(got.tensors(), _shard_weights(SPEC, k, 64).tensors()))


def test_truncated_shard_gives_a_clear_error(tmp_path):
    _write(tmp_path / "z")
    shard = tmp_path / "z" / "shards" / "00001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 10])
    with pytest.raises(ZooError, match=r"00001\.safetensors: truncated"):
        Zoo.open(tmp_path / "z")
    shard.write_bytes(b"\x00" * 3)
    with pytest.raises(ZooError, match=r"00001\.safetensors: truncated"):
        Zoo.open(tmp_path / "z")
    shard.write_bytes(b"\xff" * 64)
    with pytest.raises(ZooError, match=r"00001\.safetensors: not a safetensors file"):
        Zoo.open(tmp_path / "z")


def test_foreign_and_damaged_files(tmp_path):
    with pytest.raises(ZooError, match="zoo.json is missing"):
        Zoo.open(tmp_path)
    _write(tmp_path / "z")
    (tmp_path / "z" / "table.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ZooError, match=r"table\.parquet: damaged or not a parquet table"):
        Zoo.open(tmp_path / "z")
    (tmp_path / "z" / "zoo.json").write_text('{"format": "something-else"}')
    with pytest.raises(ZooError, match="not a weightspace zoo"):
        Zoo.open(tmp_path / "z")
    (tmp_path / "z" / "zoo.json").write_text("{nope")
    with pytest.raises(ZooError, match="damaged zoo.json"):
        Zoo.open(tmp_path / "z")


def test_bad_writes_are_refused_and_lose_nothing(tmp_path):
    zoo = _write(tmp_path / "z")
    w = ZooWriter(tmp_path / "z", SPEC, shard_size=4)
    bad = _shard_weights(SPEC, 9, 4).map(lambda t: t.clone())
    bad.weights[1][2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        w.write_shard(3, bad, {"label": [3] * 4})
    with pytest.raises(ValueError, match="column 'label' has 3 values for 4 networks"):
        w.write_shard(3, _shard_weights(SPEC, 3, 4), {"label": [3] * 3})
    with pytest.raises(ZooError, match="another spec"):
        ZooWriter(tmp_path / "z", SPECS["mlp_relu"], shard_size=4)
    again = Zoo.open(tmp_path / "z")
    assert len(again) == len(zoo) == 12


def test_assign_splits_is_seeded():
    a = assign_splits(100, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert (a == assign_splits(100, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)).all()
    assert (a != assign_splits(100, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=2)).any()
    assert {k: int((a == k).sum()) for k in ("train", "val", "test")} == {"train": 80, "val": 10, "test": 10}


def test_resume_refuses_a_zoo_made_another_way(tmp_path):
    ZooWriter(tmp_path / "z", SPEC, shard_size=4, provenance={"recipe": {"name": "a"}, "seed": 0})
    with pytest.raises(ZooError, match="different recipe, seed; not resuming"):
        ZooWriter(tmp_path / "z", SPEC, shard_size=4, provenance={"recipe": {"name": "b"}, "seed": 1})
