"""Generated signals beside their nearest training signal, so memorisation shows.

A sample that equals its nearest training signal was memorised; one that is close to no
training signal but looks like the data was generated. Distances are root-mean-square
differences over all points and channels of the decoded signals (values in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor


def nearest_neighbours(samples: Tensor, train: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """For signals ``samples`` ``[S, P, c]``: index ``[S]`` of the nearest of ``train``
    ``[N, P, c]`` and the RMS distance ``[S]`` to it."""
    if samples.shape[1:] != train.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape)} and training signals {tuple(train.shape)} differ in shape")
    a = samples.flatten(1).double()
    best_d = torch.full((len(a),), float("inf"), dtype=torch.float64)
    best_i = torch.zeros(len(a), dtype=torch.long)
    for start in range(0, len(train), chunk):
        d, i = torch.cdist(a, train[start : start + chunk].flatten(1).double()).min(dim=1)
        better = d < best_d
        best_d[better], best_i[better] = d[better], i[better] + start
    return best_i, (best_d / a.shape[1] ** 0.5).float()


def as_images(signals: Tensor, signal_shape: Sequence[int]) -> Tensor:
    """Signals ``[n, P, c]`` on a grid -> pictures ``[n, H, W, c]``: images as they are,
    3D grids as their middle slice along the last axis."""
    shape = tuple(int(s) for s in signal_shape)
    grid = signals.reshape(len(signals), *shape)
    if len(shape) == 3:
        return grid
    if len(shape) == 4:
        return grid.select(3, shape[2] // 2)
    raise ValueError(f"no picture for signals of shape {shape}")


def plot_samples_with_neighbours(
    samples: Tensor,
    train: Tensor,
    signal_shape: Sequence[int],
    path: str | Path,
    *,
    train_labels: Sequence[int] | None = None,
) -> tuple[Path, Tensor, Tensor]:
    """Figure: generated signals (top row) over their nearest training signal (bottom row),
    captioned with the RMS distance. Returns (path, neighbour index ``[S]``, distance ``[S]``)."""
    from weightspace.plots import plot_image_rows

    idx, dist = nearest_neighbours(samples, train)
    titles = [f"nn: {train_labels[int(i)]}" for i in idx] if train_labels is not None else None
    rows = [("generated", as_images(samples, signal_shape)), ("nearest train", as_images(train[idx], signal_shape))]
    out = plot_image_rows(rows, path, titles=titles, captions=[f"rms {d:.3f}" for d in dist.tolist()])
    return out, idx, dist


__all__ = ["as_images", "nearest_neighbours", "plot_samples_with_neighbours"]
