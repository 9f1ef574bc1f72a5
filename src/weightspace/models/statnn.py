"""StatNN (after Unterthiner et al., 2020): per-layer statistics of the weights -> MLP.

For every weight and bias tensor: mean, variance and the quantiles 0, 25, 50, 75, 100 %.
The statistics of a tensor do not depend on the order of its entries, so the model is
invariant to every permutation of neurons (and more), which is also its limit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.registry import register_model

_Q = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])


def weight_statistics(weights: Weights) -> Tensor:
    """``[B, C, ...]`` -> ``[B, C * 7 * n_tensors]``: mean, var and 5 quantiles per tensor and channel."""
    feats = []
    for t in weights.tensors():
        flat = t.flatten(2)  # [B, C, n]
        q = torch.quantile(flat, _Q.to(flat), dim=2).permute(1, 2, 0)  # [B, C, 5]
        var = flat.var(dim=2, unbiased=False, keepdim=True)
        feats.append(torch.cat([flat.mean(dim=2, keepdim=True), var, q], dim=2).flatten(1))
    return torch.cat(feats, dim=1)


@register_model(
    "statnn",
    output="invariant",
    supports_conv=True,
    summary="per-layer weight statistics -> MLP (Unterthiner et al.)",
    larger_group="any permutation of the entries within each weight or bias tensor",
)
class StatNN(nn.Module):
    def __init__(self, spec: NetworkSpec, out_features: int, hidden: int = 256, dropout: float = 0.1, in_channels: int = 1) -> None:
        super().__init__()
        self.spec = spec
        n = sum(1 + layer.bias for layer in spec.layers) * 7 * in_channels
        self.norm = nn.BatchNorm1d(n)  # statistics live on very different scales
        self.net = nn.Sequential(
            nn.Linear(n, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_features)
        )

    def forward(self, weights: Weights) -> Tensor:
        """``weights`` [B, C, ...] -> ``[B, out_features]``."""
        stats = weight_statistics(weights)
        if self.training and len(stats) == 1:
            # batch statistics of one network are undefined (an epoch's last batch can hold one):
            # normalise with the running statistics, leaving them unchanged
            n = self.norm
            return self.net(F.batch_norm(stats, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps))
        return self.net(self.norm(stats))
