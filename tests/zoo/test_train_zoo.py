"""Classifier zoos: the table contract, splits by run, resume, Ray = local, and a row's
network reproduces its recorded test accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace import forward
from weightspace.signals.images import load_images
from weightspace.zoo.backends import RayBackend
from weightspace.zoo.search_space import HYPERPARAMETERS, METRICS, get_zoo_recipe, spec_for_row
from weightspace.zoo.store import Zoo
from weightspace.zoo.train_zoo import build_classifier_zoo, classifier_data

RECIPE = get_zoo_recipe("mlp", epochs=2, checkpoints=(0, 2), batch_size=16, hidden=(8,))
KW = {"num_runs": 10, "n_train": 40, "n_test": 30, "runs_per_shard": 3, "progress": False, "seed": 1}


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", limit=60)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, digits) -> Zoo:
    return build_classifier_zoo(digits, tmp_path_factory.mktemp("z") / "zoo", RECIPE, **KW)


def test_table_contract(zoo: Zoo) -> None:
    t = zoo.table
    for col in ("run", "epoch", "split", "diverged", *HYPERPARAMETERS, *METRICS):
        assert col in t.columns, col
    assert len(zoo) == 10 * 2 and sorted(t["run"].unique()) == list(range(10))
    assert sorted(t["epoch"].unique()) == [0, 2]
    np.testing.assert_allclose(t["gap"], t["train_accuracy"] - t["test_accuracy"], atol=1e-6)
    assert zoo.provenance["recipe"]["name"] == "mlp" and zoo.provenance["num_runs"] == 10


def test_no_run_split_across_splits(zoo: Zoo) -> None:
    assert (zoo.table.groupby("run")["split"].nunique() == 1).all()
    assert set(zoo.table["split"]) == {"train", "val", "test"}
    # every hyperparameter is constant within a run
    assert (zoo.table.groupby("run")[list(HYPERPARAMETERS)].nunique() == 1).all().all()


def test_row_network_reproduces_recorded_accuracy(zoo: Zoo, digits) -> None:
    data = classifier_data(digits, RECIPE.arch, n_train=40, n_test=30, seed=1)
    for pos in (0, 5, len(zoo) - 1):
        row = zoo.table.iloc[pos]
        w = zoo.weights([pos])
        w = type(w)(spec_for_row(zoo.spec, row), w.weights, w.biases)
        acc = (forward(w, data.test_x)[0].argmax(-1) == data.test_y).float().mean().item()
        assert acc == pytest.approx(row["test_accuracy"], abs=1e-6)


def test_resume_gives_the_same_zoo(tmp_path, zoo: Zoo, digits) -> None:
    path = tmp_path / "again"
    build_classifier_zoo(digits, path, RECIPE, **KW)
    (path / "shards" / "00001.safetensors").unlink()
    table = pd.read_parquet(path / "table.parquet")  # as if killed before shard 1 was written
    table[table["shard"] != 1].to_parquet(path / "table.parquet")
    again = build_classifier_zoo(digits, path, RECIPE, **KW)
    assert again.table.equals(zoo.table)
    for a, b in zip(again.weights().tensors(), zoo.weights().tensors()):
        assert torch.equal(a, b)


def test_resume_refuses_another_recipe(tmp_path, digits) -> None:
    build_classifier_zoo(digits, tmp_path / "z", RECIPE, **{**KW, "num_runs": 3})
    from weightspace.zoo.store import ZooError

    with pytest.raises(ZooError, match="different recipe"):
        build_classifier_zoo(digits, tmp_path / "z", get_zoo_recipe("mlp", epochs=3, checkpoints=(0, 3), batch_size=16, hidden=(8,)),
                             **{**KW, "num_runs": 3})


@pytest.mark.slow
def test_ray_backend_equals_local(tmp_path, zoo: Zoo, digits, monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    from weightspace.zoo.backends import _loopback_node

    with _loopback_node(ray):  # loopback only (plain _node_ip_address is not enough)
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2, log_to_driver=False)
    try:
        remote = build_classifier_zoo(digits, tmp_path / "ray", RECIPE, **KW, backend=RayBackend(max_in_flight=2))
    finally:
        ray.shutdown()
    assert remote.table.equals(zoo.table)
    for a, b in zip(remote.weights().tensors(), zoo.weights().tensors()):
        assert torch.equal(a, b)


def test_progress_counts_run_steps_to_the_total(tmp_path, digits, capsys) -> None:
    """The bar moves after every optimiser step (run-steps), not once per shard, and ends at
    runs x epochs x steps per epoch."""
    from weightspace.zoo.population import steps_per_epoch

    build_classifier_zoo(digits, tmp_path / "z", RECIPE, **{**KW, "progress": True})
    err = capsys.readouterr().err
    total = KW["num_runs"] * RECIPE.epochs * steps_per_epoch(KW["n_train"], RECIPE.batch_size)
    import re

    assert re.search(rf"\b{total}(\.0)?/{total}(\.0)? ", err), err[-300:]  # unit_scale writes 60 as 60.0
    assert f"runs={KW['num_runs']}/{KW['num_runs']}" in err
    assert err.count("run-step") > 1 + KW["num_runs"] // KW["runs_per_shard"]  # it moved within the shards
