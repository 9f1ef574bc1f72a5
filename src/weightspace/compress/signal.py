"""One signal for the codec: values on a grid, its kind, how it reads back; patches; files.

A `Signal` holds float32 values ``[*grid, C]`` in ``[0, 1]`` at the coordinates
`grid_coordinates(grid)` (the convention every signal set uses), so an INR over
``len(grid)``-d coordinates with ``C`` outputs represents it:

- ``image``: ``[H, W, C]``, C = 1 (grey) or 3 (RGB), values = levels / 255 (16-bit: / 65535;
  every Pillow mode, alpha included, as `signals.images.image_values` says);
- ``audio``: ``[T, 1]``, values = ``(x + 1) / 2`` (`signals.audio`), meta ``sample_rate``;
- ``shape``: ``[D, H, W, 1]``, a volume (occupancy or distance), meta ``lo``/``hi``;
- ``grid``: ``[H, W, C]`` on a latitude-longitude grid (`signals.grids`), meta ``lo``/``hi``.

``lo``/``hi`` map values back to physical units: ``lo + v * (hi - lo)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightspace.compress.format import CodecError
from weightspace.signals.base import grid_coordinates
from weightspace.signals.images import image_values, read_image

KIND_AXES: dict[str, int] = {"image": 2, "audio": 1, "shape": 3, "grid": 2}
MAX_VALUES = 1 << 24  # values a decoder will ever allocate for one signal
MAX_CHANNELS = 4
META_KEYS = frozenset({"sample_rate", "lo", "hi"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True, eq=False)
class Signal:
    """values: float32 ``[*grid, C]`` in [0, 1]; kind: one of `KIND_AXES`; meta: floats (module docstring)."""

    values: Tensor
    kind: str
    meta: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", {k: float(v) for k, v in self.meta.items()})
        check_layout(self.kind, tuple(self.values.shape), self.meta, error=ValueError)
        if self.values.dtype != torch.float32:
            raise ValueError(f"signal values must be float32, got {self.values.dtype}")
        if not torch.isfinite(self.values).all():
            raise ValueError("signal values hold NaN or infinite values")

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.values.shape[:-1])

    @property
    def channels(self) -> int:
        return int(self.values.shape[-1])

    @property
    def num_points(self) -> int:
        """Pixels / samples / voxels: the denominator of bits per pixel."""
        return math.prod(self.grid)

    def coordinates(self) -> Tensor:
        """``[P, len(grid)]`` in [-1, 1] (`grid_coordinates`)."""
        return grid_coordinates(self.grid)

    def flat(self) -> Tensor:
        """Values ``[P, C]`` in the order of `coordinates`."""
        return self.values.reshape(-1, self.channels)

    def header(self) -> dict[str, Any]:
        return {"kind": self.kind, "shape": list(self.values.shape), "meta": dict(self.meta)}


def check_layout(kind: Any, shape: Any, meta: Any, error: type[Exception] = CodecError) -> tuple[str, tuple[int, ...], dict[str, float]]:
    """Validate a signal's kind, shape ``[*grid, C]`` and meta (from a header or a caller);
    returns them typed. Bounds every size so a decoder never allocates more than `MAX_VALUES`."""
    if not isinstance(kind, str) or kind not in KIND_AXES:
        raise error(f"signal kind {kind!r} is not one of {', '.join(KIND_AXES)}")
    if not isinstance(shape, (list, tuple)) or len(shape) != KIND_AXES[kind] + 1:
        raise error(f"a {kind} signal has shape [{KIND_AXES[kind]} grid axes, channels], got {shape!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_VALUES for s in shape):
        raise error(f"signal shape {shape!r} must hold positive integers")
    if shape[-1] > MAX_CHANNELS or math.prod(shape) > MAX_VALUES:
        raise error(f"signal shape {shape!r} exceeds the bounds ({MAX_CHANNELS} channels, {MAX_VALUES} values)")
    if kind == "image" and shape[-1] not in (1, 3):
        raise error(f"an image has 1 or 3 channels, got {shape[-1]}")
    if not isinstance(meta, dict) or not set(meta) <= META_KEYS:
        raise error(f"signal meta must be a mapping with keys from {sorted(META_KEYS)}, got {meta!r}")
    out = {}
    for k, v in meta.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise error(f"signal meta {k!r} must be a finite number, got {v!r}")
        out[k] = float(v)
    if kind == "audio" and not 1 <= out.get("sample_rate", 0) <= 10**7:
        raise error("an audio signal needs a sample_rate in [1, 1e7]")
    return kind, tuple(shape), out


# ---------------------------------------------------------------------------- patches
def patch_grid(grid: Sequence[int], patch: Sequence[int]) -> tuple[int, ...]:
    """Patches along each axis: ``ceil(grid / patch)`` (edges padded by replication)."""
    return tuple(-(-g // p) for g, p in zip(grid, patch))


def to_patches(values: Tensor, patch: Sequence[int]) -> Tensor:
    """``[*grid, C]`` -> ``[N, prod(patch), C]``, patches in row-major order over the patch
    grid, points in each patch row-major (the order of `grid_coordinates(patch)`)."""
    grid, c = tuple(values.shape[:-1]), values.shape[-1]
    if len(patch) != len(grid):
        raise ValueError(f"patch {tuple(patch)} does not match a {len(grid)}-axis grid")
    counts = patch_grid(grid, patch)
    v = values
    for axis, (g, p, n) in enumerate(zip(grid, patch, counts)):
        if n * p > g:  # replicate the last slice up to a whole number of patches
            last = v.narrow(axis, g - 1, 1)
            v = torch.cat([v, last.expand(*v.shape[:axis], n * p - g, *v.shape[axis + 1 :])], dim=axis)
    d = len(grid)
    v = v.reshape(*[x for n, p in zip(counts, patch) for x in (n, p)], c)
    v = v.permute(*range(0, 2 * d, 2), *range(1, 2 * d, 2), 2 * d)
    return v.reshape(math.prod(counts), math.prod(patch), c)


def from_patches(patches: Tensor, grid: Sequence[int], patch: Sequence[int]) -> Tensor:
    """Inverse of `to_patches`: ``[N, prod(patch), C]`` -> ``[*grid, C]`` (padding cropped)."""
    counts, d, c = patch_grid(grid, patch), len(grid), patches.shape[-1]
    v = patches.reshape(*counts, *patch, c)
    order = [x for i in range(d) for x in (i, d + i)]
    v = v.permute(*order, 2 * d).reshape(*[n * p for n, p in zip(counts, patch)], c)
    return v[tuple(slice(0, g) for g in grid)]


# ---------------------------------------------------------------------------- files
def read_signal(path: str | os.PathLike[str], kind: str | None = None) -> Signal:
    """A signal from a file: images (PNG, JPEG, ...), ``.wav`` audio, ``.npy`` arrays
    (2-D: a lat-lon grid; 3-D: a shape volume, or ``[H, W, C]`` with ``kind="grid"``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if suffix in IMAGE_SUFFIXES:
        arr = read_image(path)
        return Signal(torch.from_numpy(np.ascontiguousarray(arr)), "image")
    if suffix == ".wav":
        from weightspace.signals.audio import read_wav

        x, rate = read_wav(path)
        return Signal(((x + 1) / 2).reshape(-1, 1).contiguous(), "audio", {"sample_rate": rate})
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{path}: cannot read .npy ({e})") from e
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"{path}: expected real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if arr.ndim == 2:
            kind, arr = kind or "grid", arr[..., None]
        elif arr.ndim == 3:
            kind = kind or "shape"
            arr = arr[..., None] if kind == "shape" else arr
        else:
            raise ValueError(f"{path}: expected a 2-D grid or a 3-D volume, got shape {arr.shape}")
        if arr.size == 0 or not np.isfinite(arr).all():
            raise ValueError(f"{path}: empty, or holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        v = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return Signal(torch.from_numpy(v.astype(np.float32)), kind, {"lo": lo, "hi": hi})
    raise ValueError(f"{path}: unknown input type {suffix!r}; expected an image, .wav or .npy")


def write_signal(signal: Signal, path: str | os.PathLike[str]) -> None:
    """Write a decoded signal: images to an image file, audio to 16-bit PCM ``.wav``, grids and
    shapes to ``.npy`` in physical units (``lo + v * (hi - lo)``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    v = signal.values.clamp(0, 1).numpy()
    if signal.kind == "image":
        if suffix not in IMAGE_SUFFIXES:
            raise ValueError(f"{path}: an image needs an image suffix ({', '.join(sorted(IMAGE_SUFFIXES))})")
        from PIL import Image

        arr = np.round(v * 255).astype(np.uint8)
        Image.fromarray(arr[..., 0] if signal.channels == 1 else arr).save(path)
    elif signal.kind == "audio":
        if suffix != ".wav":
            raise ValueError(f"{path}: audio is written as .wav")
        from scipy.io import wavfile

        pcm = np.round((v[:, 0] * 2 - 1) * 32767).astype(np.int16)
        wavfile.write(str(path), int(signal.meta["sample_rate"]), pcm)
    else:
        if suffix != ".npy":
            raise ValueError(f"{path}: a {signal.kind} is written as .npy")
        lo, hi = signal.meta.get("lo", 0.0), signal.meta.get("hi", 1.0)
        arr = lo + v.astype(np.float64) * (hi - lo)
        np.save(path, (arr[..., 0] if signal.channels == 1 else arr).astype(np.float32))


__all__ = [
    "KIND_AXES",
    "MAX_VALUES",
    "Signal",
    "check_layout",
    "from_patches",
    "image_values",
    "patch_grid",
    "read_signal",
    "to_patches",
    "write_signal",
]
