"""What a zoo builder needs from a signal dataset, and a generic container for non-image signals.

Every signal dataset (images, 3D shapes, audio, anything sampled on a grid) gives the same
three things to `build_inr_zoo`:

- ``coordinates()``: float32 ``[P, d]`` in ``[-1, 1]``, shared by every signal;
- ``targets()``: float32 ``[N, P, c]`` signal values in ``[0, 1]`` at those coordinates;
- ``labels`` ``[N]``, ``split`` (N strings from ``train``/``val``/``test``), ``classes``,
  ``name``, ``kind`` and ``signal_shape``, which say how to lay the values back out.

`ImageDataset` satisfies the protocol as it is; `SignalSet` holds everything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

SignalKind = Literal["image", "shape", "audio", "grid"]
KINDS: tuple[str, ...] = ("image", "shape", "audio", "grid")
SPLITS: tuple[str, ...] = ("train", "val", "test")
GRID_COORDINATES = "grid centres, torch.linspace(-1, 1) per axis, indexing='ij', row-major"


@runtime_checkable
class SignalDataset(Protocol):
    """The contract `build_inr_zoo` and the renderer rely on (see module docstring)."""

    name: str
    labels: Tensor
    split: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def kind(self) -> str: ...

    @property
    def signal_shape(self) -> tuple[int, ...]: ...

    @property
    def coordinate_description(self) -> str: ...

    def __len__(self) -> int: ...

    def coordinates(self) -> Tensor: ...

    def targets(self) -> Tensor: ...


def grid_coordinates(shape: Sequence[int]) -> Tensor:
    """Float32 ``[prod(shape), len(shape)]``: column ``k`` is the coordinate along grid axis ``k``.

    Built from ``torch.linspace(-1, 1, n)`` per axis with ``indexing="ij"``, row-major, so
    row ``i`` is grid point ``np.unravel_index(i, shape)`` (the image convention, for any d).
    """
    axes = [torch.linspace(-1.0, 1.0, int(n)) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)


@dataclass(frozen=True, eq=False)
class SignalSet:
    """A labelled set of signals sampled at shared coordinates.

    values: float32 ``[N, P, C]`` in ``[0, 1]`` (how the physical signal maps to [0, 1] is in ``meta``).
    coords: float32 ``[P, d]`` in ``[-1, 1]``.
    labels: int64 ``[N]``; split: N strings from ``SPLITS``; classes: names of the labels.
    kind: ``"shape"``, ``"audio"``, ``"grid"`` or ``"image"``.
    signal_shape: ``(*grid, C)`` when ``coords`` is `grid_coordinates(grid)` (``grid=True``),
        else ``(P, C)`` for scattered points.
    meta: JSON-able facts needed to read the values back (field type, truncation, sample rate ...).
    """

    values: Tensor
    coords: Tensor
    labels: Tensor
    split: tuple[str, ...]
    name: str
    classes: tuple[str, ...]
    kind: str
    signal_shape: tuple[int, ...]
    grid: bool = True
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "split", tuple(str(s) for s in self.split))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "signal_shape", tuple(int(s) for s in self.signal_shape))
        object.__setattr__(self, "meta", dict(self.meta))
        v, c = self.values, self.coords
        if not isinstance(v, Tensor) or v.ndim != 3 or v.dtype != torch.float32:
            raise ValueError(f"{self.name}: values must be a float32 tensor [N, P, C]")
        n, p, ch = v.shape
        if c.shape[0] != p or c.ndim != 2 or c.dtype != torch.float32:
            raise ValueError(f"{self.name}: coords must be float32 [{p}, d], got {c.dtype} {tuple(c.shape)}")
        if self.labels.shape != (n,) or self.labels.dtype != torch.int64:
            raise ValueError(f"{self.name}: labels must be int64 [{n}]")
        if len(self.split) != n or not set(self.split) <= set(SPLITS):
            raise ValueError(f"{self.name}: split must hold {n} entries from {SPLITS}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if int(np.prod(self.signal_shape[:-1])) != p or self.signal_shape[-1] != ch:
            raise ValueError(
                f"{self.name}: signal_shape {self.signal_shape} does not hold {p} points x {ch} channels"
            )
        if self.grid and len(self.signal_shape) - 1 != c.shape[1]:
            raise ValueError(
                f"{self.name}: a {len(self.signal_shape) - 1}-axis grid needs "
                f"{len(self.signal_shape) - 1}-d coords"
            )

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def coordinate_description(self) -> str:
        return GRID_COORDINATES if self.grid else "scattered points, stored in the dataset"

    def coordinates(self) -> Tensor:
        """``[P, d]`` in ``[-1, 1]``, shared by every signal."""
        return self.coords

    def targets(self) -> Tensor:
        """``[N, P, C]`` in ``[0, 1]``, in the order of `coordinates`."""
        return self.values

    def as_grid(self) -> Tensor:
        """Values laid out on their grid: ``[N, *signal_shape]`` (grid datasets only)."""
        if not self.grid:
            raise ValueError(f"{self.name}: scattered points have no grid layout")
        return self.values.reshape(len(self), *self.signal_shape)

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> SignalSet:
        """Signals at ``indices`` (int positions or a boolean mask), in that order."""
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.to(torch.int64).reshape(-1)
        return SignalSet(
            self.values[idx],
            self.coords,
            self.labels[idx],
            tuple(self.split[i] for i in idx.tolist()),
            self.name,
            self.classes,
            self.kind,
            self.signal_shape,
            self.grid,
            self.meta,
        )

    def select_split(self, name: str) -> SignalSet:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.subset([i for i, s in enumerate(self.split) if s == name])


def seeded_split(n: int, *, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.2) -> np.ndarray:
    """Split names ``[n]`` drawn by a seeded permutation: the image loaders' rule."""
    from weightspace.signals.images import _random_split

    return _random_split(n, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)[0]


def signal_provenance(dataset: SignalDataset) -> dict[str, Any]:
    """What a zoo records about its signals so any network can be decoded back (zoo.json)."""
    return {
        "signal_kind": dataset.kind,
        "signal_shape": list(dataset.signal_shape),
        "coordinates": dataset.coordinate_description,
        "classes": [str(c) for c in dataset.classes],  # label k is classes[k]: figures name the class
        **({"signal_meta": dict(dataset.meta)} if getattr(dataset, "meta", None) else {}),
    }
