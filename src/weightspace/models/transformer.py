"""A transformer over weights as tokens (after hyper-representations, Schürholt et al.).

One token per neuron: its incoming weights (kernel included) and bias, flattened over
channels and zero-padded to the widest token; learned layer and position embeddings
tell the tokens apart. The positions make it *not* permutation invariant: like the
flat MLP it must learn the symmetry from data (or augmentation), which is the point of
the published comparison.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.registry import register_model


def neuron_tokens(weights: Weights, width: int) -> Tensor:
    """``[B, T, width]``: one zero-padded token per neuron (row of W_i with its bias)."""
    toks = []
    for w, b in zip(weights.weights, weights.biases):
        bsz, c, o = w.shape[:3]
        row = w.permute(0, 2, 1, *range(3, w.dim())).reshape(bsz, o, -1)  # [B, o, C*in*k]
        if b is not None:
            row = torch.cat([row, b.permute(0, 2, 1)], dim=2)
        if row.shape[2] > width:
            raise ValueError(f"token of {row.shape[2]} values exceeds the model's token width {width}")
        toks.append(nn.functional.pad(row, (0, width - row.shape[2])))
    return torch.cat(toks, dim=1)


@register_model("transformer", output="invariant", supports_conv=True, summary="transformer over neuron tokens (hyper-representations)", symmetric=False)
class WeightTransformer(nn.Module):
    def __init__(
        self,
        spec: NetworkSpec,
        out_features: int,
        d_model: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.width = max(in_channels * layer.in_features * math.prod(layer.kernel_size or (1,)) + layer.bias for layer in spec.layers)
        layer_ids = torch.cat([torch.full((layer.out_features,), i) for i, layer in enumerate(spec.layers)])
        pos_ids = torch.cat([torch.arange(layer.out_features) for layer in spec.layers])
        self.register_buffer("layer_ids", layer_ids, persistent=False)
        self.register_buffer("pos_ids", pos_ids, persistent=False)
        self.embed = nn.Linear(self.width, d_model)
        self.layer_emb = nn.Embedding(spec.num_layers, d_model)
        self.pos_emb = nn.Embedding(max(layer.out_features for layer in spec.layers), d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        enc = nn.TransformerEncoderLayer(d_model, num_heads, 2 * d_model, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, num_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, out_features))

    def forward(self, weights: Weights) -> Tensor:
        """``weights`` [B, C, ...] -> ``[B, out_features]``."""
        x = self.embed(neuron_tokens(weights, self.width)) + self.layer_emb(self.layer_ids) + self.pos_emb(self.pos_ids)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        return self.head(self.encoder(x)[:, 0])
