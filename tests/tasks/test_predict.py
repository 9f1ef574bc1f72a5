"""Property prediction: learns a learnable target, splits by run, categorical targets,
clear errors, and the predicted-vs-true figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace import NetworkSpec, Weights
from weightspace.tasks.predict import plot_predictions, predict_property, r2_score, run_splits
from weightspace.train import TrainConfig
from weightspace.zoo.store import ZooWriter, assign_splits

CFG = TrainConfig(epochs=15, batch_size=32, lr=3e-3, progress=False, accelerator="cpu")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Small CNNs in runs of 3 checkpoints; the target is a symmetric function of the
    weights (mean of the output layer's weights), the category its sign."""
    spec = NetworkSpec.from_dict({"pool": "avg", "layers": [
        {"kind": "conv", "in_features": 1, "out_features": 4, "kernel_size": [3, 3], "activation": "relu"},
        {"kind": "linear", "in_features": 4, "out_features": 3}]})
    g = torch.Generator().manual_seed(0)
    runs, per = 160, 3
    w = Weights.unflatten(spec, torch.randn(runs * per, spec.num_params, generator=g))
    target = w.weights[1].mean(dim=(1, 2, 3))
    split = assign_splits(runs, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    run = np.repeat(np.arange(runs), per)
    writer = ZooWriter(tmp_path_factory.mktemp("z"), spec, shard_size=runs * per)
    writer.write_shard(0, w, {"run": run.tolist(), "epoch": np.tile(np.arange(per), runs).tolist(),
                              "score": target.tolist(), "sign": np.where(target > 0, "pos", "neg").tolist(),
                              "split": split[run].tolist()})
    return writer.finalize()


@pytest.mark.parametrize("model", ["statnn", "mlp"])
def test_learns_a_learnable_target(zoo, model) -> None:
    res = predict_property(zoo, model, "score", config=CFG)
    assert res.kind == "regression" and res.kendall_tau > 0.5 and res.r2 > 0.3, res.row()
    assert res.n_test == int((zoo.table["split"] == "test").sum()) and len(res.predicted) == res.n_test
    assert res.r2 == pytest.approx(r2_score(res.true, res.predicted))


def test_categorical_target_is_classified(zoo) -> None:
    res = predict_property(zoo, "statnn", "sign", config=CFG)
    assert res.kind == "classification" and res.classes == ("neg", "pos")
    assert res.accuracy > 0.75, res.row()


def test_runs_never_straddle_splits(zoo) -> None:
    parts = run_splits(zoo.table)
    runs = {s: set(zoo.table["run"].iloc[idx]) for s, idx in parts.items()}
    assert not runs["train"] & runs["test"] and not runs["train"] & runs["val"] and not runs["val"] & runs["test"]
    bad = zoo.table.copy()
    bad.loc[bad.index[0], "split"] = "test" if bad["split"].iloc[0] != "test" else "train"
    with pytest.raises(ValueError, match="more than one split"):
        run_splits(bad)
    with pytest.raises(KeyError, match="no 'split' column"):
        run_splits(pd.DataFrame({"run": [0]}))


def test_errors(zoo) -> None:
    with pytest.raises(KeyError, match="no column 'nope'"):
        predict_property(zoo, "statnn", "nope", config=CFG)
    with pytest.raises(ValueError, match="equivariant"):
        predict_property(zoo, "dws_eq", "score", config=CFG)


def test_figure(zoo, tmp_path) -> None:
    res = predict_property(zoo, "statnn", "score", config=TrainConfig(epochs=1, progress=False, accelerator="cpu"))
    path = plot_predictions([res, res], tmp_path / "fig.png")
    assert path.stat().st_size > 1000
