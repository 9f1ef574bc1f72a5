"""Figures written to disk (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor


def plot_reconstructions(
    originals: Tensor, reconstructions: Tensor, psnr: Sequence[float], path: str | Path, *, labels: Sequence[int] | None = None
) -> Path:
    """A two-row grid: originals (top) and INR reconstructions (bottom) with their PSNR.

    originals, reconstructions: ``[n, H, W, C]`` in [0, 1] (C = 1 or 3).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False)
    for j in range(n):
        for row, img in ((0, originals[j]), (1, reconstructions[j])):
            a = img.detach().cpu().numpy()
            ax = axes[row, j]
            ax.imshow(a[..., 0] if a.shape[-1] == 1 else np.clip(a, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(f"label {labels[j]}" if labels is not None else "", fontsize=8)
        axes[1, j].set_title(f"{psnr[j]:.1f} dB", fontsize=8)
    axes[0, 0].set_ylabel("original", fontsize=8)
    axes[1, 0].set_ylabel("INR", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
