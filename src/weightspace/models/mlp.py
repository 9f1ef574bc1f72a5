"""The flat-MLP baseline: concatenate every weight into one vector and classify it.

It ignores the weight-space symmetry entirely, which is why it is the baseline."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.registry import register_model


@register_model("mlp", output="invariant", supports_conv=True, summary="MLP on the flattened weights (no symmetry)", symmetric=False)
class FlatMLP(nn.Module):
    def __init__(
        self, spec: NetworkSpec, out_features: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.1, in_channels: int = 1
    ) -> None:
        super().__init__()
        self.spec = spec
        sizes = [spec.num_params * in_channels, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, weights: Weights) -> Tensor:
        """``weights`` [B, C, ...] -> ``[B, out_features]``."""
        return self.net(weights.flatten().flatten(1))
