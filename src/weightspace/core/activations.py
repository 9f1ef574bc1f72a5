"""Activation functions known to weightspace, and the symmetries each one admits.

An activation's algebraic properties decide which transformations of the weights keep a
network's function: an *odd* activation (f(-x) = -f(x)) admits sign flips of a hidden
neuron, a *positively homogeneous* one (f(a x) = a f(x) for a > 0) admits positive
rescaling. The spec consults this table; nothing else hard-codes those facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Activation:
    name: str
    odd: bool
    positive_homogeneous: bool
    fn: Callable[[Tensor, float], Tensor]  # (pre-activation, omega) -> activation


def _sine(x: Tensor, omega: float) -> Tensor:
    return torch.sin(omega * x)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", odd=True, positive_homogeneous=True, fn=lambda x, _: x),
        Activation("relu", odd=False, positive_homogeneous=True, fn=lambda x, _: F.relu(x)),
        Activation(
            "leaky_relu", odd=False, positive_homogeneous=True, fn=lambda x, _: F.leaky_relu(x, 0.01)
        ),
        Activation("tanh", odd=True, positive_homogeneous=False, fn=lambda x, _: torch.tanh(x)),
        Activation("sigmoid", odd=False, positive_homogeneous=False, fn=lambda x, _: torch.sigmoid(x)),
        Activation("gelu", odd=False, positive_homogeneous=False, fn=lambda x, _: F.gelu(x)),
        Activation("sine", odd=True, positive_homogeneous=False, fn=_sine),
    )
}


def get_activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


class Sine(nn.Module):
    """SIREN activation ``sin(omega * x)``; shape-preserving."""

    def __init__(self, omega: float = 30.0) -> None:
        super().__init__()
        self.omega = float(omega)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega * x)

    def extra_repr(self) -> str:
        return f"omega={self.omega}"


def activation_module(name: str, omega: float = 1.0) -> nn.Module | None:
    """The ``nn.Module`` for an activation, or None for identity (nothing to insert)."""
    get_activation(name)
    return {
        "identity": None,
        "relu": nn.ReLU(),
        "leaky_relu": nn.LeakyReLU(0.01),
        "tanh": nn.Tanh(),
        "sigmoid": nn.Sigmoid(),
        "gelu": nn.GELU(),
        "sine": Sine(omega),
    }[name]


def activation_of_module(module: nn.Module) -> tuple[str, float] | None:
    """(name, omega) if ``module`` is a known activation module, else None."""
    if isinstance(module, Sine):
        return "sine", module.omega
    if isinstance(module, nn.LeakyReLU):
        if module.negative_slope != 0.01:
            raise ValueError(
                f"LeakyReLU with negative_slope={module.negative_slope} is not supported (only 0.01)"
            )
        return "leaky_relu", 1.0
    if isinstance(module, nn.GELU) and module.approximate != "none":
        raise ValueError("GELU(approximate='tanh') is not supported; use the exact GELU")
    for cls, name in (
        (nn.ReLU, "relu"),
        (nn.Tanh, "tanh"),
        (nn.Sigmoid, "sigmoid"),
        (nn.GELU, "gelu"),
        (nn.Identity, "identity"),
    ):
        if isinstance(module, cls):
            return name, 1.0
    return None
