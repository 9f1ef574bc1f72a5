"""build_inr_zoo: any signal kind, NFN's k INRs per training image, kill-and-resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from weightspace.inr.siren import get_recipe
from weightspace.signals import load_digits, load_shapes, load_tones
from weightspace.zoo.build import fitting_order, build_inr_zoo, network_seed, plan_networks
from weightspace.zoo.store import Zoo

ROOT = Path(__file__).resolve().parents[2]
RECIPE = get_recipe("dwsnets", steps=15)


def _same(a: Zoo, b: Zoo) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.weights().tensors(), b.weights().tensors()))


def test_plan_and_seed_rule() -> None:
    src, copy = plan_networks(("train", "test", "train", "val"), 3)
    assert src.tolist() == [0, 1, 2, 3, 0, 2, 0, 2] and copy.tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    assert network_seed(2, 5) == 2_000_005 and network_seed(2, 5, 1) == 2_000_005 + 10**12
    with pytest.raises(ValueError):
        plan_networks(("train",), 0)


def test_k_inrs_per_training_image(tmp_path) -> None:
    data = load_digits(limit=2)  # 2 per split
    one = build_inr_zoo(data, tmp_path / "one", RECIPE, shard_size=4, progress=False)
    many = build_inr_zoo(
        data, tmp_path / "many", RECIPE, shard_size=4, progress=False, inrs_per_train_image=3
    )
    t = many.table
    src, copy = plan_networks(data.split, 3)
    perm = fitting_order(len(src), 0)  # fitted and numbered in a seeded shuffle of the plan
    assert len(many) == 2 * 3 + 2 + 2 and sorted(perm.tolist()) == list(range(len(src)))
    assert t["copy"].tolist() == copy[perm].tolist() and t["source_index"].tolist() == src[perm].tolist()
    assert many.provenance["order"] == "shuffled" and "permutation" in many.provenance["order_rule"]
    assert (t[t["copy"] > 0]["split"] == "train").all()
    assert t.groupby(["source_index", "copy"]).size().max() == 1 and t["seed"].is_unique
    assert t["seed"].tolist() == [network_seed(0, i, c) for i, c in zip(t["source_index"], t["copy"])]
    assert t["label"].tolist() == data.labels[t["source_index"].to_numpy().copy()].tolist()
    # copy 0 is the one-per-image zoo, network for network (matched by source: the orders differ)
    first = many.weights(np.flatnonzero(t["copy"].to_numpy() == 0)[np.argsort(t["source_index"][t["copy"] == 0])])
    ones = one.weights(np.argsort(one.table["source_index"].to_numpy()))
    assert all(torch.equal(a, b) for a, b in zip(first.tensors(), ones.tensors()))
    # copies of one image start from other seeds, so they are other networks
    pos = t.index[(t["source_index"] == t["source_index"][4])].tolist()
    w = many.weights(pos).weights[0]
    assert not torch.equal(w[0], w[1])
    assert many.provenance["inrs_per_train_image"] == 3 and "copy * 10**12" in many.provenance["seed_rule"]
    assert one.provenance["seed_rule"] == "network seed = seed * 1_000_000 + source_index"


@pytest.mark.parametrize(
    "make",
    [lambda: load_shapes(1, 5, classes=("sphere", "box", "torus")), lambda: load_tones(1, 32)],
    ids=["shapes", "audio"],
)
def test_any_signal_kind(tmp_path, make) -> None:
    data = make()
    zoo = build_inr_zoo(data, tmp_path / "z", RECIPE, shard_size=4, progress=False)
    p = zoo.provenance
    assert len(zoo) == len(data) and zoo.spec.in_features == data.coordinates().shape[1]
    assert p["signal_kind"] == data.kind and tuple(p["signal_shape"]) == data.signal_shape
    assert p["signal_meta"] == dict(data.meta)


CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from tests.zoo.test_build import kill_resume_data, KILL_RECIPE
from weightspace.zoo.build import build_inr_zoo
build_inr_zoo(kill_resume_data(), {out!r}, KILL_RECIPE, shard_size=2, progress=False, inrs_per_train_image=2)
"""
KILL_RECIPE = get_recipe("dwsnets", steps=150, early_stop_psnr=None)


def kill_resume_data():
    return load_digits(limit=4)  # 12 images, 4 of them train: 16 networks in 8 shards


def test_killed_build_resumes_to_the_uninterrupted_result(tmp_path) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "WS_TEST_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD.format(root=str(ROOT), out=str(out)))], env=env
    )
    first = out / "shards" / "00000.safetensors"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # a real crash: no handlers, no cleanup
    proc.wait()
    assert first.exists(), "the child never wrote its first shard"
    meta = (out / "zoo.json").read_text()
    assert '"complete": false' in meta
    before = {f.name: f.stat().st_mtime_ns for f in (out / "shards").glob("*.safetensors")}
    assert 1 <= len(before) < 8
    resumed = build_inr_zoo(
        kill_resume_data(), out, KILL_RECIPE, shard_size=2, progress=False, inrs_per_train_image=2
    )
    after = {f.name: f.stat().st_mtime_ns for f in (out / "shards").glob("*.safetensors")}
    assert len(after) == 8 and all(
        after[name] == t for name, t in before.items()
    )  # finished shards untouched
    assert not list((out / "shards").glob(".*"))
    t = resumed.table
    assert resumed.complete and t["id"].tolist() == list(range(16))
    assert t.groupby(["source_index", "copy"]).size().max() == 1  # every network exactly once
    whole = build_inr_zoo(
        kill_resume_data(),
        tmp_path / "whole",
        KILL_RECIPE,
        shard_size=2,
        progress=False,
        inrs_per_train_image=2,
    )
    assert _same(resumed, whole)
    cols = ["source_index", "copy", "label", "split", "seed", "steps", "psnr"]
    assert resumed.table[cols].equals(whole.table[cols])


def test_a_zoo_started_in_source_order_resumes_in_source_order(tmp_path, monkeypatch) -> None:
    """Zoos from before the shuffled order (no ``order`` in their provenance) keep their plan."""
    import json

    from weightspace.zoo import build

    data = load_digits(limit=3)
    monkeypatch.setattr(build, "_resumed_order", lambda out: "source")
    legacy = build_inr_zoo(data, tmp_path / "old", RECIPE, shard_size=3, progress=False)
    assert legacy.table["source_index"].tolist() == list(range(len(data)))
    first = legacy.weights()
    monkeypatch.undo()
    meta = json.loads((tmp_path / "old" / "zoo.json").read_text())
    del meta["provenance"]["order"]  # as an older version wrote it
    (tmp_path / "old" / "zoo.json").write_text(json.dumps(meta))
    (tmp_path / "old" / "shards" / "00002.safetensors").unlink()  # lose a shard: the resume refits it
    again = build_inr_zoo(data, tmp_path / "old", RECIPE, shard_size=3, progress=False)
    assert again.table["source_index"].tolist() == list(range(len(data)))
    assert all(torch.equal(a, b) for a, b in zip(first.tensors(), again.weights().tensors()))


def test_progress_moves_every_step_and_ends_at_the_total(tmp_path, capsys) -> None:
    """The build's bar counts INR-steps and moves after every optimiser step of a local fit (not
    once per shard); `fit_inrs` reports each step's networks, early stoppers included."""
    from weightspace.zoo.fit_inr import fit_inrs

    data = load_digits(limit=2)
    calls = []
    res = fit_inrs(data.coordinates(), data.targets()[:3], RECIPE, [0, 1, 2], on_step=calls.append)
    taken = [min(int(s) + 1, RECIPE.steps) for s in res.steps]  # a network stopping at step s stepped s + 1 times
    assert len(calls) == max(taken) and sum(calls) == sum(taken) and calls[0] == 3
    build_inr_zoo(data, tmp_path / "z", RECIPE, shard_size=4, progress=True)
    err = capsys.readouterr().err
    assert "INR-step" in err and f"networks={len(data)}/{len(data)}" in err
    assert err.count("networks=") >= 2  # one update per shard at least, besides the per-step moves
