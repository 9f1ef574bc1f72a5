"""The functional forward: every network of a `Weights` batch on its inputs, at once.

INR fitting, probing, editing losses and whole-zoo evaluation all call this one function,
so there is exactly one definition of what a network in a zoo computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from weightspace.core.activations import get_activation
from weightspace.core.weights import Weights


def forward(weights: Weights, x: Tensor) -> Tensor:
    """Evaluate all ``B`` networks.

    MLP specs: ``x`` is ``[N, in]`` (the same inputs for every network) or ``[B, N, in]``;
    returns ``[B, N, out]``.
    Conv specs: ``x`` is ``[N, C_in, H, W]`` or ``[B, N, C_in, H, W]``; returns
    ``[B, N, out]`` after global pooling and any linear layers, or ``[B, N, C, H', W']``
    when the spec has no pooling.
    Raw weights only (``C = 1``).
    """
    if weights.channels != 1:
        raise ValueError(f"forward needs raw weights (C = 1), got C = {weights.channels}")
    spec = weights.spec
    b = weights.batch_size
    h = x
    for i, layer in enumerate(spec.layers):
        w = weights.weights[i][:, 0]
        bias = weights.biases[i][:, 0] if weights.biases[i] is not None else None
        if layer.kind == "linear" and layer.activation == "sine":
            # sin(omega * (W h + b)): the matmul's epilogue applies omega, saving one pass
            # over the activations (the dominant cost of fitting SIRENs) forward and backward
            h = torch.sin(_linear(h, w, bias, i, scale=layer.omega))
            continue
        if layer.kind == "linear":
            h = _linear(h, w, bias, i)
        else:
            h = _conv(h, w, bias, layer.stride, layer.padding, b, i)
        act = get_activation(layer.activation)
        if layer.activation != "identity":
            h = act.fn(h, layer.omega)
        if spec.pool != "none" and i == spec.num_conv - 1:
            h = h.mean(dim=(-2, -1)) if spec.pool == "avg" else h.amax(dim=(-2, -1))
    return h


def _linear(h: Tensor, w: Tensor, bias: Tensor | None, i: int, scale: float = 1.0) -> Tensor:
    """``scale * (h W^T + b)``. h: [N, in] or [B, N, in]; w: [B, out, in] -> [B, N, out]."""
    if h.shape[-1] != w.shape[-1]:
        raise ValueError(f"layer {i}: input has {h.shape[-1]} features, the layer takes {w.shape[-1]}")
    if h.dim() == 2:  # a shared input: a stride-0 batch view, no copy
        h = h.unsqueeze(0).expand(w.shape[0], *h.shape)
    if bias is None:
        out = torch.bmm(h, w.transpose(1, 2))
        return out if scale == 1.0 else out * scale
    return torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2), beta=scale, alpha=scale)


def _conv(h: Tensor, w: Tensor, bias: Tensor | None, stride: int, padding: int, b: int, i: int) -> Tensor:
    # A grouped convolution with one group per network runs all B networks in one call:
    # inputs [N, B*C_in, H, W], kernels [B*C_out, C_in, kh, kw], groups = B.
    if h.dim() == 4:
        h = h.unsqueeze(0).expand(b, *h.shape)
    if h.dim() != 5 or h.shape[2] != w.shape[2]:
        raise ValueError(f"layer {i}: expected input [B, N, {w.shape[2]}, H, W], got {tuple(h.shape)}")
    n = h.shape[1]
    x = h.transpose(0, 1).reshape(n, b * w.shape[2], *h.shape[3:])
    y = F.conv2d(
        x,
        w.reshape(b * w.shape[1], *w.shape[2:]),
        None if bias is None else bias.reshape(-1),
        stride=stride,
        padding=padding,
        groups=b,
    )
    return y.reshape(n, b, w.shape[1], *y.shape[2:]).transpose(0, 1)
