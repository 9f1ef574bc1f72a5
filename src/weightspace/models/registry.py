"""The model registry: every weight-space model is created by name, and the test suite
runs its property checks over `list_models()`, so a new model is tested on arrival."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Preset:
    """A published configuration, by name: the model, its options, the training recipe of the
    paper (fields of `weightspace.train.TrainConfig`), the augmentation it trained with, where it
    comes from, and the figures it reported (dataset -> test accuracy in %). ``deviations`` says
    what differs from the reference code, if anything."""

    name: str
    model: str
    config: dict[str, Any]
    train: dict[str, Any]
    source: str
    published: dict[str, float] = field(default_factory=dict)
    augment: str = ""
    deviations: str = ""


_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in _PRESETS or preset.name in _MODELS:
        raise ValueError(f"preset {preset.name!r} is already registered")
    _PRESETS[preset.name] = preset
    return preset


def list_presets(model: str | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(n for n, p in _PRESETS.items() if model is None or p.model == model)


def get_preset(name: str) -> Preset:
    _ensure_loaded()
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; registered: {', '.join(sorted(_PRESETS)) or 'none'}")
    return _PRESETS[name]


def resolve(name: str, **config) -> tuple[str, dict[str, Any], Preset | None]:
    """A model or preset name -> (model name, options, preset or None); ``config`` overrides
    the preset's options."""
    _ensure_loaded()
    if name in _PRESETS:
        p = _PRESETS[name]
        return p.model, {**p.config, **config}, p
    return name, dict(config), None


def _ensure_loaded() -> None:
    # importing the model modules runs their @register_model decorators
    from weightspace.models import (  # noqa: F401
        dws,
        dws_light,
        editors,
        graph,
        graph_light,
        graph_transformer,
        mlp,
        nfn,
        probe,
        scalegmn,
        statnn,
        transformer,
    )


def list_models(output: Output | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(n for n, m in _MODELS.items() if output is None or m.output == output)


def model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    if name in _PRESETS:
        name = _PRESETS[name].model
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}; "
                         f"presets: {', '.join(sorted(_PRESETS))}")
    return _MODELS[name]


def create_model(name: str, spec: NetworkSpec, **config) -> nn.Module:
    """Build model ``name`` (a registered model, or a preset: its model with its options, which
    ``config`` may override) for weights of ``spec``. Invariant models take ``out_features``."""
    name, config, _ = resolve(name, **config)
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
