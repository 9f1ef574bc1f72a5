"""A transformer over weights as tokens (after hyper-representations, Schürholt et al.).

One token per neuron (`weightspace.core.tokens`): its incoming weights (kernel included)
and bias, flattened over channels and zero-padded to the widest token; learned layer and
position embeddings tell the tokens apart. The positions make it *not* permutation invariant: like the
flat MLP it must learn the symmetry from data (or augmentation), which is the point of
the published comparison.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.tokens import TokenLayout, token_width, tokenize
from weightspace.core.weights import Weights
from weightspace.models.registry import register_model


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
        self.width = token_width(spec, in_channels)
        layout = TokenLayout(spec, self.width, in_channels)
        self.register_buffer("layer_ids", layout.layer_ids, persistent=False)
        self.register_buffer("pos_ids", layout.neuron_ids, persistent=False)
        self.embed = nn.Linear(self.width, d_model)
        self.layer_emb = nn.Embedding(spec.num_layers, d_model)
        self.pos_emb = nn.Embedding(max(layer.out_features for layer in spec.layers), d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        enc = nn.TransformerEncoderLayer(d_model, num_heads, 2 * d_model, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, num_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, out_features))

    def forward(self, weights: Weights) -> Tensor:
        """``weights`` [B, C, ...] -> ``[B, out_features]``."""
        x = self.embed(tokenize(weights, self.width)) + self.layer_emb(self.layer_ids) + self.pos_emb(self.pos_ids)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        return self.head(self.encoder(x)[:, 0])
