"""SANE's tokenisation: any network as a sequence of fixed-size tokens with 3-part positions.

Schürholt et al. (2024, "Towards scalable and versatile weight space learning", SANE) cut a
network into one row per output neuron / channel of every weight tensor (its incoming
weights flattened, kernel included, then its bias), and each row into chunks of
``tokensize`` values, the last chunk zero-padded::

    layer l, neuron k, row  [ W_l[k].flatten(), b_l[k] ]   (in_l * prod(kernel_l) + 1 values)
        -> tokens  row[0:s], row[s:2s], ..., row[(c-1)s : cs]   (c = ceil(len / s), s = tokensize)

Tokens run layer by layer, neuron by neuron, chunk by chunk. Every token carries three
integer positions ``(n, l, k)``: its index in the whole sequence, its layer and its neuron
within the layer (the chunks of one neuron share ``l`` and ``k``). Networks of any width,
depth or architecture land in one token space; a transformer over *windows* of the sequence
(`models.sane`) embeds and decodes them whatever their length.

Two entry points build the same sequence:

- `tokenize_layers` for batches of per-layer tensors (a zoo's `Weights`, vectorised), and
- `tokenize_state` for one PyTorch state dict (a ResNet, say): every multi-dimensional
  ``*weight`` tensor is a layer, its ``*bias`` (if any) joins its rows; normalisation layers
  (1-D weights, running statistics) are left out, as SANE does by default, and kept from the
  reference state dict on the way back (`state_from_tokens`).

Both inverses are exact: padding entries are ignored, so a decoder's output maps back to a
network directly. Shapes: tokens ``[B, T, s]`` (or ``[T, s]`` for one state dict),
positions ``[T, 3]`` int64, mask ``[T, s]`` bool (True on real entries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from weightspace.core.weights import Weights


@dataclass(frozen=True)
class LayerShape:
    """One tokenised layer: its state-dict name (or ``layer{i}``), weight shape ``[out, ...]``
    and whether a bias joins its rows."""

    name: str
    shape: tuple[int, ...]
    bias: bool

    @property
    def out(self) -> int:
        return self.shape[0]

    @property
    def row(self) -> int:
        """Values per neuron row: incoming weights (kernel included) plus the bias."""
        return math.prod(self.shape[1:]) + int(self.bias)


@dataclass(frozen=True)
class SaneLayout:
    """Where every value of a network sits in its token sequence (see module doc)."""

    layers: tuple[LayerShape, ...]
    tokensize: int

    def __post_init__(self) -> None:
        if self.tokensize < 1:
            raise ValueError(f"tokensize must be positive, got {self.tokensize}")
        if not self.layers:
            raise ValueError("a network needs at least one layer to tokenise")

    def chunks(self, i: int) -> int:
        """Tokens per neuron of layer ``i``."""
        return -(-self.layers[i].row // self.tokensize)

    @property
    def num_tokens(self) -> int:
        return sum(la.out * self.chunks(i) for i, la in enumerate(self.layers))

    @property
    def positions(self) -> Tensor:
        """``[T, 3]`` int64: (index in the sequence, layer, neuron within the layer)."""
        parts = []
        for i, la in enumerate(self.layers):
            k = torch.arange(la.out).repeat_interleave(self.chunks(i))
            parts.append(torch.stack([torch.full_like(k, i), k], dim=1))
        lk = torch.cat(parts)
        return torch.cat([torch.arange(len(lk))[:, None], lk], dim=1)

    @property
    def mask(self) -> Tensor:
        """``[T, tokensize]`` bool: True on real entries, False on padding."""
        rows = []
        for i, la in enumerate(self.layers):
            c = self.chunks(i)
            real = torch.arange(c * self.tokensize) < la.row
            rows.append(real.reshape(c, self.tokensize).repeat(la.out, 1))
        return torch.cat(rows)

    def describe(self) -> str:
        return f"{len(self.layers)} layers, {self.num_tokens} tokens of {self.tokensize}"


def layout_of_spec(spec, tokensize: int) -> SaneLayout:
    """The layout of a `NetworkSpec`'s networks (one channel)."""
    return SaneLayout(tuple(LayerShape(f"layer{i}", tuple(la.weight_shape), bool(la.bias))
                            for i, la in enumerate(spec.layers)), tokensize)


def tokenize_layers(layers: Sequence[tuple[Tensor, Tensor | None]], layout: SaneLayout) -> Tensor:
    """Per-layer ``(weight [B, out, ...], bias [B, out] or None)`` -> tokens ``[B, T, s]``."""
    if len(layers) != len(layout.layers):
        raise ValueError(f"{len(layers)} layers given, the layout has {len(layout.layers)}")
    out = []
    for i, ((w, b), la) in enumerate(zip(layers, layout.layers)):
        if tuple(w.shape[1:]) != la.shape or (b is not None) != la.bias:
            raise ValueError(f"layer {i} ({la.name}): weight {tuple(w.shape[1:])} / bias {b is not None}, "
                             f"layout says {la.shape} / {la.bias}")
        row = w.reshape(w.shape[0], la.out, -1)
        if b is not None:
            row = torch.cat([row, b.reshape(b.shape[0], la.out, 1)], dim=2)
        c = layout.chunks(i)
        row = F.pad(row, (0, c * layout.tokensize - la.row))
        out.append(row.reshape(w.shape[0], la.out * c, layout.tokensize))
    return torch.cat(out, dim=1)


def detokenize_layers(tokens: Tensor, layout: SaneLayout) -> list[tuple[Tensor, Tensor | None]]:
    """Inverse of `tokenize_layers`: tokens ``[B, T, s]`` -> per-layer (weight, bias)."""
    if tokens.dim() != 3 or tokens.shape[1:] != (layout.num_tokens, layout.tokensize):
        raise ValueError(f"expected tokens [B, {layout.num_tokens}, {layout.tokensize}] for this layout, "
                         f"got {tuple(tokens.shape)}")
    b, start, out = tokens.shape[0], 0, []
    for i, la in enumerate(layout.layers):
        n = la.out * layout.chunks(i)
        rows = tokens[:, start : start + n].reshape(b, la.out, -1)[:, :, : la.row]
        start += n
        n_w = la.row - int(la.bias)
        out.append((rows[:, :, :n_w].reshape(b, *la.shape).contiguous(),
                    rows[:, :, n_w].contiguous() if la.bias else None))
    return out


def tokenize_weights(weights: Weights, tokensize: int) -> tuple[Tensor, SaneLayout]:
    """A zoo batch ``Weights`` ``[B, 1, ...]`` -> (tokens ``[B, T, s]``, layout)."""
    if weights.channels != 1:
        raise ValueError(f"SANE tokenises raw weights (C = 1), got C = {weights.channels}")
    layout = layout_of_spec(weights.spec, tokensize)
    layers = [(w[:, 0], None if b is None else b[:, 0]) for w, b in zip(weights.weights, weights.biases)]
    return tokenize_layers(layers, layout), layout


def weights_from_tokens(tokens: Tensor, spec, tokensize: int) -> Weights:
    """Inverse of `tokenize_weights`: tokens ``[B, T, s]`` -> `Weights` of ``spec``."""
    layers = detokenize_layers(tokens, layout_of_spec(spec, tokensize))
    return Weights(spec, tuple(w[:, None] for w, _ in layers), tuple(None if b is None else b[:, None] for _, b in layers))


def _is_layer(name: str, tensor: Tensor) -> bool:
    # conv / linear weights have >= 2 dims; 1-D weights are normalisation scales (left out)
    return name.endswith("weight") and tensor.dim() >= 2


def layout_of_state(state: Mapping[str, Tensor], tokensize: int) -> SaneLayout:
    """The layout of one state dict (its weight tensors in the dict's order)."""
    layers = []
    for name, t in state.items():
        if _is_layer(name, t):
            bias = name[: -len("weight")] + "bias"
            layers.append(LayerShape(name, tuple(t.shape), bias in state and state[bias].shape == t.shape[:1]))
    if not layers:
        raise ValueError("the state dict has no weight tensor with two or more dimensions to tokenise")
    return SaneLayout(tuple(layers), tokensize)


def tokenize_state(state: Mapping[str, Tensor], tokensize: int) -> tuple[Tensor, SaneLayout]:
    """One state dict -> (tokens ``[T, s]``, layout)."""
    layout = layout_of_state(state, tokensize)
    layers = [(state[la.name][None].float(), state[la.name[: -len("weight")] + "bias"][None].float() if la.bias else None)
              for la in layout.layers]
    return tokenize_layers(layers, layout)[0], layout


def state_from_tokens(tokens: Tensor, layout: SaneLayout, reference: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of `tokenize_state`: tokens ``[T, s]`` -> a state dict, every tensor the tokens
    do not hold (normalisation layers, buffers) copied from ``reference``."""
    out = {k: v.clone() for k, v in reference.items()}
    for la, (w, b) in zip(layout.layers, detokenize_layers(tokens[None], layout)):
        if la.name not in out or tuple(out[la.name].shape) != la.shape:
            raise ValueError(f"the reference state dict has no {la.name} of shape {la.shape}")
        out[la.name] = w[0].to(out[la.name].dtype)
        if b is not None:
            out[la.name[: -len("weight")] + "bias"] = b[0].to(out[la.name].dtype)
    return out


__all__ = ["LayerShape", "SaneLayout", "detokenize_layers", "layout_of_spec", "layout_of_state", "state_from_tokens",
           "tokenize_layers", "tokenize_state", "tokenize_weights", "weights_from_tokens"]
