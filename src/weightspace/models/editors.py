"""Equivariant weight-space models: `Weights` in, `Weights` of the same spec out.

Used for weight-to-weight tasks such as INR editing. Each is a stack of equivariant layers
(`weightspace.models.dws.DWSLayer`, the complete DWSNets basis, or NFN's NP / HNP layers) from
one raw channel to hidden channels and back to one; plus a flat-MLP baseline that ignores the
symmetry. Outputs start near zero (the last layer is scaled down) so that a residual
edit ``w + f(w)`` starts at the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.dws import DWSLayer
from weightspace.models.dws_light import ChannelNorm, EquivariantLayer, filled_spec, restore_spec
from weightspace.models.registry import register_model


class _EquivariantNet(nn.Module):
    io = "fixed"
    norm = True

    def __init__(self, spec: NetworkSpec, hidden_channels: int = 16, num_layers: int = 3, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.spec = spec
        filled = filled_spec(spec)
        chans = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.layers = nn.ModuleList(self.make_layer(filled, a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.norms = nn.ModuleList((ChannelNorm(c) if self.norm else nn.Identity()) for c in chans[1:-1])
        with torch.no_grad():
            for p in self.layers[-1].parameters():
                p.mul_(0.1)

    def make_layer(self, spec: NetworkSpec, cin: int, cout: int) -> nn.Module:
        return EquivariantLayer(spec, cin, cout, io=self.io)

    def forward(self, weights: Weights) -> Weights:
        """``weights`` [B, C_in, ...] -> `Weights` [B, C_out, ...] of the same spec."""
        h = weights.with_biases_filled()
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.layers) - 1:
                h = self.norms[k](h).map(torch.relu)
        return restore_spec(h, self.spec)


@register_model("dws_eq", output="equivariant", supports_conv=True, summary="DWS-style equivariant weight-to-weight network")
class DWSEquivariant(_EquivariantNet):
    io, norm = "fixed", True

    def make_layer(self, spec: NetworkSpec, cin: int, cout: int) -> nn.Module:
        # linear DeepSets with mean summaries: the complete basis, and cheap at editing's widths
        return DWSLayer(spec, cin, cout, reduction="mean", set_layer="ds")


@register_model("nfn_np_eq", output="equivariant", supports_conv=True, summary="NFN-NP equivariant weight-to-weight network")
class NFNNPEquivariant(_EquivariantNet):
    io, norm = "permutable", False


@register_model("nfn_hnp_eq", output="equivariant", supports_conv=True, summary="NFN-HNP equivariant weight-to-weight network")
class NFNHNPEquivariant(_EquivariantNet):
    io, norm = "fixed", False


@register_model("mlp_eq", output="equivariant", supports_conv=True, summary="flat MLP weights -> weights (no symmetry; baseline)", symmetric=False)
class FlatMLPEditor(nn.Module):
    def __init__(self, spec: NetworkSpec, hidden: int = 256, in_channels: int = 1) -> None:
        super().__init__()
        self.spec = spec
        p = spec.num_params
        self.net = nn.Sequential(nn.Linear(p * in_channels, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, p))
        with torch.no_grad():
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()

    def forward(self, weights: Weights) -> Weights:
        return Weights.unflatten(self.spec, self.net(weights.flatten().flatten(1)))
