"""Equivariant weight-space models: `Weights` in, `Weights` of the same spec out.

Used for weight-to-weight tasks such as INR editing. Each is a stack of equivariant layers
(`weightspace.models.dws.DWSLayer`, the complete DWSNets basis, or NFN's NP / HNP layers) from
one raw channel to hidden channels and back to one; plus a flat-MLP baseline that ignores the
symmetry. Outputs start near zero (the last layer is scaled down; NFN's editors learn one output
scale per tensor, starting at 0.01) so that a residual edit ``w + f(w)`` starts at the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models import nfn_layers
from weightspace.models.dws import DWSLayer
from weightspace.models.dws_light import ChannelNorm, EquivariantLayer, filled_spec, restore_spec
from weightspace.models.nfn import GaussianFourierFeatures, IOSinusoidalEncoding
from weightspace.models.nfn_layers import HNPLinear, NPLinear
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


class _TensorScale(nn.Module):
    """NFN's ``LearnedScale``: one learned scalar per weight tensor and per bias tensor (only for
    biases the spec has), initialised to ``init``."""

    def __init__(self, spec: NetworkSpec, init: float) -> None:
        super().__init__()
        self.w_scales = nn.ParameterList(nn.Parameter(torch.tensor(float(init))) for _ in spec.layers)
        self.b_scales = nn.ParameterDict(
            [(str(i), nn.Parameter(torch.tensor(float(init)))) for i, layer in enumerate(spec.layers) if layer.bias]
        )

    def forward(self, w: Weights) -> Weights:
        ws = tuple(t * s for t, s in zip(w.weights, self.w_scales))
        bs = tuple(None if b is None else b * self.b_scales[str(i)] for i, b in enumerate(w.biases))
        return Weights(w.spec, ws, bs)


class _NFNEditor(nn.Module):
    """NFN's ``TransferNet`` (AllanYangZhou/nfn ``experiments/stylize_models.py``), the model of its
    INR-editing experiments: ``Weights`` [B, C_in, ...] -> ``Weights`` [B, C_out, ...] of the same spec.

    [Gaussian Fourier features] -> [IO sinusoidal encoding] -> NF layer (C -> hidden) -> ReLU -> ...
    -> NF layer (hidden -> C_out) -> one learned scale per tensor (init ``out_scale``, 0.01 as in the
    reference, so that a residual edit ``w + f(w)`` starts near the identity). ``num_layers`` counts
    all NF layers (the reference's ``hidden_layers=3`` is ``num_layers=4``); its stylize configs use
    128 Fourier features of scale 3 and 128 hidden channels. Missing biases enter as zeros and are
    dropped from the output."""

    layer_cls: type[nn.Module] = NPLinear

    def __init__(
        self,
        spec: NetworkSpec,
        hidden_channels: int = 16,
        num_layers: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        fourier: bool = True,
        fourier_features: int = 16,
        fourier_scale: float = 3.0,
        io_encoding: bool = False,
        out_scale: float = 0.01,
        fourier_seed: int = 0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.spec = spec
        chans, self.fourier, self.io_encoding = in_channels, None, None
        if fourier:
            self.fourier = GaussianFourierFeatures(in_channels, fourier_features, fourier_scale, fourier_seed)
            chans = self.fourier.out_channels
        if io_encoding:  # the stylize configs' sin.yaml: max_freq 3, 3 bands
            self.io_encoding = IOSinusoidalEncoding(spec, max_freq=3.0, num_bands=3)
        chans += self.io_encoding.extra_channels if io_encoding else 0
        widths = [chans] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.layers = nn.ModuleList(self.layer_cls(spec, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.scale = _TensorScale(spec, out_scale)

    def forward(self, weights: Weights) -> Weights:
        h = weights.with_biases_filled()
        if self.fourier is not None:
            h = self.fourier(h)
        if self.io_encoding is not None:
            h = self.io_encoding(h)
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.layers) - 1:
                h = h.map(torch.relu)
        return self.scale(nfn_layers.restore_spec(h, self.spec))


@register_model("nfn_np_eq", output="equivariant", supports_conv=True,
                summary="NFN-NP equivariant weight-to-weight network (NFN's TransferNet with NP layers)")
class NFNNPEquivariant(_NFNEditor):
    layer_cls = NPLinear


@register_model("nfn_hnp_eq", output="equivariant", supports_conv=True,
                summary="NFN-HNP equivariant weight-to-weight network (NFN's TransferNet with HNP layers)")
class NFNHNPEquivariant(_NFNEditor):
    layer_cls = HNPLinear


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
