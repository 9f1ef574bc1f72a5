"""A functa-style modulated SIREN: one shared base network, one small latent per signal.

After Dupont et al. (functa, COIN++): a latent vector ``z`` ``[d]`` is mapped by a linear
layer to *shift modulations*, one per hidden neuron, which are added to the
pre-activations of every hidden sine layer of a shared SIREN:

    h_0 = x
    h_{i+1} = sin(omega * (W_i h_i + b_i + s_i(z)))     hidden layers, i < L - 1
    f(x)    = W_{L-1} h_{L-1} + b_{L-1}                  linear output layer
    [s_0(z), ..., s_{L-2}(z)] = A z + a                  (the latent map)

The network predicts signal values in ``[0, 1]`` directly (`FUNCTA` recipe: targets in
``[0, 1]``, no output offset); PSNR uses peak 1.

Because a shift only adds to a bias, the network for one latent *is* a plain SIREN whose
biases are ``b_i + s_i(z)``: `ModulatedSiren.to_weights` exports it as `Weights` of
``NetworkSpec.siren(in, hidden, out, omega)``, so `core.functional.forward`, zoos and
every weight-space model apply to it unchanged.

The per-latent-entry inner learning rates of Meta-SGD live here too (``inner_lr`` ``[d]``),
because they are part of what a stored model needs to encode a new signal
(`weightspace.inr.meta`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from weightspace.core.functional import forward as functional_forward
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.inr.siren import NFN

# The original SIREN init (Sitzmann et al.; the NFN recipe's), values in [0, 1] as functa does.
FUNCTA = replace(NFN, name="functa", version=1, target_range=(0.0, 1.0))


@dataclass(frozen=True)
class ModulatedSirenConfig:
    """Architecture of a `ModulatedSiren` (JSON-able: stored with the model).

    in_features: coordinate dimension ``d_in``; out_features: channels ``c``;
    hidden: widths of the hidden sine layers; latent_dim: ``d`` of the latent vector;
    omega: SIREN frequency of every sine layer; inner_lr: initial Meta-SGD learning rate
    of every latent entry; seed: initialisation seed of the base network and latent map.

    appearance_dim: ``k`` (default 0: functa as published, shifts of the hidden layers only).
    With ``k > 0`` the last ``k`` latent entries form an *appearance code* that also shifts the
    output layer's bias, through ``output_map`` ``Linear(k, c)`` (after GRAF's split of shape and
    appearance codes). Their Meta-SGD rates start at ``appearance_inner_lr``: a colour error
    on a few pixels gives the latent a gradient far smaller than the geometry's, and three inner
    steps at the shared rate leave colour where it started (`tasks.nerf_functa`). The entries
    start with no effect on the hidden shifts (zero columns of the latent map). Still a shift of
    biases only, so one latent's network stays a plain SIREN.
    """

    in_features: int
    out_features: int
    hidden: tuple[int, ...] = (64, 64, 64)
    latent_dim: int = 64
    omega: float = 30.0
    inner_lr: float = 1e-2
    seed: int = 0
    appearance_dim: int = 0
    appearance_inner_lr: float = 10.0
    format: int = field(default=1, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"a modulated SIREN needs at least one hidden layer of positive width, got {self.hidden}")
        if self.latent_dim < 1 or self.in_features < 1 or self.out_features < 1:
            raise ValueError("in_features, out_features and latent_dim must be positive")
        if not 0 <= self.appearance_dim <= self.latent_dim:
            raise ValueError(f"appearance_dim must lie in 0..latent_dim={self.latent_dim}, got {self.appearance_dim}")

    @property
    def spec(self) -> NetworkSpec:
        """The plain SIREN that one modulated network equals (see `ModulatedSiren.to_weights`)."""
        return NetworkSpec.siren(self.in_features, self.hidden, self.out_features, omega=self.omega)

    @property
    def num_modulations(self) -> int:
        return sum(self.hidden)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModulatedSirenConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModulatedSirenConfig fields {sorted(unknown)}")
        if int(data.get("format", 1)) > 1:
            raise ValueError(f"ModulatedSirenConfig format {data['format']} is newer than this library (1)")
        return cls(**{**data, "hidden": tuple(data.get("hidden", ()))})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class ModulatedSiren(nn.Module):
    """Shared SIREN + latent -> shift map + Meta-SGD inner learning rates.

    Parameters: ``weights[i]`` ``[out_i, in_i]``, ``biases[i]`` ``[out_i]`` (base SIREN,
    `FUNCTA` init from ``config.seed``); ``latent_map`` ``Linear(d, sum(hidden))`` (zero bias,
    so ``z = 0`` gives the unmodulated base network); ``inner_lr`` ``[d]``.
    """

    def __init__(self, config: ModulatedSirenConfig) -> None:
        super().__init__()
        self.config = config
        base = FUNCTA.init(config.spec, [config.seed])
        self.weights = nn.ParameterList([nn.Parameter(w[0, 0].clone()) for w in base.weights])
        self.biases = nn.ParameterList([nn.Parameter(b[0, 0].clone()) for b in base.biases])  # type: ignore[index]
        g = torch.Generator().manual_seed(config.seed + 1)
        d, m = config.latent_dim, config.num_modulations
        # nn.Linear's default range, drawn from our own generator so the model depends on the seed only
        bound = 1.0 / d**0.5
        self.latent_map = nn.Linear(d, m)
        with torch.no_grad():
            self.latent_map.weight.copy_((torch.rand(m, d, generator=g) * 2 - 1) * bound)
            self.latent_map.bias.zero_()
        lr = torch.full((d,), float(config.inner_lr))
        k = config.appearance_dim
        if k:
            with torch.no_grad():
                self.latent_map.weight[:, d - k:] = 0.0  # the appearance code starts off the hidden shifts
            self.output_map = nn.Linear(k, config.out_features, bias=False)
            with torch.no_grad():  # 10x nn.Linear's range for d inputs: the scale at which colour was learnt
                self.output_map.weight.copy_((torch.rand(config.out_features, k, generator=g) * 2 - 1) * 10 * bound)
            lr[d - k:] = float(config.appearance_inner_lr)
        self.inner_lr = nn.Parameter(lr)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def shifts(self, latents: Tensor) -> list[Tensor]:
        """Latents ``[B, d]`` -> one shift tensor ``[B, width_i]`` per hidden layer."""
        if latents.dim() != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be [B, {self.latent_dim}], got {tuple(latents.shape)}")
        return list(torch.split(self.latent_map(latents), list(self.config.hidden), dim=1))

    def forward(self, latents: Tensor, coords: Tensor) -> Tensor:
        """Values of each latent's network: latents ``[B, d]``, coords ``[P, d_in]`` (shared)
        or ``[B, P, d_in]`` -> ``[B, P, out]`` (signal values in [0, 1], unclamped)."""
        b, d_in = latents.shape[0], self.config.in_features
        if coords.shape[-1] != d_in or not (coords.dim() == 2 or (coords.dim() == 3 and coords.shape[0] == b)):
            raise ValueError(f"coords must be [P, {d_in}] or [{b}, P, {d_in}], got {tuple(coords.shape)}")
        return functional_forward(self._modulated(latents), coords.to(latents.dtype))

    def _modulated(self, latents: Tensor) -> Weights:
        """The networks of ``latents`` as `Weights` that stay differentiable: the shared base
        weights as stride-0 batch views, the shifts added to the biases."""
        shifts = self.shifts(latents)
        b, k = latents.shape[0], self.config.appearance_dim
        if k:  # the appearance code shifts the output layer's bias too
            shifts.append(self.output_map(latents[:, self.latent_dim - k:]))
        ws = tuple(w.expand(b, *w.shape).unsqueeze(1) for w in self.weights)
        bs = tuple(
            (bias + shifts[i] if i < len(shifts) else bias.expand(b, -1)).unsqueeze(1)
            for i, bias in enumerate(self.biases)
        )
        return Weights(self.config.spec, ws, bs)

    def to_weights(self, latents: Tensor) -> Weights:
        """The modulated networks of ``latents`` ``[B, d]`` as plain SIREN `Weights`
        (spec ``config.spec``, ``[B, 1, ...]``, detached copies): shifts folded into the
        biases, so ``core.functional.forward(model.to_weights(z), x) == model(z, x)``."""
        with torch.no_grad():
            w = self._modulated(latents)
        return Weights(w.spec, tuple(t.clone() for t in w.weights), tuple(t.clone() for t in w.biases))

    def base_weights(self) -> Weights:
        """The unmodulated base network (latent zero) as ``[1, 1, ...]`` `Weights`."""
        return self.to_weights(torch.zeros(1, self.latent_dim, dtype=self.weights[0].dtype, device=self.weights[0].device))


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-signal PSNR in dB for values in [0, 1]: ``[B, P, c]`` x2 -> ``[B]`` (pred clamped to [0, 1])."""
    mse = (pred.clamp(0.0, 1.0) - target).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))




def save_modulated(model: ModulatedSiren, path: str | Any) -> None:
    """Write ``model`` to one safetensors file; its config rides in the metadata (no pickle)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "weightspace.modulated_siren", "config": model.config.to_json()})


def load_modulated(path: str | Any) -> ModulatedSiren:
    """Read a `save_modulated` file; a foreign or damaged file raises ValueError naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "weightspace.modulated_siren":
                raise ValueError(f"{path}: not a weightspace modulated SIREN file")
            config = ModulatedSirenConfig.from_dict(json.loads(meta["config"]))
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (OSError, KeyError, json.JSONDecodeError, SafetensorError) as e:
        raise ValueError(f"{path}: cannot read modulated SIREN ({e})") from e
    model = ModulatedSiren(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: tensors do not match the stored config ({e})") from e
    return model


__all__ = ["FUNCTA", "ModulatedSiren", "ModulatedSirenConfig", "load_modulated", "psnr", "save_modulated"]
