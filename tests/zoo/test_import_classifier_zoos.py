"""Importers of published classifier zoos: tiny folders written in the Small CNN Zoo and
Model Zoos layouts round-trip into zoos (exact weights, same function, runs kept whole)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from weightspace import forward
from weightspace.zoo.import_classifier_zoos import import_model_zoo, import_small_cnn_zoo
from weightspace.zoo.search_space import spec_for_row


def _keras_cnn(seed: int) -> list[tuple[str, np.ndarray]]:
    """(varname, array) in Keras layout for Unterthiner's CNN: 3 x Conv2D(16, 3, stride 2), GAP, Dense(10)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (cin, cout) in enumerate([(1, 16), (16, 16), (16, 16)]):
        out.append((f"sequential/conv2d_{i}/kernel:0", torch.randn(3, 3, cin, cout, generator=g).numpy() * 0.2))
        out.append((f"sequential/conv2d_{i}/bias:0", torch.randn(cout, generator=g).numpy() * 0.1))
    out.append(("sequential/dense/kernel:0", torch.randn(16, 10, generator=g).numpy() * 0.2))
    out.append(("sequential/dense/bias:0", torch.randn(10, generator=g).numpy() * 0.1))
    return out


def _write_small_cnn_zoo(root, runs=4, steps=(0, 1, 86)):
    rows, metrics, layout = [], [], None
    for r in range(runs):
        for s in steps:
            tensors = _keras_cnn(r * 100 + s)
            if layout is None:
                pos, layout = 0, []
                for name, a in tensors:
                    layout.append({"varname": name, "start_idx": pos, "end_idx": pos + a.size, "shape": str(tuple(a.shape))})
                    pos += a.size
            rows.append(np.concatenate([a.reshape(-1) for _, a in tensors]))
            metrics.append({"config.activation": ["relu", "tanh"][r % 2], "config.b_init": "zeros", "config.dropout": 0.1 * r,
                            "config.init_std": 0.05, "config.l2reg": 1e-4, "config.learning_rate": 0.01 * (r + 1),
                            "config.optimizer": "adam", "config.train_fraction": 0.5, "config.random_seed": 42,
                            "config.w_init": "he_normal", "modeldir": f"/cns/run{r}", "step": s,
                            "test_accuracy": 0.1 + 0.1 * r, "train_accuracy": 0.2 + 0.1 * r, "test_loss": 1.0, "train_loss": 0.9})
    weights = np.stack(rows).astype(np.float32)
    weights[min(5, len(weights) - 1), 0] = np.nan  # a diverged checkpoint: skipped
    np.save(root / "weights.npy", weights)
    pd.DataFrame(metrics).to_csv(root / "metrics.csv.gz", index=False, compression="gzip")
    pd.DataFrame(layout).to_csv(root / "layout.csv", index=False)
    return weights, pd.DataFrame(metrics)


def test_small_cnn_zoo_round_trip(tmp_path, gen) -> None:
    src = tmp_path / "src"
    src.mkdir()
    weights, metrics = _write_small_cnn_zoo(src)
    zoo = import_small_cnn_zoo(src, tmp_path / "zoo", shard_size=5)
    assert zoo.spec.num_params == 4970 and len(zoo) == len(weights) - 1
    assert zoo.provenance["imported_from"]["skipped_nonfinite"] == 1
    assert (zoo.table.groupby("run")["split"].nunique() == 1).all()
    x = torch.rand(7, 1, 28, 28, generator=gen) * 2 - 1
    for pos in (0, 4, len(zoo) - 1):
        row = zoo.table.iloc[pos]
        src_row = int(row["source_row"])
        assert row["epoch"] == metrics["step"][src_row] and row["lr"] == metrics["config.learning_rate"][src_row]
        # the Keras network computed by hand (NHWC conv via torch on transposed kernels is what we test, so use numpy)
        tensors = dict(_keras_cnn(int(row["run"]) * 100 + int(row["epoch"])))
        h = x.permute(0, 2, 3, 1).numpy()
        act = np.tanh if row["activation"] == "tanh" else (lambda v: np.maximum(v, 0))
        for i in range(3):
            k, b = tensors[f"sequential/conv2d_{i}/kernel:0"], tensors[f"sequential/conv2d_{i}/bias:0"]
            oh = (h.shape[1] - 3) // 2 + 1
            patches = np.stack([np.stack([h[:, 2 * a:2 * a + 3, 2 * c:2 * c + 3, :] for c in range(oh)], 1) for a in range(oh)], 1)
            h = act(np.einsum("nabijc,ijcd->nabd", patches, k) + b)
        keras_out = h.mean((1, 2)) @ tensors["sequential/dense/kernel:0"] + tensors["sequential/dense/bias:0"]
        w = zoo.weights([pos])
        mine = forward(type(w)(spec_for_row(zoo.spec, row), w.weights, w.biases), x)[0]
        np.testing.assert_allclose(mine.numpy(), keras_out, rtol=1e-4, atol=1e-5)


def test_small_cnn_zoo_bad_input(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write_small_cnn_zoo(src, runs=1)
    pd.read_csv(src / "layout.csv").assign(shape="(3, 3)").to_csv(src / "layout.csv", index=False)
    with pytest.raises(ValueError, match="does not hold shape"):
        import_small_cnn_zoo(src, tmp_path / "zoo")
    (src / "weights.npy").unlink()
    with pytest.raises(FileNotFoundError, match="weights.npy"):
        import_small_cnn_zoo(src, tmp_path / "zoo")


class _SchuerholtCNN(nn.Module):  # the parameter layout of their def_net.py::CNN (dropout 0)
    def __init__(self) -> None:
        super().__init__()
        self.module_list = nn.ModuleList([
            nn.Conv2d(1, 8, 5), nn.MaxPool2d(2, 2), nn.Tanh(),
            nn.Conv2d(8, 6, 5), nn.MaxPool2d(2, 2), nn.Tanh(),
            nn.Conv2d(6, 4, 2), nn.Tanh(), nn.Flatten(),
            nn.Linear(3 * 3 * 4, 20), nn.Tanh(), nn.Linear(20, 10),
        ])


def _write_model_zoo(root, runs=5, epochs=(0, 1, 2)):
    models = {}
    for r in range(runs):
        folder = root / f"NN_tune_trainable_{r:05d}_seed={r}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({
            "model::nlin": "tanh", "model::init_type": "kaiming_uniform", "model::dropout": 0.0,
            "optim::optimizer": "adam", "optim::lr": 1e-3 * (r + 1), "optim::wd": 1e-4, "seed": r}))
        lines = []
        for e in epochs:
            torch.manual_seed(r * 10 + e)
            m = _SchuerholtCNN()
            models[(r, e)] = m
            (folder / f"checkpoint_{e:06d}").mkdir()
            torch.save(m.state_dict(), folder / f"checkpoint_{e:06d}" / "checkpoints")
            lines.append(json.dumps({"training_iteration": e, "test_acc": 0.1 * e, "train_acc": 0.12 * e,
                                     "loss_train": 2.0 - e, "loss_test": 2.1 - e}))
        (folder / "result.json").write_text("\n".join(lines) + "\n")
    return models


def test_model_zoo_round_trip(tmp_path, gen) -> None:
    models = _write_model_zoo(tmp_path / "src")
    zoo = import_model_zoo(tmp_path / "src", tmp_path / "zoo", shard_size=4)
    assert len(zoo) == 15 and zoo.spec.num_params == sum(p.numel() for p in _SchuerholtCNN().parameters())
    t = zoo.table
    assert (t.groupby("run")["split"].nunique() == 1).all()
    assert t["activation"].eq("tanh").all() and t["lr"].tolist()[:3] == [1e-3] * 3
    np.testing.assert_allclose(t["gap"], t["train_accuracy"] - t["test_accuracy"])
    assert zoo.provenance["imported_from"]["dense_stored_as_conv"] == [3]
    for pos in (0, 7, 14):
        row = t.iloc[pos]
        m = models[(int(row["run"]), int(row["epoch"]))]
        w = zoo.weights([pos])
        src = [p for p in m.parameters()]
        for mine, theirs in zip(w.tensors(), src):
            assert torch.equal(mine[0, 0].reshape(-1), theirs.detach().reshape(-1))
        # the first dense layer as a conv over the 3x3 map computes the same as Flatten + Linear
        fmap = torch.randn(2, 4, 3, 3, generator=gen)
        dense = m.module_list[9]
        as_conv = nn.functional.conv2d(fmap, w.weights[3][0, 0], w.biases[3][0, 0]).flatten(1)
        torch.testing.assert_close(as_conv, dense(fmap.flatten(1)))


def test_model_zoo_epoch_filter_and_errors(tmp_path) -> None:
    _write_model_zoo(tmp_path / "src", runs=2)
    zoo = import_model_zoo(tmp_path / "src", tmp_path / "zoo", epochs=[2])
    assert sorted(zoo.table["epoch"].unique()) == [2]
    with pytest.raises(ValueError, match="no model folders"):
        import_model_zoo(tmp_path / "zoo", tmp_path / "z2")
    (tmp_path / "src" / "NN_tune_trainable_00000_seed=0" / "params.json").write_text('{"model::nlin": "swish"}')
    with pytest.raises(ValueError, match="activation 'swish' is not supported"):
        import_model_zoo(tmp_path / "src", tmp_path / "z3")


def test_cli_import(tmp_path) -> None:
    from typer.testing import CliRunner

    from weightspace.cli import app

    _write_model_zoo(tmp_path / "src", runs=2, epochs=(1,))
    r = CliRunner().invoke(app, ["zoo", "import-classifiers", str(tmp_path / "src"), "-o", str(tmp_path / "z"), "--layout", "model-zoos"])
    assert r.exit_code == 0, r.output
    assert "imported 2 checkpoints of 2 runs" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["zoo", "import-classifiers", str(tmp_path / "src"), "-o", str(tmp_path / "y"), "--layout", "keras"])
    assert r.exit_code == 2 and "unknown layout 'keras'" in " ".join(r.output.split())
