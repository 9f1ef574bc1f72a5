"""What a zoo of trained classifiers varies: the search space, the runs drawn from it, and
the recipes (architecture + training schedule) after Unterthiner et al. (2020).

A *run* is one training of one network from its own initialisation seed with its own
hyperparameters; a zoo stores several checkpoints (epochs) of every run. The zoo has one
`NetworkSpec`; the activation varies per run, so the spec stored in ``zoo.json`` carries
the recipe's default activation and `spec_with_activation` / `spec_for_row` give the spec
that runs a given row's network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from weightspace.core.activations import get_activation
from weightspace.core.spec import LayerSpec, NetworkSpec

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "rmsprop")
INITS: tuple[str, ...] = ("default", "xavier_uniform", "xavier_normal", "kaiming_normal", "orthogonal")
HYPERPARAMETERS: tuple[str, ...] = (
    "lr", "weight_decay", "dropout", "init", "activation", "optimizer", "train_fraction", "seed",
)
METRICS: tuple[str, ...] = ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "gap")


@dataclass(frozen=True)
class RunConfig:
    """One training run: ``run`` is its id in the zoo, ``seed`` seeds its initialisation,
    its training subset and its data order."""

    run: int
    lr: float
    weight_decay: float
    dropout: float
    init: str
    activation: str
    optimizer: str
    train_fraction: float
    seed: int

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"run {self.run}: unknown optimizer {self.optimizer!r}; known: {OPTIMIZERS}")
        if self.init not in INITS:
            raise ValueError(f"run {self.run}: unknown init {self.init!r}; known: {INITS}")
        get_activation(self.activation)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"run {self.run}: dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"run {self.run}: train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"run {self.run}: need lr > 0 and weight_decay >= 0")

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchSpace:
    """Ranges the runs are drawn from (after Unterthiner et al.: log-uniform learning rate
    and L2, uniform dropout and train fraction, categorical init / activation / optimiser).
    A range ``(a, a)`` fixes a value."""

    lr: tuple[float, float] = (5e-4, 5e-2)
    weight_decay: tuple[float, float] = (1e-8, 1e-2)
    dropout: tuple[float, float] = (0.0, 0.5)
    train_fraction: tuple[float, float] = (0.1, 1.0)
    init: tuple[str, ...] = INITS
    activation: tuple[str, ...] = ("relu", "tanh", "gelu")
    optimizer: tuple[str, ...] = OPTIMIZERS

    def sample(self, n: int, *, seed: int) -> list[RunConfig]:
        """``n`` runs drawn with ``numpy.random.default_rng(seed)``; run ``i`` gets the
        initialisation seed ``seed * 1_000_000 + i``."""
        rng = np.random.default_rng(seed)

        def log_uniform(lo: float, hi: float) -> np.ndarray:
            return np.exp(rng.uniform(math.log(lo), math.log(hi), n)) if lo > 0 else rng.uniform(lo, hi, n)

        lr, wd = log_uniform(*self.lr), log_uniform(*self.weight_decay)
        dropout, frac = rng.uniform(*self.dropout, n), rng.uniform(*self.train_fraction, n)
        init = rng.integers(len(self.init), size=n)
        act = rng.integers(len(self.activation), size=n)
        opt = rng.integers(len(self.optimizer), size=n)
        return [
            RunConfig(
                run=i,
                lr=float(lr[i]),
                weight_decay=float(wd[i]),
                dropout=float(dropout[i]),
                init=self.init[init[i]],
                activation=self.activation[act[i]],
                optimizer=self.optimizer[opt[i]],
                train_fraction=float(frac[i]),
                seed=seed * 1_000_000 + i,
            )
            for i in range(n)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ZooRecipe:
    """Architecture and schedule of a classifier zoo.

    ``arch``: ``"small_cnn"`` (Unterthiner et al.: 3 conv layers of ``width`` channels, 3x3,
    stride 2, no padding, global average pooling, dense to the classes) or ``"mlp"``
    (flattened image -> ``hidden`` -> classes). One *epoch* is ``ceil(n_train / batch_size)``
    steps for every run, whatever its train fraction (a run cycles through its own subset),
    so checkpoint ``e`` of every run has seen the same number of examples.
    """

    name: str
    arch: str = "small_cnn"
    width: int = 16
    hidden: tuple[int, ...] = (32,)
    epochs: int = 8
    checkpoints: tuple[int, ...] = (0, 1, 2, 4, 8)
    batch_size: int = 32
    version: int = 2  # 2: dropout masks from 8-bit random numbers (rates in steps of 1/256)
    search_space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self) -> None:
        if self.arch not in ("small_cnn", "mlp"):
            raise ValueError(f"unknown arch {self.arch!r}; expected 'small_cnn' or 'mlp'")
        cps = tuple(sorted({int(c) for c in self.checkpoints}))
        if not cps or cps[0] < 0 or cps[-1] > self.epochs:
            raise ValueError(f"checkpoints must lie in 0..epochs={self.epochs}, got {self.checkpoints}")
        object.__setattr__(self, "checkpoints", cps)
        object.__setattr__(self, "hidden", tuple(self.hidden))

    def spec(self, in_shape: tuple[int, int, int], num_classes: int, activation: str = "relu") -> NetworkSpec:
        """The network for images of shape ``(H, W, C)``."""
        h, w, c = in_shape
        if self.arch == "small_cnn":
            if min(h, w) < SMALL_CNN_MIN_SIZE:  # three unpadded 3x3 / stride-2 convolutions leave no pixel
                raise ValueError(f"the small CNN needs images of at least {SMALL_CNN_MIN_SIZE}x{SMALL_CNN_MIN_SIZE} "
                                 f"pixels, got {h}x{w}; use --recipe mlp for smaller images")
            return small_cnn_spec(c, num_classes, width=self.width, activation=activation)
        return NetworkSpec.mlp([h * w * c, *self.hidden, num_classes], activation=activation)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["search_space"] = self.search_space.to_dict()
        d["hidden"], d["checkpoints"] = list(self.hidden), list(self.checkpoints)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ZooRecipe:
        space = SearchSpace(**{k: tuple(v) for k, v in d.get("search_space", {}).items()})
        rest = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "search_space"}
        return cls(**rest, search_space=space)


# 15 -> 7 -> 3 -> 1 pixels through the small CNN's three 3x3 stride-2 convolutions (no padding)
SMALL_CNN_MIN_SIZE = 15


def small_cnn_spec(in_channels: int = 1, num_classes: int = 10, *, width: int = 16, activation: str = "relu") -> NetworkSpec:
    """Unterthiner et al.'s small CNN: 3 x (conv 3x3, stride 2, ``width`` channels), global
    average pooling, dense ``num_classes``. 4,970 parameters for one input channel."""
    convs = [
        LayerSpec("conv", in_channels if i == 0 else width, width, (3, 3), stride=2, activation=activation)
        for i in range(3)
    ]
    return NetworkSpec((*convs, LayerSpec("linear", width, num_classes)), pool="avg")


def spec_with_activation(spec: NetworkSpec, activation: str) -> NetworkSpec:
    """``spec`` with every hidden layer's activation replaced (the output layer stays linear)."""
    get_activation(activation)
    layers = tuple(
        replace(layer, activation=activation) if i < spec.num_layers - 1 else layer
        for i, layer in enumerate(spec.layers)
    )
    return NetworkSpec(layers, pool=spec.pool)


def spec_for_row(spec: NetworkSpec, row: Mapping[str, Any]) -> NetworkSpec:
    """The spec that runs the network of one zoo table row (uses its ``activation`` column)."""
    if "activation" not in row:
        raise KeyError("the row has no 'activation' column")
    return spec_with_activation(spec, str(row["activation"]))


RECIPES: dict[str, ZooRecipe] = {
    "small-cnn": ZooRecipe("small-cnn"),
    "mlp": ZooRecipe("mlp", arch="mlp", hidden=(32,)),
}


def get_zoo_recipe(name: str, **overrides: Any) -> ZooRecipe:
    """A named recipe, optionally with fields overridden (e.g. ``epochs=4``)."""
    if name not in RECIPES:
        raise ValueError(f"unknown zoo recipe {name!r}; known: {', '.join(RECIPES)}")
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})


__all__ = [
    "HYPERPARAMETERS",
    "INITS",
    "METRICS",
    "OPTIMIZERS",
    "RECIPES",
    "RunConfig",
    "SearchSpace",
    "ZooRecipe",
    "get_zoo_recipe",
    "small_cnn_spec",
    "spec_for_row",
    "spec_with_activation",
]
