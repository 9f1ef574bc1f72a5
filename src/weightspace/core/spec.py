"""`NetworkSpec`: a frozen, JSON-serialisable description of an architecture and its
weight-space symmetry group.

A spec describes a feed-forward chain of parametric layers. Each layer is a `LayerSpec`
(linear or 2D convolution, optional bias, an activation applied after it). Convolutional
layers come first; where the chain passes from conv to linear layers (or ends after a
conv layer) `NetworkSpec.pool` names the global pooling ("avg" or "max") that turns a
feature map ``[C, H, W]`` into a vector ``[C]``.

Symmetry: the neurons (channels) of every hidden layer may be permuted, provided the
permutation acts on the *out* axis of that layer (rows of its weight, its bias) and on
the *in* axis of the next layer (columns of its weight) together. Global pooling keeps
channel identity, so the conv -> linear boundary ties channels to input features 1:1.
Input and output neurons are never permuted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from weightspace.core.activations import activation_module, activation_of_module, get_activation

LayerKind = Literal["linear", "conv"]
SPEC_FORMAT = 1


@dataclass(frozen=True)
class LayerSpec:
    """One parametric layer: ``y = act(W x + b)``.

    weight shape ``[out_features, in_features, *kernel_size]``, bias shape ``[out_features]``.
    For ``activation="sine"`` the layer computes ``sin(omega * (W x + b))`` (SIREN).
    """

    kind: LayerKind
    in_features: int
    out_features: int
    kernel_size: tuple[int, ...] = ()
    stride: int = 1
    padding: int = 0
    bias: bool = True
    activation: str = "identity"
    omega: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel_size", tuple(int(k) for k in self.kernel_size))
        if self.kind not in ("linear", "conv"):
            raise ValueError(f"layer kind must be 'linear' or 'conv', got {self.kind!r}")
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(f"layer sizes must be positive, got {self.in_features}->{self.out_features}")
        if self.kind == "linear" and self.kernel_size:
            raise ValueError("a linear layer has no kernel_size")
        if self.kind == "conv" and (len(self.kernel_size) != 2 or min(self.kernel_size) < 1):
            raise ValueError(f"a conv layer needs a 2D kernel_size, got {self.kernel_size}")
        get_activation(self.activation)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features, *self.kernel_size)

    @property
    def num_params(self) -> int:
        n = self.out_features * self.in_features
        for k in self.kernel_size:
            n *= k
        return n + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class PermutationGroup:
    """Hidden neurons that permute together: the out axis of ``layer`` (its weight rows and
    bias) and the in axis of ``layer + 1`` (its weight columns)."""

    layer: int
    size: int


@dataclass(frozen=True)
class NetworkSpec:
    """A chain of `LayerSpec` with optional global pooling after the last conv layer."""

    layers: tuple[LayerSpec, ...]
    pool: Literal["none", "avg", "max"] = "none"
    format: int = field(default=SPEC_FORMAT, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a NetworkSpec needs at least one layer")
        seen_linear = False
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerSpec):
                raise TypeError(f"layer {i} is {type(layer).__name__}, expected LayerSpec")
            if layer.kind == "linear":
                seen_linear = True
            elif seen_linear:
                raise ValueError(f"layer {i}: conv layers must come before linear layers")
            if i > 0 and self.layers[i - 1].out_features != layer.in_features:
                raise ValueError(
                    f"layer {i} takes {layer.in_features} inputs but layer {i - 1} "
                    f"gives {self.layers[i - 1].out_features}"
                )
        has_conv = self.layers[0].kind == "conv"
        if self.pool not in ("none", "avg", "max"):
            raise ValueError(f"pool must be 'none', 'avg' or 'max', got {self.pool!r}")
        if has_conv and seen_linear and self.pool == "none":
            raise ValueError("a conv -> linear network needs global pooling (pool='avg' or 'max')")
        if not has_conv and self.pool != "none":
            raise ValueError("pool applies only to networks with conv layers")

    # ------------------------------------------------------------------ construction
    @classmethod
    def mlp(
        cls,
        sizes: Sequence[int],
        activation: str = "relu",
        *,
        bias: bool = True,
        omega: float = 1.0,
        final_activation: str = "identity",
    ) -> NetworkSpec:
        """An MLP ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``."""
        if len(sizes) < 2:
            raise ValueError("an MLP needs at least an input and an output size")
        n = len(sizes) - 1
        return cls(
            tuple(
                LayerSpec(
                    "linear",
                    sizes[i],
                    sizes[i + 1],
                    bias=bias,
                    activation=activation if i < n - 1 else final_activation,
                    omega=omega if (activation if i < n - 1 else final_activation) == "sine" else 1.0,
                )
                for i in range(n)
            )
        )

    @classmethod
    def siren(cls, in_features: int, hidden: Sequence[int], out_features: int, omega: float = 30.0) -> NetworkSpec:
        """A SIREN: sine layers with frequency ``omega`` and a linear output layer."""
        return cls.mlp([in_features, *hidden, out_features], activation="sine", omega=omega)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "pool": self.pool,
            "layers": [{**asdict(layer), "kernel_size": list(layer.kernel_size)} for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkSpec:
        if not isinstance(data, dict) or "layers" not in data:
            raise ValueError("not a NetworkSpec: expected a mapping with 'layers'")
        fmt = data.get("format", SPEC_FORMAT)
        if fmt > SPEC_FORMAT:
            raise ValueError(f"NetworkSpec format {fmt} is newer than this library ({SPEC_FORMAT})")
        known = set(LayerSpec.__dataclass_fields__)
        layers = []
        for i, ld in enumerate(data["layers"]):
            unknown = set(ld) - known
            if unknown:
                raise ValueError(f"layer {i}: unknown fields {sorted(unknown)}")
            layers.append(LayerSpec(**{**ld, "kernel_size": tuple(ld.get("kernel_size", ()))}))
        return cls(tuple(layers), pool=data.get("pool", "none"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------ facts
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    @property
    def is_conv(self) -> bool:
        return self.layers[0].kind == "conv"

    @property
    def num_conv(self) -> int:
        return sum(layer.kind == "conv" for layer in self.layers)

    def permutation_groups(self) -> tuple[PermutationGroup, ...]:
        """One group per hidden layer: which axes permute together (see module doc)."""
        return tuple(PermutationGroup(i, self.layers[i].out_features) for i in range(self.num_layers - 1))

    def state_dict_keys(self) -> tuple[tuple[str, str | None], ...]:
        """(weight key, bias key or None) per layer, in the layout `build_module` makes."""
        keys = []
        for i, idx in enumerate(self._module_indices()):
            keys.append((f"{idx}.weight", f"{idx}.bias" if self.layers[i].bias else None))
        return tuple(keys)

    def _module_indices(self) -> list[int]:
        """Index of each parametric layer inside the `nn.Sequential` that `build_module` makes."""
        idx, out = 0, []
        for i, layer in enumerate(self.layers):
            out.append(idx)
            idx += 1 + (layer.activation != "identity")
            if self._pool_after(i):
                idx += 2
        return out

    def _pool_after(self, i: int) -> bool:
        return self.pool != "none" and i == self.num_conv - 1

    # ------------------------------------------------------------------ modules
    def build_module(self, *, seed: int | None = None) -> nn.Sequential:
        """A fresh ``nn.Sequential`` with PyTorch's default init (seeded if ``seed`` given)."""
        gen_state = torch.random.get_rng_state() if seed is not None else None
        if seed is not None:
            torch.manual_seed(seed)
        try:
            mods: list[nn.Module] = []
            for i, layer in enumerate(self.layers):
                if layer.kind == "linear":
                    mods.append(nn.Linear(layer.in_features, layer.out_features, bias=layer.bias))
                else:
                    mods.append(
                        nn.Conv2d(
                            layer.in_features,
                            layer.out_features,
                            layer.kernel_size,
                            stride=layer.stride,
                            padding=layer.padding,
                            bias=layer.bias,
                        )
                    )
                act = activation_module(layer.activation, layer.omega)
                if act is not None:
                    mods.append(act)
                if self._pool_after(i):
                    pool = nn.AdaptiveAvgPool2d(1) if self.pool == "avg" else nn.AdaptiveMaxPool2d(1)
                    mods += [pool, nn.Flatten()]
            return nn.Sequential(*mods)
        finally:
            if gen_state is not None:
                torch.random.set_rng_state(gen_state)

    @classmethod
    def from_module(cls, module: nn.Module) -> NetworkSpec:
        """Read the spec of a module whose leaves run in registration order (e.g. an
        ``nn.Sequential``): Linear, Conv2d, known activations, global pooling, Flatten;
        Dropout is skipped (it has no weights). Anything else raises ValueError."""
        leaves = [(name, m) for name, m in module.named_modules() if not list(m.children())]
        layers: list[dict[str, Any]] = []
        pool = "none"
        for name, m in leaves:
            if isinstance(m, nn.Linear):
                layers.append(dict(kind="linear", in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None))
            elif isinstance(m, nn.Conv2d):
                if m.groups != 1 or m.dilation != (1, 1) or isinstance(m.padding, str):
                    raise ValueError(f"{name}: only plain Conv2d (groups=1, dilation=1, int padding) is supported")
                if len(set(m.stride)) != 1 or len(set(m.padding)) != 1:
                    raise ValueError(f"{name}: only square stride and padding are supported")
                if layers and layers[-1]["kind"] == "linear":
                    raise ValueError(f"{name}: a Conv2d after a Linear layer is not supported")
                layers.append(
                    dict(kind="conv", in_features=m.in_channels, out_features=m.out_channels,
                         kernel_size=tuple(m.kernel_size), stride=m.stride[0], padding=m.padding[0],
                         bias=m.bias is not None)
                )
            elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,)
                if any(s != 1 for s in size):
                    raise ValueError(f"{name}: only global pooling (output_size=1) is supported")
                pool = "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
            elif isinstance(m, (nn.Flatten, nn.Dropout)):
                continue
            else:
                act = activation_of_module(m)
                if act is None:
                    raise ValueError(f"{name}: unsupported module {type(m).__name__}")
                if not layers:
                    raise ValueError(f"{name}: an activation before the first layer is not supported")
                if act[0] == "identity":
                    continue
                if layers[-1].get("activation", "identity") != "identity":
                    raise ValueError(f"{name}: two activations after one layer are not supported")
                layers[-1]["activation"], layers[-1]["omega"] = act
        if not layers:
            raise ValueError("the module has no Linear or Conv2d layer")
        return cls(tuple(LayerSpec(**ld) for ld in layers), pool=pool)

    def parameters_of(self, module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(weight, bias) of each parametric layer of ``module``, which must match this spec."""
        found = [m for _, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        if len(found) != self.num_layers:
            raise ValueError(f"module has {len(found)} parametric layers, spec has {self.num_layers}")
        out = []
        for i, (m, layer) in enumerate(zip(found, self.layers)):
            if tuple(m.weight.shape) != layer.weight_shape:
                raise ValueError(f"layer {i}: module weight {tuple(m.weight.shape)} != spec {layer.weight_shape}")
            if (m.bias is not None) != layer.bias:
                raise ValueError(f"layer {i}: bias presence differs between module and spec")
            out.append((m.weight, m.bias))
        return out

    # ------------------------------------------------------------------ symmetry
    def sample_permutation(
        self, batch_size: int | None = None, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        """A random element of the hidden-neuron permutation group.

        Returns one index tensor per `permutation_groups()` entry, of shape ``[n]`` (one
        permutation for every network) or ``[batch_size, n]`` (one per network).
        """
        perms = []
        for g in self.permutation_groups():
            if batch_size is None:
                perms.append(torch.randperm(g.size, generator=generator))
            else:
                perms.append(torch.argsort(torch.rand(batch_size, g.size, generator=generator), dim=1))
        return tuple(perms)

    def hidden_activations(self) -> tuple[str, ...]:
        return tuple(self.layers[g.layer].activation for g in self.permutation_groups())

    def admits_sign_flips(self, layer: int) -> bool:
        """Whether negating hidden neurons of ``layer`` (and their outgoing weights) keeps
        the function: the activation must be odd, and max pooling (not odd) must not follow."""
        from weightspace.core.activations import get_activation

        return get_activation(self.layers[layer].activation).odd and not (self._pool_after(layer) and self.pool == "max")

    def admits_scaling(self, layer: int) -> bool:
        """Whether positive rescaling of hidden neurons of ``layer`` keeps the function."""
        from weightspace.core.activations import get_activation

        return get_activation(self.layers[layer].activation).positive_homogeneous

    def describe(self) -> str:
        parts = []
        for i, layer in enumerate(self.layers):
            k = "x".join(map(str, layer.kernel_size))
            s = f"{layer.kind}({layer.in_features}->{layer.out_features}{', ' + k if k else ''}{'' if layer.bias else ', no bias'})"
            if layer.activation != "identity":
                s += f" {layer.activation}" + (f"(omega={layer.omega:g})" if layer.activation == "sine" else "")
            parts.append(s)
            if self._pool_after(i):
                parts.append(f"global-{self.pool}-pool")
        return " -> ".join(parts) + f"  [{self.num_params} parameters]"
