"""Values on a latitude-longitude grid: procedural spherical-harmonic fields and ``.npy`` files.

A field of ``H x W`` values is a `SignalSet` of kind ``"grid"`` on `grid_coordinates((H, W))`:
column 0 is latitude, column 1 longitude, ``lat = 90 deg * c0`` (south pole at -1, north at
+1) and ``lon = 180 deg * c1``. Both ends of the longitude axis are the same meridian
(-180 = +180): the grid is the ``linspace`` grid every other signal uses, nothing special.

Procedural fields are random band-limited sums of real spherical harmonics,

    f(lat, lon) = sum_{l <= L} sum_{|m| <= l} a_lm Y_lm(lat, lon),   a_lm ~ N(0, (l + 1)^-decay)

scaled to unit RMS on the grid and stored as ``clip(0.5 + f / 6, 0, 1)`` (so about 3 RMS
either way fits). Classes are the band limits ``L``. Fields loaded from ``.npy`` keep their
physical units through an affine map recorded in ``meta`` (``lo + v * (hi - lo)``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from weightspace.signals.base import SignalSet, grid_coordinates, seeded_split

SH_ENCODING = "clip(0.5 + f / 6, 0, 1) of a unit-RMS field f"
GRID_COORDINATES_LATLON = "grid_coordinates((H, W)): lat = 90 deg * c0, lon = 180 deg * c1"
# a .npy field larger than this many values is refused (a grid codec input, not a data lake)
MAX_GRID_VALUES = 2**26


def latlon(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude in radians of every grid point, each ``[H * W]`` (row-major)."""
    c = grid_coordinates((height, width)).double().numpy()
    return c[:, 0] * (np.pi / 2), c[:, 1] * np.pi


def spherical_harmonic_field(
    height: int, width: int, band_limit: int, seed: int | Sequence[int], decay: float = 1.0
) -> np.ndarray:
    """One random unit-RMS real spherical-harmonic field ``[H, W]`` (module docstring)."""
    from scipy.special import sph_harm_y

    if band_limit < 0 or height < 2 or width < 2:
        raise ValueError(f"need band_limit >= 0 and a grid of at least 2 x 2, got {band_limit}, {height} x {width}")
    lat, lon = latlon(height, width)
    polar = np.pi / 2 - lat  # scipy's theta: 0 at the north pole
    g = np.random.default_rng(seed)
    f = np.zeros(lat.shape)
    for deg in range(band_limit + 1):
        scale = (deg + 1.0) ** (-decay / 2)
        for m in range(-deg, deg + 1):
            y = sph_harm_y(deg, abs(m), polar, lon)
            # real harmonics: cos for m >= 0, sin for m < 0 (sqrt 2 keeps them orthonormal)
            real = y.real if m == 0 else np.sqrt(2) * (y.real if m > 0 else y.imag)
            f += scale * g.standard_normal() * real
    rms = np.sqrt(np.mean(f**2))
    return (f / max(rms, 1e-12)).reshape(height, width)


def load_spherical_harmonics(
    n_per_class: int = 20,
    height: int = 32,
    width: int = 64,
    *,
    band_limits: Sequence[int] = (2, 4, 8),
    decay: float = 1.0,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> SignalSet:
    """Procedural lat-lon fields: values ``[N, H*W, 1]`` in [0, 1], class-major; field ``j``
    of band limit ``L`` depends only on ``(seed, L, j)``."""
    values, labels = [], []
    for c, band in enumerate(band_limits):
        for j in range(n_per_class):
            f = spherical_harmonic_field(height, width, int(band), (seed, int(band), j), decay)
            values.append(torch.from_numpy(np.clip(0.5 + f / 6.0, 0.0, 1.0).astype(np.float32)).reshape(-1, 1))
            labels.append(c)
    n = len(values)
    return SignalSet(
        torch.stack(values),
        grid_coordinates((height, width)),
        torch.tensor(labels, dtype=torch.int64),
        tuple(seeded_split(n, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)),
        "spherical-harmonics",
        tuple(f"L{b}" for b in band_limits),
        "grid",
        (height, width, 1),
        True,
        {"encoding": SH_ENCODING, "coordinates": GRID_COORDINATES_LATLON, "decay": decay, "seed": seed},
    )


def load_grid_npy(path: str | os.PathLike[str]) -> SignalSet:
    """Lat-lon fields from a ``.npy`` file: ``[H, W]`` (one field), ``[N, H, W]`` or ``[N, H, W, C]``.

    Values are mapped to [0, 1] by the file's global min and max, recorded in
    ``meta`` as ``lo`` / ``hi`` (physical = ``lo + v * (hi - lo)``). No pickles are read.
    """
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read .npy ({e})") from e
    if arr.ndim == 2:
        arr = arr[None, :, :, None]
    elif arr.ndim == 3:
        arr = arr[..., None]
    elif arr.ndim != 4:
        raise ValueError(f"{path}: expected [H, W], [N, H, W] or [N, H, W, C], got shape {arr.shape}")
    if arr.size > MAX_GRID_VALUES or arr.size == 0:
        raise ValueError(f"{path}: {arr.size} values; a grid must hold 1 to {MAX_GRID_VALUES}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{path}: expected real numbers, got dtype {arr.dtype}")
    data = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: holds NaN or infinite values")
    n, h, w, c = data.shape
    if h < 2 or w < 2:
        raise ValueError(f"{path}: a lat-lon grid needs at least 2 x 2 points, got {h} x {w}")
    lo, hi = float(data.min()), float(data.max())
    v = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    return SignalSet(
        torch.from_numpy(v.astype(np.float32)).reshape(n, h * w, c),
        grid_coordinates((h, w)),
        torch.zeros(n, dtype=torch.int64),
        ("test",) * n,
        f"npy:{path}",
        ("field",),
        "grid",
        (h, w, c),
        True,
        {"encoding": "(x - lo) / (hi - lo)", "lo": lo, "hi": hi, "coordinates": GRID_COORDINATES_LATLON},
    )


__all__ = [
    "GRID_COORDINATES_LATLON",
    "MAX_GRID_VALUES",
    "SH_ENCODING",
    "latlon",
    "load_grid_npy",
    "load_spherical_harmonics",
    "spherical_harmonic_field",
]
