"""Alignment and canonicalisation: picking one representative of a network's symmetry orbit.

- `align`: weight matching (Ainsworth et al., "Git Re-Basin"): permute the hidden neurons
  of each network to best match a reference network, solving one linear assignment
  (scipy's `linear_sum_assignment`) per hidden layer in turn until nothing changes.
- `canonicalize`: a representative that needs no reference: flip signs (odd activations)
  so that each neuron's bias is non-negative, rescale (positively homogeneous activations)
  each neuron's incoming weights to unit norm, then sort neurons by bias, first incoming
  weight, row sum and (for neurons with identical incoming weights) their normalised
  outgoing weights. ``canonicalize(g . w) == canonicalize(w)`` for every group element
  ``g`` up to ties in all four keys (and, with sign or scale steps, near-ties that rounding
  decides).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from weightspace.core.symmetry import GroupElement, act, permute
from weightspace.core.weights import Weights


def _rows(w: Weights, layer: int, net: int) -> Tensor:
    """Incoming weights (and bias) of layer ``layer``'s neurons: ``[out, F]``."""
    t = w.weights[layer][net].transpose(0, 1).reshape(w.weights[layer].shape[2], -1)
    b = w.biases[layer]
    return t if b is None else torch.cat([t, b[net].transpose(0, 1)], dim=1)


def _cols(w: Weights, layer: int, net: int) -> Tensor:
    """Outgoing weights of layer ``layer - 1``'s neurons, read from layer ``layer``: ``[in, F]``."""
    t = w.weights[layer][net]  # [C, out, in, *k]
    return t.transpose(0, 2).reshape(t.shape[2], -1)


def align(weights: Weights, reference: Weights, *, max_iter: int = 50, seed: int = 0) -> tuple[Weights, tuple[Tensor, ...]]:
    """Permute each network of ``weights`` towards ``reference`` (a batch of one).

    Returns the aligned weights and the permutations used (``[B, n]`` per hidden group).
    The functions of the networks are unchanged.
    """
    if len(reference) != 1 or reference.spec != weights.spec:
        raise ValueError("reference must be a single network of the same spec")
    spec = weights.spec
    groups = spec.permutation_groups()
    rng = np.random.default_rng(seed)
    perms_all = []
    for net in range(len(weights)):
        perms = [torch.arange(g.size) for g in groups]
        # First pass, input to output, on incoming weights only: their inputs are already
        # aligned (fixed input neurons, then the layers aligned before), which exactly
        # recovers a permuted copy. Then coordinate descent on incoming + outgoing weights.
        for sweep in range(max_iter + 1):
            changed = False
            order = range(len(groups)) if sweep == 0 else rng.permutation(len(groups))
            for k in order:
                i = groups[k].layer
                cur = permute(weights[net], tuple(perms))
                sim = _rows(reference, i, 0) @ _rows(cur, i, 0).T
                if sweep > 0:
                    sim = sim + _cols(reference, i + 1, 0) @ _cols(cur, i + 1, 0).T
                _, assign = linear_sum_assignment(sim.detach().cpu().numpy(), maximize=True)
                step = torch.as_tensor(assign)
                if not torch.equal(step, torch.arange(len(step))):
                    perms[k] = perms[k][step]
                    changed = True
            if sweep > 0 and not changed:
                break
        perms_all.append(perms)
    stacked = tuple(torch.stack([p[k] for p in perms_all]) for k in range(len(groups)))
    return permute(weights, stacked), stacked


def _outgoing_key(w: Weights, layer: int, n: int) -> Tensor:
    """``[B, n]``: for each neuron of ``layer``, the sum over the next layer's neurons r of
    ``|W_next[r, j]| / ||W_next[r]||`` (kernel entries included). Invariant to permutations,
    sign flips and positive rescalings of the next layer's neurons, which later steps of
    `canonicalize` may still apply."""
    nxt = w.weights[layer + 1][:, 0]  # [B, out, n, *kernel]
    per = nxt.reshape(*nxt.shape[:3], -1).abs()  # [B, out, n, k]
    norm = nxt.reshape(*nxt.shape[:2], -1).square().sum(dim=2).sqrt().clamp_min(1e-12)  # [B, out]
    if w.biases[layer + 1] is not None:  # a neuron's scale acts on its bias too
        norm = (norm.square() + w.biases[layer + 1][:, 0].square()).sqrt().clamp_min(1e-12)
    return (per.sum(dim=3) / norm.unsqueeze(2)).sum(dim=1)


def canonicalize(weights: Weights, *, signs: bool = True, scales: bool = True) -> Weights:
    """A canonical representative of each network's orbit (see module doc). Raw weights
    (C = 1). Sign and scale steps apply only where the spec admits them."""
    if weights.channels != 1:
        raise ValueError("canonicalize needs raw weights (C = 1)")
    spec = weights.spec
    groups = spec.permutation_groups()
    b = len(weights)
    none = (None,) * len(groups)
    w = weights
    # Layer by layer: each step reads rows whose inputs are already canonical, so the keys
    # below do not depend on how earlier layers were permuted, flipped or scaled.
    for k, g in enumerate(groups):
        i = g.layer

        def rows_bias(w: Weights) -> tuple[Tensor, Tensor | None]:
            rows = w.weights[i][:, 0].reshape(b, g.size, -1)  # [B, n, F]
            return rows, (w.biases[i][:, 0] if w.biases[i] is not None else None)

        rows, bias = rows_bias(w)
        sign = scale = None
        if signs and spec.admits_sign_flips(i):
            # the sign of the bias, or of the row sum where the bias is zero or absent
            key = bias if bias is not None else rows.sum(dim=2)
            key = torch.where(key == 0, rows.sum(dim=2), key)
            sign = torch.where(key < 0, -1.0, 1.0).to(rows.dtype)
        if scales and spec.admits_scaling(i):
            norm = rows.square().sum(dim=2) + (bias.square() if bias is not None else 0.0)
            scale = 1.0 / norm.sqrt().clamp_min(1e-12)
        if sign is not None or scale is not None:
            sv, cv = list(none), list(none)
            sv[k], cv[k] = sign, scale
            w = act(w, GroupElement(none, tuple(sv), tuple(cv)))
            rows, bias = rows_bias(w)
        if bias is None:
            bias = torch.zeros(b, g.size, dtype=rows.dtype, device=rows.device)
        # lexicographic key: bias, then the first incoming weight, then the row sum, then the
        # outgoing weights. The last breaks ties between neurons with identical incoming
        # weights (dead ReLU units that weight decay drove to one point are common in trained
        # zoos): swapping them changes nothing in this layer but moves columns of the next,
        # so without it the representative depends on the order the network came in.
        key = torch.stack([bias, rows[:, :, 0], rows.sum(dim=2), _outgoing_key(w, i, g.size)], dim=2)
        order = torch.arange(g.size, device=rows.device).expand(b, -1)
        for col in reversed(range(key.shape[2])):  # stable sorts, least significant first
            vals = torch.gather(key[:, :, col], 1, order)
            order = torch.gather(order, 1, torch.argsort(vals, dim=1, stable=True))
        pv = list(none)
        pv[k] = order
        w = act(w, GroupElement(tuple(pv), none, none))
    return w
