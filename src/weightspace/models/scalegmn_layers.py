"""ScaleGMN's building blocks (jkalogero/scalegmn ``src/scalegmn/{layers,mlp}.py``): its MLP,
the invariant canonicalisers, the equivariant gated net and the full-graph readout; the
model is `weightspace.models.scalegmn`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.models.graph_features import split_linear

__all__ = ["Canonical", "EquivariantNet", "FullGraphReadout", "mlp", "mlp_parts"]


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """The reference's ``mlp`` with ``d_k=[hidden]``, SiLU, layer norm."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, d_out))


def mlp_parts(net: nn.Sequential, *xs: Tensor) -> Tensor:
    """``net(cat(xs))`` for an `mlp`, with its first layer applied to each part before they
    are broadcast together (the parts may be per-node terms broadcast over the edges)."""
    h = sum(split_linear(net[0], x, i, len(xs), bias=i == 0) for i, x in enumerate(xs))
    return net[1:](h)


class Canonical(nn.Module):
    """An invariant of a node state under its group (``InvariantLayer`` before ``phi``):
    ``rho(x) + rho(-x)`` for sign flips, ``x / |x|`` (0 at 0) for positive rescalings. (The
    reference divides by ``|x| + 1e-10``, which is invariant only up to ``1e-10 / |x|``, and
    bias-free layers do start hidden neurons at 0.)"""

    def __init__(self, d: int, hidden: int, symmetry: str) -> None:
        super().__init__()
        self.symmetry = symmetry
        self.rho = mlp(d, hidden, d) if symmetry == "sign" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.rho is not None:
            # rho(x) + rho(-x) with rho = L2 o SiLU o LN o L1, in two products rather than four:
            # L1 (+-x) = b1 +- W1 x, and L2 is linear
            lin1, norm, act, lin2 = self.rho
            a = F.linear(x, lin1.weight)
            return lin2(act(norm(lin1.bias + a)) + act(norm(lin1.bias - a))) + lin2.bias
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x / torch.where(norm > 0, norm, torch.ones_like(norm))


class EquivariantNet(nn.Module):
    """``W x * gate(x)``: ``gate = phi(canonical(x))`` for hidden neurons (equivariant),
    ``phi_in(x)`` for input/output ones (the reference's one-layer ``EquivariantNet`` with
    ``equiv_on_hidden`` and two MLPs). Branches a spec never uses are not built."""

    def __init__(self, d_in: int, d_out: int, hidden: int, symmetry: str, has_hidden: bool) -> None:
        super().__init__()
        self.W = nn.Linear(d_in, d_out, bias=False)
        self.canonical = Canonical(d_in, hidden, symmetry) if has_hidden else None
        self.phi = mlp(d_in, hidden, d_out) if has_hidden else None
        self.phi_in = mlp(d_in, hidden, d_out)

    def hidden(self, x: Tensor) -> Tensor:
        return self.W(x) * self.phi(self.canonical(x))

    def io(self, x: Tensor) -> Tensor:
        return self.W(x) * self.phi_in(x)

    def masked(self, x: Tensor, hidden: Tensor) -> Tensor:
        """Rows of ``x`` where ``hidden`` through `hidden`, the others through `io`."""
        out = x.new_empty(*x.shape[:-1], self.W.out_features)
        if bool(hidden.any()):
            out[hidden] = self.hidden(x[hidden])
        if bool((~hidden).any()):
            out[~hidden] = self.io(x[~hidden])
        return out


class FullGraphReadout(nn.Module):
    """``readout_range: full_graph``: for sign/scale, the reference's
    ``PermScaleInvariantReadout`` (the sum over hidden neurons of an invariant
    ``phi(canonical(x))``, beside the input and output neurons' states, concatenated, through an
    MLP); for permutation, its ``DeepSet`` (``global(sum of local(x))`` over all neurons)."""

    def __init__(self, d: int, hidden: int, out_features: int, symmetry: str, num_io: int) -> None:
        super().__init__()
        self.symmetric = symmetry != "permutation"
        if self.symmetric:
            self.canonical, self.phi = Canonical(d, hidden, symmetry), mlp(d, hidden, d)
            self.global_mlp = mlp(d + d * num_io, hidden, out_features)
        else:
            self.local_mlp, self.global_mlp = mlp(d, hidden, d), mlp(d, hidden, out_features)

    def pooled(self, x: Tensor) -> Tensor:
        """The per-neuron term that is summed (hidden neurons only when symmetric)."""
        return self.phi(self.canonical(x)) if self.symmetric else self.local_mlp(x)

    def forward(self, pooled_sum: Tensor, io: Tensor) -> Tensor:
        """``pooled_sum`` ``[B, d]``, ``io`` ``[B, num_io * d]`` (ignored without symmetry)."""
        return self.global_mlp(torch.cat([pooled_sum, io], dim=-1) if self.symmetric else pooled_sum)
