"""A tiny CNN zoo with the model-zoo table layout (runs x checkpoints), for hyper-representation tests.

Networks run on scikit-learn's 8x8 digits; weights are random draws (not trained) and the
table's property columns are synthetic, but a property of the weights (the mean of the
first conv layer's biases) is planted in ``test_accuracy`` so probes have something to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from weightspace.core.spec import LayerSpec, NetworkSpec
from weightspace.core.weights import Weights
from weightspace.zoo.store import Zoo, ZooWriter

SPEC = NetworkSpec(
    (
        LayerSpec("conv", 1, 4, (3, 3), stride=2, padding=1, activation="relu"),
        LayerSpec("conv", 4, 4, (3, 3), stride=2, padding=1, activation="relu"),
        LayerSpec("linear", 4, 10),
    ),
    pool="avg",
)


def make_zoo(path: Path, runs: int = 24, epochs: tuple[int, ...] = (0, 1, 2), seed: int = 0) -> Zoo:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = runs * len(epochs)
    w = Weights.unflatten(SPEC, torch.randn(n, SPEC.num_params, generator=gen) * 0.3)
    signal = w.biases[0][:, 0].mean(dim=1).numpy()
    acc = 1 / (1 + np.exp(-4 * signal))
    split_of_run = np.array(["train", "val", "test"])[np.arange(runs) % 3]
    columns = {
        "run": np.repeat(np.arange(runs), len(epochs)),
        "epoch": np.tile(np.array(epochs), runs),
        "lr": np.repeat(10.0 ** rng.uniform(-4, -2, runs), len(epochs)),
        "activation": np.repeat(rng.choice(["relu", "tanh"], runs), len(epochs)),
        "optimizer": np.repeat(rng.choice(["adam", "sgd"], runs), len(epochs)),
        "test_accuracy": acc,
        "train_accuracy": acc + 0.01,
        "gap": np.full(n, 0.01),
        "split": np.repeat(split_of_run, len(epochs)),
    }
    writer = ZooWriter(path, SPEC, shard_size=n, provenance={"dataset": "digits"})
    writer.write_shard(0, w, {k: list(v) for k, v in columns.items()})
    return writer.finalize()
