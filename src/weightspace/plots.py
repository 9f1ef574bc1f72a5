"""Figures written to disk (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor


def plot_image_rows(
    rows: Sequence[tuple[str, Tensor]], path: str | Path, *, titles: Sequence[str] | None = None, captions: Sequence[str] | None = None
) -> Path:
    """A grid with one labelled row per entry of ``rows``: (label, images ``[n, H, W, C]`` in
    [0, 1], C = 1 or 3); optional titles over the first row and captions under the last."""
    plt = _pyplot()
    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.5 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for j in range(n):
            a = images[j].detach().cpu().numpy()
            ax = axes[r, j]
            ax.imshow(a[..., 0] if a.shape[-1] == 1 else np.clip(a, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    for j in range(n):
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
        if captions is not None:
            axes[-1, j].set_xlabel(captions[j], fontsize=8)
    return _save(fig, path)


def plot_reconstructions(
    originals: Tensor | None, reconstructions: Tensor, psnr: Sequence[float], path: str | Path, *, labels: Sequence[int] | None = None
) -> Path:
    """Originals (top row, if given) and INR reconstructions (bottom) with their PSNR.

    originals, reconstructions: ``[n, H, W, C]`` in [0, 1] (C = 1 or 3).
    """
    rows = [("original", originals)] if originals is not None else []
    rows.append(("INR", reconstructions))
    titles = [f"label {x}" for x in labels] if labels is not None else None
    return plot_image_rows(rows, path, titles=titles, captions=[f"{p:.1f} dB" for p in psnr])


def plot_waveforms(
    originals: Tensor | None, reconstructions: Tensor, psnr: Sequence[float], path: str | Path, *, labels: Sequence[int] | None = None
) -> Path:
    """One panel per signal: the INR's 1D reconstruction over the original (if given).

    originals, reconstructions: ``[n, T]`` or ``[n, T, 1]`` in [0, 1].
    """
    plt = _pyplot()
    n = len(reconstructions)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 1.6 * rows), squeeze=False)
    for j in range(rows * cols):
        ax = axes[j // cols, j % cols]
        if j >= n:
            ax.axis("off")
            continue
        if originals is not None:
            ax.plot(originals[j].reshape(-1).detach().cpu().numpy(), color="0.6", lw=1.5, label="original")
        ax.plot(reconstructions[j].reshape(-1).detach().cpu().numpy(), color="C0", lw=0.8, label="INR")
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        title = f"{psnr[j]:.1f} dB" + (f", label {labels[j]}" if labels is not None else "")
        ax.set_title(title, fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="upper right")
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
