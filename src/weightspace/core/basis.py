"""Counting equivariant bases: is a layer the *complete* space of equivariant linear maps?

A weight-space layer that claims the full basis of a group's equivariant linear maps (DWSNets
for hidden-neuron permutations, NFN's NP layer for permutations of every neuron) is proven
complete by two numbers on a small spec:

- ``commutant``: the dimension of the space of linear maps ``A`` on the flattened weight space
  (``P`` entries) with ``g A = A g`` for every group element ``g``. For a group acting by
  permuting coordinates it equals the number of orbits of the group on pairs of coordinates
  (the orbit indicator matrices are a basis), counted here exactly from the permutation
  matrices of the group's generators (a transposition and an ``n``-cycle per symmetric group).
- ``realised``: the dimension of the span, over the layer's parameters, of its Jacobian. A
  linear layer's Jacobian is linear in its parameters, so the span of the Jacobians at
  ``commutant + 8`` random parameter draws is the whole realised space (with probability 1).

Complete means ``realised == commutant`` and every realised map commutes (``max_violation``
~ 0). `weightspace.core.basis.equivariant_dimension_by_nullspace` counts the commutant a
second way (the null space of ``g ⊗ I - I ⊗ g``), for the test that cross-checks the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights

IO = Literal["fixed", "permutable"]


def _axes(spec: NetworkSpec, io: IO) -> list[tuple[int, list[tuple[int, str, int]]]]:
    """The permuted neuron sets: (size, [(layer, "out" | "in", axis of the [B, C, out, in]
    weight)]) per set. Hidden sets always; with ``io="permutable"`` the input and output
    neurons as well."""
    L = spec.num_layers
    sets = [(g.size, [(g.layer, "out", 2), (g.layer + 1, "in", 3)]) for g in spec.permutation_groups()]
    if io == "permutable":
        sets.append((spec.in_features, [(0, "in", 3)]))
        sets.append((spec.out_features, [(L - 1, "out", 2)]))
    return sets


def _act_on_indices(spec: NetworkSpec, members: list[tuple[int, str, int]], perm: torch.Tensor) -> np.ndarray:
    """The permutation of flat coordinates (``sigma[k]``: where coordinate ``k`` comes from)
    that permuting one neuron set by ``perm`` induces."""
    flat = torch.arange(spec.num_params, dtype=torch.float64).view(1, 1, -1)
    w = Weights.unflatten(spec, flat)
    ws, bs = list(w.weights), list(w.biases)
    for layer, side, axis in members:
        ws[layer] = ws[layer].index_select(axis, perm)
        if side == "out" and bs[layer] is not None:
            bs[layer] = bs[layer].index_select(2, perm)
    moved = Weights(spec, tuple(ws), tuple(bs)).flatten().view(-1)
    return moved.round().long().numpy()


def generators(spec: NetworkSpec, io: IO = "fixed") -> list[np.ndarray]:
    """Permutations of the flat weight space (``[P]`` index arrays) that generate the group:
    for every neuron set of size n >= 2, the transposition (0 1) and the n-cycle."""
    gens = []
    for size, members in _axes(spec, io):
        if size < 2:
            continue
        swap = torch.arange(size)
        swap[[0, 1]] = swap[[1, 0]]
        cycle = torch.roll(torch.arange(size), 1)
        for perm in (swap, cycle) if size > 2 else (swap,):
            gens.append(_act_on_indices(spec, members, perm))
    return gens


def commutant_dimension(spec: NetworkSpec, io: IO = "fixed") -> int:
    """Dimension of the linear maps on the flat weight space that commute with the group:
    the number of orbits of the group on pairs of coordinates."""
    p = spec.num_params
    pairs = np.arange(p * p).reshape(p, p)
    rows, cols = [], []
    for sigma in generators(spec, io):
        rows.append(pairs.reshape(-1))
        cols.append(pairs[np.ix_(sigma, sigma)].reshape(-1))
    if not rows:
        return p * p
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(p * p, p * p))
    n, _ = connected_components(graph, directed=False)
    return int(n)


def equivariant_dimension_by_nullspace(spec: NetworkSpec, io: IO = "fixed") -> int:
    """The same dimension, computed as the null space of the stacked commutation constraints
    ``(G ⊗ I - I ⊗ G^T) vec(A) = 0`` with dense permutation matrices ``G`` (small specs only:
    the system has ``P^2`` unknowns)."""
    p = spec.num_params
    eye = np.eye(p)
    blocks = []
    for sigma in generators(spec, io):
        g = eye[sigma]  # (g x)[k] = x[sigma[k]]
        blocks.append(np.kron(g, eye) - np.kron(eye, g.T))
    if not blocks:
        return p * p
    system = np.concatenate(blocks)
    rank = np.linalg.matrix_rank(system)
    return p * p - int(rank)


@dataclass(frozen=True)
class BasisReport:
    commutant: int  # dimension of the group's equivariant linear maps
    realised: int  # dimension of the span of the layer's Jacobians over its parameters
    max_violation: float  # largest |g J - J g| / |J| over draws and generators (0 for an equivariant layer)

    @property
    def complete(self) -> bool:
        return self.realised == self.commutant and self.max_violation < 1e-8


def jacobian(layer: nn.Module, spec: NetworkSpec) -> np.ndarray:
    """``[P, P]``: the linear part of ``layer`` at its current parameters (``J[i, k]``: output
    coordinate i per unit of input coordinate k), from one batch of the P basis networks."""
    p = spec.num_params
    dtype = next(layer.parameters()).dtype
    basis = Weights.unflatten(spec, torch.eye(p, dtype=dtype).unsqueeze(1))
    zero = Weights.unflatten(spec, torch.zeros(1, 1, p, dtype=dtype))
    with torch.no_grad():
        out = layer(basis).flatten().reshape(p, -1)
        base = layer(zero).flatten().reshape(1, -1)
    if out.shape[1] != p:
        raise ValueError(f"the layer must map one channel to one channel of the same spec; got {out.shape[1]} outputs for {p}")
    return (out - base).T.double().numpy()


def basis_report(
    layer: nn.Module,
    spec: NetworkSpec,
    io: IO = "fixed",
    *,
    exclude: Callable[[str], bool] | None = None,
    seed: int = 0,
) -> BasisReport:
    """Count what ``layer`` (a linear, one-channel-to-one-channel map of `Weights` of ``spec``,
    every bias present; evaluated in its own dtype, use float64) realises against the group's
    commutant. Parameters whose name ``exclude`` accepts are held at zero (a term removed)."""
    if any(not layer.bias for layer in spec.layers):
        raise ValueError("basis_report needs a spec with every bias present (see filled_spec)")
    commutant = commutant_dimension(spec, io)
    gens = generators(spec, io)
    params = dict(layer.named_parameters())
    saved = {k: v.detach().clone() for k, v in params.items()}
    gen = torch.Generator().manual_seed(seed)
    draws, violation = [], 0.0
    try:
        for _ in range(commutant + 8):
            with torch.no_grad():
                for name, prm in params.items():
                    if exclude is not None and exclude(name):
                        prm.zero_()
                    else:
                        prm.copy_(torch.randn(prm.shape, generator=gen, dtype=prm.dtype))
            j = jacobian(layer, spec)
            scale = max(np.abs(j).max(), 1e-300)
            for sigma in gens:
                violation = max(violation, float(np.abs(j[np.ix_(sigma, sigma)] - j).max() / scale))
            draws.append(j.reshape(-1))
    finally:
        with torch.no_grad():
            for name, prm in params.items():
                prm.copy_(saved[name])
    stack = np.stack(draws)
    s = np.linalg.svd(stack, compute_uv=False)
    realised = int((s > s[0] * 1e-9).sum()) if s.size and s[0] > 0 else 0
    return BasisReport(commutant, realised, violation)
