"""Figures of hyper-representations: a 2D map of the embeddings coloured by model
properties, and the accuracy distribution of sampled vs zoo models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from weightspace.plots import _pyplot, _save


def embedding_map(embeddings: np.ndarray, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """``[N, E]`` -> ``[N, 2]`` by PCA or t-SNE (scikit-learn)."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(embeddings)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, init="pca", random_state=seed, perplexity=min(30.0, max(2.0, (len(embeddings) - 1) / 3))).fit_transform(embeddings)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def plot_embedding_map(
    points: np.ndarray, colours: Mapping[str, Sequence[float]], path: str | Path, *, title: str = ""
) -> Path:
    """One scatter panel per entry of ``colours`` (name -> value per point) over the same
    2D ``points`` ``[N, 2]``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(colours), figsize=(4.6 * len(colours), 4), squeeze=False)
    for ax, (name, values) in zip(axes[0], colours.items()):
        sc = ax.scatter(points[:, 0], points[:, 1], c=np.asarray(values, dtype=float), s=6, cmap="viridis")
        fig.colorbar(sc, ax=ax, label=name)
        ax.set_title(f"{title} coloured by {name}".strip(), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def plot_accuracy_histograms(groups: Mapping[str, Sequence[float]], path: str | Path, *, bins: int = 30) -> Path:
    """Overlaid accuracy histograms, one per named group (e.g. zoo, sampled, random init)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    edges = np.linspace(0, 1, bins + 1)
    for name, values in groups.items():
        v = np.asarray(values, dtype=float)
        ax.hist(v, bins=edges, alpha=0.5, density=True, label=f"{name} (n={len(v)}, mean {v.mean():.3f})")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _save(fig, path)
