"""Hypernetwork INRs (HyperINR, after Qiu, Sonis & Shen 2026): a code per signal, one shared
hypernetwork that maps a code to the full weights of a SIREN.

- ``HyperINR(z)`` for codes ``z`` ``[B, code_dim]`` returns a `Weights` batch of the SIREN
  spec; `core.functional.forward` evaluates it, so the generated networks are ordinary INRs.
- Training is auto-decoding (DeepSDF style): the codes of the training signals are free
  parameters optimised jointly with the hypernetwork on the reconstruction loss, plus a
  small L2 prior on the codes (`fit_hyperinr`).
- A new signal is encoded by optimising its code alone with the hypernetwork fixed
  (`encode_codes`); every code of a batch gets its own Adam state, vectorised.
- Devices: `fit_hyperinr` builds the model on the CPU and moves it to ``device``; after
  that the model's device decides: `encode_codes` and `psnr_of` move each chunk of signals
  there and return their results on the CPU. Random draws stay on CPU generators, so a
  seed gives the same codes, batches and points on every device.

Output parametrisation: ``weights = base + scale * mlp(z)`` where ``base`` is a learned
SIREN initialisation and ``scale`` holds, per layer, the SIREN init bound of that layer.
A plain MLP output (~0.1-1) would be far outside the range a SIREN with omega = 30 trains
in (~0.01), so without the scale every generated network would start saturated.

Values follow a `SirenRecipe`'s decode path (target range, output offset), recorded with
the model so the generated zoo decodes like any fitted zoo.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from weightspace._progress import disabled
from weightspace.core.functional import forward
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.inr.siren import SirenRecipe, get_recipe

FILE_FORMAT = "weightspace-hyperinr"


@dataclass(frozen=True)
class HyperINRConfig:
    """Architecture and optimisation of a HyperINR (sizes in units, lrs for Adam)."""

    code_dim: int = 64
    hidden: tuple[int, ...] = (256, 256)  # hypernetwork hidden layers
    inr_hidden: tuple[int, ...] = (32, 32)  # generated SIREN hidden layers
    omega: float = 30.0
    recipe: str = "dwsnets"  # decode path (offset, range) and base initialisation
    code_init_std: float = 0.01
    code_reg: float = 1e-4  # weight of mean ||z||^2 (the Gaussian prior of auto-decoding)
    lr: float = 1e-3  # hypernetwork
    code_lr: float = 1e-2  # codes, training and encoding
    steps: int = 2000
    batch_size: int = 64
    points_per_step: int | None = None  # sample this many coordinates per step (None: all)
    encode_steps: int = 300

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"], d["inr_hidden"] = list(self.hidden), list(self.inr_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HyperINRConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown HyperINR config fields {sorted(unknown)}")
        return cls(**{**d, "hidden": tuple(d.get("hidden", ())), "inr_hidden": tuple(d.get("inr_hidden", ()))})

    def siren_recipe(self) -> SirenRecipe:
        return get_recipe(self.recipe, hidden=self.inr_hidden, omega=self.omega)


class HyperINR(nn.Module):
    """codes ``[B, code_dim]`` -> `Weights` ``[B, 1, ...]`` of a SIREN ``in -> inr_hidden -> out``."""

    def __init__(self, config: HyperINRConfig, in_features: int, out_features: int, *, seed: int = 0) -> None:
        super().__init__()
        self.config, self.in_features, self.out_features = config, in_features, out_features
        self.recipe = config.siren_recipe()
        self.spec: NetworkSpec = self.recipe.spec(in_features, out_features)
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            sizes = [config.code_dim, *config.hidden, self.spec.num_params]
            layers: list[nn.Module] = []
            for a, b in itertools.pairwise(sizes):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.mlp = nn.Sequential(*layers[:-1])
        finally:
            torch.random.set_rng_state(gen_state)
        base = self.recipe.init(self.spec, [seed]).flatten()[0, 0]
        self.base = nn.Parameter(base)
        self.register_buffer("scale", self._scales(), persistent=False)

    def _scales(self) -> Tensor:
        parts = []
        for i, layer in enumerate(self.spec.layers):
            bound = 1.0 / layer.in_features if i == 0 and self.recipe.first_layer_init == "siren" else math.sqrt(6.0 / layer.in_features) / self.recipe.omega
            parts.append(torch.full((layer.num_params,), bound))
        return torch.cat(parts)

    def flat(self, codes: Tensor) -> Tensor:
        """``[B, num_params]``: generated parameters in `Weights.flatten` order."""
        if codes.dim() != 2 or codes.shape[1] != self.config.code_dim:
            raise ValueError(f"codes must be [B, {self.config.code_dim}], got {tuple(codes.shape)}")
        return self.base + self.scale * self.mlp(codes)

    def forward(self, codes: Tensor) -> Weights:
        return Weights.unflatten(self.spec, self.flat(codes))

    def loss(self, codes: Tensor, coords: Tensor, values: Tensor) -> Tensor:
        """Per-signal MSE ``[B]`` in the recipe's target range; values ``[B, P, out]`` in [0, 1]."""
        y = self.recipe.encode_targets(values) - self.recipe.output_offset
        return (forward(self(codes), coords) - y).square().mean(dim=(1, 2))


@dataclass
class HyperFit:
    model: HyperINR
    codes: Tensor  # [N, code_dim]
    psnr: Tensor  # [N] dB in the recipe's target range, all coordinates
    history: list[float]  # mean training loss per 100 steps


def _sample_points(p: int, k: int | None, g: torch.Generator) -> Tensor | None:
    return None if k is None or k >= p else torch.randperm(p, generator=g)[:k]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def fit_hyperinr(
    coords: Tensor, values: Tensor, config: HyperINRConfig | None = None, *, seed: int = 0, progress: bool = False,
    device: str | torch.device = "cpu",
) -> HyperFit:
    """Auto-decode: jointly fit the hypernetwork and one code per signal, on ``device``.

    coords ``[P, d]`` in [-1, 1]; values ``[N, P, c]`` in [0, 1]. The result's model stays on
    ``device``; its codes and PSNR are on the CPU.
    """
    config = config or HyperINRConfig()
    n, p, c = values.shape
    if coords.shape != (p, coords.shape[1]):
        raise ValueError(f"coords {tuple(coords.shape)} do not match values {tuple(values.shape)}")
    model = HyperINR(config, coords.shape[1], c, seed=seed).to(device)
    g = torch.Generator().manual_seed(seed)
    codes = nn.Embedding(n, config.code_dim, sparse=True)
    with torch.no_grad():
        codes.weight.copy_(torch.randn(n, config.code_dim, generator=g) * config.code_init_std)
    codes.to(device)
    coords_d = coords.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    code_opt = torch.optim.SparseAdam(codes.parameters(), lr=config.code_lr)
    history, running = [], 0.0
    for step in tqdm(range(config.steps), disable=disabled(progress), desc="hyperinr fit", leave=False):
        idx = torch.randint(n, (min(config.batch_size, n),), generator=g)
        pts = _sample_points(p, config.points_per_step, g)
        y = (values[idx] if pts is None else values[idx][:, pts]).to(device)
        x = coords_d if pts is None else coords_d[pts.to(device)]
        z = codes(idx.to(device))
        mse = model.loss(z, x, y)
        loss = mse.mean() + config.code_reg * z.square().sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        code_opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        code_opt.step()
        running += float(mse.detach().mean())
        if (step + 1) % 100 == 0:
            history.append(running / 100)
            running = 0.0
    z = codes.weight.detach().cpu().clone()
    return HyperFit(model.eval(), z, psnr_of(model, z, coords, values), history)


@torch.no_grad()
def psnr_of(model: HyperINR, codes: Tensor, coords: Tensor, values: Tensor, chunk: int = 256) -> Tensor:
    """PSNR ``[N]`` (dB, target range) of the networks generated from ``codes`` on ``values``
    (computed on the model's device, returned on the CPU)."""
    device = _device(model)
    coords = coords.to(device)
    out = [model.recipe.psnr(model.loss(codes[i : i + chunk].to(device), coords, values[i : i + chunk].to(device))).cpu()
           for i in range(0, len(codes), chunk)]
    return torch.cat(out) if out else torch.zeros(0)


def encode_codes(
    model: HyperINR,
    coords: Tensor,
    values: Tensor,
    *,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    chunk: int = 512,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Codes ``[N, code_dim]`` for new signals ``values`` ``[N, P, c]`` with the hypernetwork
    fixed, and their PSNR ``[N]``. Codes start at the training prior's mean (zero). Runs on
    the model's device; both results are on the CPU."""
    cfg = model.config
    device = _device(model)
    coords_d = coords.to(device)
    steps = cfg.encode_steps if steps is None else steps
    lr = cfg.code_lr if lr is None else lr
    for q in model.parameters():
        q.requires_grad_(False)
    try:
        out = []
        for i in tqdm(range(0, len(values), chunk), disable=disabled(progress), desc="hyperinr encode", leave=False):
            y = values[i : i + chunk].to(device)
            z = torch.zeros(len(y), cfg.code_dim, device=device, requires_grad=True)
            opt = torch.optim.Adam([z], lr=lr)  # elementwise: each code its own Adam
            for _ in range(steps):
                # a sum keeps each code's gradient its own
                loss = model.loss(z, coords_d, y).sum() + cfg.code_reg * z.square().sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            out.append(z.detach().cpu())
    finally:
        for q in model.parameters():
            q.requires_grad_(True)
    codes = torch.cat(out) if out else torch.zeros(0, cfg.code_dim)
    return codes, psnr_of(model, codes, coords, values)


# ---------------------------------------------------------------------- file
def save_hyperinr(path: str | os.PathLike, model: HyperINR, meta: dict[str, Any] | None = None) -> None:
    """safetensors: the hypernetwork's parameters; metadata: format, config, sizes, ``meta``."""
    header = {
        "format": FILE_FORMAT,
        "version": "1",
        "config": json.dumps(model.config.to_dict()),
        "in_features": str(model.in_features),
        "out_features": str(model.out_features),
        "meta": json.dumps(meta or {}),
    }
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path), metadata=header)


def load_hyperinr(path: str | os.PathLike) -> tuple[HyperINR, dict[str, Any]]:
    """(model, meta) from `save_hyperinr`'s file; a foreign file raises ValueError naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
    except (OSError, SafetensorError) as e:
        raise ValueError(f"{path}: not a safetensors file ({e})") from None
    if header.get("format") != FILE_FORMAT:
        raise ValueError(f"{path}: not a HyperINR file (format {header.get('format')!r})")
    config = HyperINRConfig.from_dict(json.loads(header["config"]))
    model = HyperINR(config, int(header["in_features"]), int(header["out_features"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval(), json.loads(header.get("meta", "{}"))


def with_steps(config: HyperINRConfig, **changes: Any) -> HyperINRConfig:
    """A copy of ``config`` with fields changed (CLI options)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


__all__ = [
    "HyperFit",
    "HyperINR",
    "HyperINRConfig",
    "encode_codes",
    "fit_hyperinr",
    "load_hyperinr",
    "psnr_of",
    "save_hyperinr",
    "with_steps",
]
