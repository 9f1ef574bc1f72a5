"""Kernel reordering for NeRN: function-preserving channel permutations that make neighbouring
kernel coordinates hold similar kernels, so a smooth predictor can fit them.

A NeRN predictor maps a kernel's coordinate ``(layer, filter, channel)`` to its 3x3 weights.
Permuting the channels of a :class:`ChannelGroup` reorders the *filters* (output axis) of
every layer that writes into those channels and the *kernels inside each filter* (input
axis) of every layer that reads them, and leaves the network's function unchanged
(residual streams are one group, so every layer adding into a stream moves together).

The smoothness to maximise separates exactly over groups: with normalised kernels
``k[l, i, j]`` the total squared distance between cross-filter neighbours of layer ``l``,
``sum_i ||k[l, p(i)] - k[l, p(i+1)]||^2``, depends only on the permutation ``p`` of its
output channels, and the in-filter neighbours' total only on that of its input channels.
So each group is one shortest-Hamiltonian-path problem over its channels, where a channel's
"city" is the concatenation of its filters in writer layers and its columns in reader
layers. A nearest-neighbour chain from several starts followed by 2-opt solves it in
milliseconds per group (the NeRN reference solves a TSP per layer, which takes hours on
ResNet-18, and stores non-function-preserving permutations that reconstruction must undo).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from weightspace.zoo.reference_cnns import ChannelGroup

Permutations = dict[str, Tensor]  # group name -> [size] long; new channel j is old channel perm[j]


def permute_state_dict(state: dict[str, Tensor], groups: list[ChannelGroup], perms: Permutations) -> dict[str, Tensor]:
    """A new state dict with every group's members indexed by its permutation (others copied)."""
    out = dict(state)
    for g in groups:
        p = perms.get(g.name)
        if p is None:
            continue
        if sorted(p.tolist()) != list(range(g.size)):
            raise ValueError(f"group {g.name}: not a permutation of {g.size} channels")
        for key, axis in g.members:
            out[key] = out[key].index_select(axis, p.to(out[key].device))
    return out


def invert(perms: Permutations) -> Permutations:
    return {k: torch.argsort(p) for k, p in perms.items()}


def random_permutations(groups: list[ChannelGroup], generator: torch.Generator) -> Permutations:
    return {g.name: torch.randperm(g.size, generator=generator) for g in groups}


def layer_scales(state: dict[str, Tensor], keys: list[str]) -> dict[str, float]:
    """Standard deviation of each layer's weights: layers differ in scale by their fan-in, and
    dividing by it lets every layer count alike in distances and losses."""
    return {k: float(state[k].float().std().clamp_min(1e-8)) for k in keys}


def smoothness(state: dict[str, Tensor], keys: list[str], scales: dict[str, float] | None = None) -> dict[str, float]:
    """Mean L2 distance between neighbouring normalised kernels, over all layers ``keys``:
    ``cross_filter`` between kernel ``(i, j)`` and ``(i + 1, j)``, ``in_filter`` between
    ``(i, j)`` and ``(i, j + 1)``; lower is smoother."""
    scales = scales or layer_scales(state, keys)
    sums = {"cross_filter": 0.0, "in_filter": 0.0}
    counts = {"cross_filter": 0, "in_filter": 0}
    for k in keys:
        w = state[k].double().flatten(2) / scales[k]  # [out, in, 9]
        for name, axis in (("cross_filter", 0), ("in_filter", 1)):
            if w.shape[axis] > 1:
                d = torch.linalg.vector_norm(w.diff(dim=axis), dim=-1)
                sums[name] += float(d.sum())
                counts[name] += d.numel()
    return {name: sums[name] / max(counts[name], 1) for name in sums}


def shortest_path_order(features: np.ndarray, *, max_starts: int = 32, max_passes: int = 50) -> np.ndarray:
    """A short open path through the rows of ``features`` ``[n, d]`` (squared Euclidean costs):
    the best nearest-neighbour chain over up to ``max_starts`` starting rows, improved by 2-opt.
    Returns the visiting order, a permutation ``[n]``; deterministic."""
    n = len(features)
    if n <= 2:
        return np.arange(n)
    sq = (features**2).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * features @ features.T, 0.0)
    # Starting at the ends of the leading principal direction makes a good open path likely.
    # (the top eigenvector of the [n, n] Gram matrix: the features themselves can be thousands wide)
    centred = features - features.mean(0)
    proj = np.linalg.eigh(centred @ centred.T)[1][:, -1]
    starts = np.unique(np.concatenate([[proj.argmin(), proj.argmax()],
                                       np.linspace(0, n - 1, min(n, max_starts)).astype(int)]))
    # All chains grow at once: one vectorised nearest-neighbour step per position.
    rows = np.arange(len(starts))
    orders = np.empty((len(starts), n), dtype=np.int64)
    orders[:, 0] = starts
    free = np.ones((len(starts), n), dtype=bool)
    free[rows, starts] = False
    for t in range(1, n):
        nxt = np.where(free, dist[orders[:, t - 1]], np.inf).argmin(axis=1)
        orders[:, t] = nxt
        free[rows, nxt] = False
    costs = dist[orders[:, :-1], orders[:, 1:]].sum(axis=1)
    best = orders[costs.argmin()].copy()
    return _two_opt(best, dist, max_passes)


def _two_opt(order: np.ndarray, dist: np.ndarray, max_passes: int) -> np.ndarray:
    """Reverse segments ``order[i..j]`` while that shortens the open path."""
    n = len(order)
    for _ in range(max_passes):
        improved = False
        for i in range(n - 1):
            j = np.arange(i + 1, n)
            a, b = order[i], order[j]
            # Edges removed: (order[i-1], a) and (b, order[j+1]); added: (order[i-1], b) and (a, order[j+1]).
            before = np.full(len(j), dist[order[i - 1], a]) if i > 0 else np.zeros(len(j))
            after = dist[order[i - 1], b] if i > 0 else np.zeros(len(j))
            nxt = order[np.minimum(j + 1, n - 1)]
            tail = j < n - 1
            before = before + np.where(tail, dist[b, nxt], 0.0)
            after = after + np.where(tail, dist[a, nxt], 0.0)
            gain = before - after
            k = int(gain.argmax())
            if gain[k] > 1e-12 * (1.0 + before[k]):
                order[i : j[k] + 1] = order[i : j[k] + 1][::-1].copy()
                improved = True
        if not improved:
            break
    return order


def group_features(state: dict[str, Tensor], group: ChannelGroup, keys: list[str],
                   scales: dict[str, float]) -> np.ndarray:
    """``[size, d]``: per channel of ``group``, its normalised 3x3 kernels in every member
    layer from ``keys`` — rows of writer layers (axis 0), columns of reader layers (axis 1)."""
    parts = [(state[k].double() / scales[k]).movedim(axis, 0).flatten(1) for k, axis in group.members if k in keys]
    if not parts:
        return np.zeros((group.size, 1))
    return torch.cat(parts, dim=1).numpy()


@dataclass(frozen=True)
class ReorderReport:
    before: dict[str, float]  # smoothness() of the original network
    after: dict[str, float]  # ... and of the reordered one
    seconds: float


def smooth_permutations(state: dict[str, Tensor], groups: list[ChannelGroup], keys: list[str]) -> Permutations:
    """One permutation per group that shortens the paths through its channels' kernels."""
    scales = layer_scales(state, keys)
    return {g.name: torch.from_numpy(shortest_path_order(group_features(state, g, keys, scales))).long()
            for g in groups}


def reorder(state: dict[str, Tensor], groups: list[ChannelGroup], keys: list[str]
            ) -> tuple[dict[str, Tensor], Permutations, ReorderReport]:
    """(reordered state dict — the same function —, the permutations, smoothness before/after)."""
    start = time.perf_counter()
    perms = smooth_permutations(state, groups, keys)
    new = permute_state_dict(state, groups, perms)
    seconds = time.perf_counter() - start
    scales = layer_scales(state, keys)  # permutations keep each layer's std
    return new, perms, ReorderReport(smoothness(state, keys, scales), smoothness(new, keys, scales), seconds)
