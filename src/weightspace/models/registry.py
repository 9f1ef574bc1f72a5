"""The model registry: every weight-space model is created by name, and the test suite
runs its property checks over `list_models()`, so a new model is tested on arrival."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from weightspace.core.spec import NetworkSpec

Output = Literal["invariant", "equivariant"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    output: Output  # invariant: Weights -> [B, out]; equivariant: Weights -> Weights
    supports_conv: bool
    builder: Callable[..., nn.Module]
    summary: str
    symmetric: bool  # invariant/equivariant to hidden-neuron permutations (False: a baseline that is not)
    # a group larger than the hidden-neuron permutations that the model is invariant to by
    # design (so it passes uncoupled permutations too), e.g. statistics of each tensor
    larger_group: str | None = None


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    name: str, *, output: Output, supports_conv: bool, summary: str, symmetric: bool = True, larger_group: str | None = None
):
    """Class decorator: ``@register_model("dws", output="invariant", supports_conv=True, ...)``.

    Invariant models are built as ``cls(spec, out_features, **config)`` and map `Weights` to
    ``[B, out_features]``; equivariant ones as ``cls(spec, **config)`` and map `Weights` to
    `Weights` of the same spec."""

    def wrap(cls):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelInfo(name, output, supports_conv, cls, summary, symmetric, larger_group)
        return cls

    return wrap


def _ensure_loaded() -> None:
    # importing the model modules runs their @register_model decorators
    from weightspace.models import dws, editors, graph, mlp, nfn, probe, statnn, transformer  # noqa: F401


def list_models(output: Output | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(n for n, m in _MODELS.items() if output is None or m.output == output)


def model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def create_model(name: str, spec: NetworkSpec, **config) -> nn.Module:
    """Build model ``name`` for weights of ``spec``. Invariant models take ``out_features``."""
    info = model_info(name)
    if spec.is_conv and not info.supports_conv:
        raise ValueError(f"model {name!r} supports MLP specs only; this spec has conv layers")
    known = inspect.signature(info.builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in known.values()):
        unknown = sorted(set(config) - set(known))
        if unknown:
            options = [k for k in known if k not in ("spec", "self")]
            raise ValueError(f"model {name!r} has no option(s) {unknown}; its options: {options}")
    return info.builder(spec, **config)


def parse_model_config(text: str) -> dict[str, Any]:
    """``"hidden_channels=32,norm=batch"`` -> ``{"hidden_channels": 32, "norm": "batch"}``
    (values read as int, float, true/false, none, else kept as text)."""

    def value(v: str) -> Any:
        low = v.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "none":
            return None
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v

    config: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, v = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"model config: expected key=value, got {item!r}")
        config[key.strip()] = value(v.strip())
    return config
