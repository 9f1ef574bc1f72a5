"""Specs used across the test suite: ordinary and degenerate (depth 1, width 1, no bias, conv)."""

from weightspace.core.spec import LayerSpec, NetworkSpec

SPECS: dict[str, NetworkSpec] = {
    "siren": NetworkSpec.siren(2, [8, 8], 1),
    "mlp_relu": NetworkSpec.mlp([3, 5, 4, 2], activation="relu"),
    "mlp_tanh_nobias": NetworkSpec.mlp([3, 4, 2], activation="tanh", bias=False),
    "depth1": NetworkSpec.mlp([3, 2]),
    "width1": NetworkSpec.mlp([2, 1, 3, 1], activation="tanh"),
    "mixed_bias": NetworkSpec(
        (
            LayerSpec("linear", 2, 4, bias=False, activation="relu"),
            LayerSpec("linear", 4, 3, activation="relu"),
            LayerSpec("linear", 3, 2, bias=False),
        )
    ),
    "cnn": NetworkSpec(
        (
            LayerSpec("conv", 1, 4, (3, 3), stride=2, padding=1, activation="relu"),
            LayerSpec("conv", 4, 3, (3, 3), activation="relu"),
            LayerSpec("linear", 3, 5, activation="relu"),
            LayerSpec("linear", 5, 2),
        ),
        pool="avg",
    ),
    "cnn_max_tanh": NetworkSpec(
        (
            LayerSpec("conv", 2, 3, (3, 3), padding=1, activation="tanh"),
            LayerSpec("conv", 3, 2, (1, 1), bias=False, activation="tanh"),
            LayerSpec("linear", 2, 3),
        ),
        pool="max",
    ),
}
MLP_SPECS = {k: v for k, v in SPECS.items() if not v.is_conv}


def example_input(spec: NetworkSpec, n: int = 5, *, generator=None, dtype=None):
    import torch

    if spec.is_conv:
        return torch.randn(n, spec.in_features, 9, 9, generator=generator, dtype=dtype)
    return torch.randn(n, spec.in_features, generator=generator, dtype=dtype)


def random_weights(spec: NetworkSpec, batch: int = 4, *, generator=None, dtype=None, channels: int = 1):
    import torch

    from weightspace.core.weights import Weights

    flat = torch.randn(batch, channels, spec.num_params, generator=generator, dtype=dtype)
    return Weights.unflatten(spec, flat)
