"""Networks as token sequences: one token per neuron (after hyper-representations / SANE).

Token ``t`` of a network is one neuron (output channel) of one layer: its incoming
weights, kernel included, then its bias, zero-padded to a fixed ``width``::

    layer i, neuron j  ->  [ W_i[:, j].flatten()  (C * in_i * prod(kernel_i) values),
                             b_i[:, j]            (C values, if layer i has a bias),
                             0, ..., 0            (padding up to width) ]

Within a token the order is channel-major (``C``, then ``in``, then kernel positions),
as `Weights` stores them. Tokens run layer by layer, neurons in order, so a network of
``spec`` has ``sum(out_i)`` tokens. Each token carries two integer positions: its layer
index and its neuron index within the layer (`TokenLayout.layer_ids`, `.neuron_ids`).
Networks of different widths and depths map into one token space as long as ``width``
covers their widest token; `detokenize` is the exact inverse of `tokenize`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights


def token_sizes(spec: NetworkSpec, channels: int = 1) -> tuple[int, ...]:
    """Values per token of each layer (incoming weights and bias, unpadded)."""
    return tuple(channels * (layer.in_features * math.prod(layer.kernel_size or (1,)) + layer.bias) for layer in spec.layers)


def token_width(spec: NetworkSpec, channels: int = 1) -> int:
    """The smallest width that holds every token of ``spec``."""
    return max(token_sizes(spec, channels))


@dataclass(frozen=True)
class TokenLayout:
    """Where each network entry goes in the token sequence of ``spec``.

    ``layer_ids`` / ``neuron_ids``: ``[T]`` int64; ``mask``: ``[T, width]`` bool, True on
    real (unpadded) entries; ``layer_of_entry`` is ``layer_ids`` broadcast to the mask.
    """

    spec: NetworkSpec
    width: int
    channels: int = 1

    def __post_init__(self) -> None:
        need = token_width(self.spec, self.channels)
        if self.width < need:
            raise ValueError(f"token width {self.width} is too small for this spec: its widest token has {need} values")

    @property
    def sizes(self) -> tuple[int, ...]:
        return token_sizes(self.spec, self.channels)

    @property
    def num_tokens(self) -> int:
        return sum(layer.out_features for layer in self.spec.layers)

    @property
    def layer_ids(self) -> Tensor:
        return torch.cat([torch.full((layer.out_features,), i, dtype=torch.long) for i, layer in enumerate(self.spec.layers)])

    @property
    def neuron_ids(self) -> Tensor:
        return torch.cat([torch.arange(layer.out_features) for layer in self.spec.layers])

    @property
    def mask(self) -> Tensor:
        sizes = torch.tensor(self.sizes)[self.layer_ids]
        return torch.arange(self.width).unsqueeze(0) < sizes.unsqueeze(1)


def tokenize(weights: Weights, width: int | None = None) -> Tensor:
    """``Weights`` ``[B, C, ...]`` -> tokens ``[B, T, width]`` (see module doc).

    ``width`` defaults to the spec's widest token; a larger one pads more.
    """
    layout = TokenLayout(weights.spec, width if width is not None else token_width(weights.spec, weights.channels), weights.channels)
    toks = []
    for w, b in zip(weights.weights, weights.biases):
        bsz, o = w.shape[0], w.shape[2]
        row = w.transpose(1, 2).reshape(bsz, o, -1)  # [B, out, C * in * k]
        if b is not None:
            row = torch.cat([row, b.transpose(1, 2)], dim=2)  # bias: [B, out, C]
        toks.append(torch.nn.functional.pad(row, (0, layout.width - row.shape[2])))
    return torch.cat(toks, dim=1)


def detokenize(tokens: Tensor, spec: NetworkSpec, channels: int = 1) -> Weights:
    """Inverse of `tokenize`: tokens ``[B, T, width]`` -> `Weights` of ``spec``.

    Padding entries are ignored (whatever they hold), so a decoder's output maps to a
    network directly.
    """
    layout = TokenLayout(spec, tokens.shape[-1], channels)
    if tokens.dim() != 3 or tokens.shape[1] != layout.num_tokens:
        raise ValueError(f"expected tokens [B, {layout.num_tokens}, width] for this spec, got {tuple(tokens.shape)}")
    bsz, start = tokens.shape[0], 0
    ws, bs = [], []
    for layer in spec.layers:
        o = layer.out_features
        part = tokens[:, start : start + o]
        start += o
        n_w = channels * layer.in_features * math.prod(layer.kernel_size or (1,))
        w = part[:, :, :n_w].reshape(bsz, o, channels, layer.in_features, *layer.kernel_size)
        ws.append(w.transpose(1, 2).contiguous())
        bs.append(part[:, :, n_w : n_w + channels].transpose(1, 2).contiguous() if layer.bias else None)
    return Weights(spec, tuple(ws), tuple(bs))
