"""Probing (after the probe features of neural-graph and INR2JLS work): evaluate each
network on learned inputs through the functional forward and classify its outputs.

The model sees only the networks' *functions* at the probes, so it is invariant to every
function-preserving symmetry (permutations, sign flips, rescaling) at once. It needs
raw weights (C = 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from weightspace.core.functional import forward
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.registry import register_model


@register_model("probe", output="invariant", supports_conv=True, summary="learned input probes through the functional forward -> MLP")
class ProbeClassifier(nn.Module):
    wants_raw_weights = True  # it evaluates the networks, so their weights must be the real ones

    def __init__(
        self,
        spec: NetworkSpec,
        out_features: int,
        num_probes: int = 64,
        hidden: int = 256,
        dropout: float = 0.1,
        image_size: int = 8,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.spec = spec
        shape = (num_probes, spec.in_features, image_size, image_size) if spec.is_conv else (num_probes, spec.in_features)
        # MLP probes start uniform in [-1, 1]^d: the coordinate domain of INRs
        self.probes = nn.Parameter((torch.rand(shape) * 2 - 1) * init_scale)
        feats = num_probes * spec.out_features
        self.norm = nn.LayerNorm(feats)
        self.net = nn.Sequential(nn.Linear(feats, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_features))

    def forward(self, weights: Weights) -> Tensor:
        """``weights`` [B, 1, ...] -> ``[B, out_features]``."""
        out = forward(weights, self.probes)  # [B, K, out]
        return self.net(self.norm(out.flatten(1)))
