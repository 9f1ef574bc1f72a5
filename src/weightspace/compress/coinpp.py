"""COIN++ (Dupont et al. 2022): a shared meta-learned base, and per file only the signal's
quantised, entropy-coded modulations.

A `CoinppBase` is a `ModulatedSiren` meta-learned (`inr.meta.meta_train`) on patches of a
training set, stored once (safetensors) with the patch shape, the number of inner steps,
and the mean and standard deviation of each latent entry over the training patches.

Encoding a signal: cut it into patches (`signal.to_patches`; edges replicated), fit each
patch's latent with the base frozen (`inr.meta.encode`, the same inner loop it was trained
with, optionally followed by ``refine_steps`` of Adam on the latents), standardise each
entry ``u = (z - mean) / std``, quantise ``k = round(u / step)`` clipped to ``[-R, R]``
(``R = ceil(CLIP_STDS / step)``), and entropy-code every ``k`` with an ANS coder
(`constriction`) under a discretised Gaussian of mean 0 and standard deviation ``1 / step``
bins (the training latents' own spread). ``step`` sets the rate.

Header fields (beside ``kind``/``shape``/``meta``): ``base`` (the base's 16-hex-digit id),
``step``. Payload: the ANS coder's compressed 32-bit words, little-endian. A file decodes
only with the base whose id it names.

Devices: the base's network decides. `train_base` builds it on the CPU and moves it to
``device``, `CoinppBase.load` moves a stored one; latents are fitted and rendered there and
come back on the CPU, where they are quantised and entropy-coded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from weightspace.compress import basefile
from weightspace.compress.format import CodecError
from weightspace.compress.signal import KIND_AXES, Signal, from_patches, patch_grid, to_patches
from weightspace.compress.work import mlp_macs
from weightspace.inr.meta import MetaConfig, meta_train, reconstruct
from weightspace.inr.meta import encode as encode_latents
from weightspace.inr.modulated import ModulatedSiren, ModulatedSirenConfig
from weightspace.signals.base import grid_coordinates

CLIP_STDS = 8.0  # quantised latents are clipped at this many training standard deviations
MAX_SYMBOLS = 1 << 22  # latent entries a file may hold (bounds the decoder's allocation)
MIN_STEP, MAX_STEP = 1e-3, 64.0
_FORMAT = "weightspace.coinpp_base"


@dataclass(frozen=True, eq=False)
class CoinppBase(basefile.StoredBase):
    """model: the meta-learned network over patch coordinates ``grid_coordinates(patch)``;
    kind: signal kind it was trained on; patch: grid shape of a patch; inner_steps: inner-loop
    steps used to encode; latent_mean / latent_std: ``[d]`` over the training patches."""

    FORMAT: ClassVar[str] = _FORMAT

    model: ModulatedSiren
    kind: str
    patch: tuple[int, ...]
    inner_steps: int
    latent_mean: Tensor
    latent_std: Tensor

    @property
    def channels(self) -> int:
        return self.model.config.out_features

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "patch": list(self.patch),
            "inner_steps": self.inner_steps,
            "model": self.model.config.to_dict(),
        }

    def _tensors(self) -> dict[str, Tensor]:
        t = {f"model.{k}": v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        return {**t, "latent_mean": self.latent_mean.contiguous().cpu(), "latent_std": self.latent_std.contiguous().cpu()}

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> CoinppBase:
        """A stored base, its network moved to ``device``."""
        desc, tensors = basefile.read(path, _FORMAT, "COIN++ base")
        try:
            model = ModulatedSiren(ModulatedSirenConfig.from_dict(desc["model"]))
            model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
            d = model.latent_dim
            mean, std = tensors["latent_mean"], tensors["latent_std"]
            if mean.shape != (d,) or std.shape != (d,) or not bool((std > 0).all()):
                raise ValueError(f"latent statistics must be [{d}] with positive deviations")
            return cls(model.to(device), desc["kind"], tuple(int(p) for p in desc["patch"]), int(desc["inner_steps"]),
                       mean, std)
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: inconsistent COIN++ base ({e})") from e


def patches_of(signals: Sequence[Signal] | Tensor, patch: Sequence[int]) -> Tensor:
    """Training patches ``[M, prod(patch), C]`` of signals (a list, or a tensor ``[N, *grid, C]``)."""
    return torch.cat([to_patches(s.values if isinstance(s, Signal) else s, patch) for s in signals])


def train_base(
    patches: Tensor,
    kind: str,
    patch: Sequence[int],
    model_config: ModulatedSirenConfig,
    meta_config: MetaConfig | None = None,
    stats_patches: int = 4096,
    *,
    device: str | torch.device = "cpu",
) -> CoinppBase:
    """Meta-learn a base on training ``patches`` ``[M, prod(patch), C]`` (`patches_of`) on
    ``device``, then measure the latent statistics on up to ``stats_patches`` of them (seeded
    choice). The base's network stays on ``device``; its statistics are on the CPU."""
    meta_config = meta_config or MetaConfig()
    patch = tuple(int(p) for p in patch)
    if kind not in KIND_AXES or len(patch) != KIND_AXES[kind]:
        raise ValueError(f"a {kind} base needs a {KIND_AXES.get(kind, '?')}-axis patch, got {patch}")
    if model_config.in_features != len(patch) or model_config.out_features != patches.shape[-1]:
        raise ValueError("model in/out features must match the patch axes and channels")
    model = ModulatedSiren(model_config).to(device)
    coords = grid_coordinates(patch)
    meta_train(model, coords, patches, meta_config)
    g = torch.Generator().manual_seed(meta_config.seed + 7)
    idx = torch.randperm(patches.shape[0], generator=g)[:stats_patches]
    z = encode_latents(model, patches[idx], meta_config.inner_steps, coords=coords)
    std = z.std(dim=0).clamp_min(1e-6) if z.shape[0] > 1 else torch.ones(z.shape[1])
    return CoinppBase(model, kind, patch, meta_config.inner_steps, z.mean(dim=0), std)


def latents_of(signal: Signal, base: CoinppBase, refine_steps: int = 0, refine_lr: float = 1e-2) -> Tensor:
    """Latents ``[N_patches, d]`` of ``signal``: the inner loop, then optional Adam refinement
    (on the base's device; the latents come back on the CPU)."""
    if signal.kind != base.kind or signal.channels != base.channels:
        raise ValueError(
            f"this base codes {base.kind} signals with {base.channels} channel(s), "
            f"not {signal.kind} with {signal.channels}"
        )
    coords = grid_coordinates(base.patch)
    y = to_patches(signal.values, base.patch)
    z = encode_latents(base.model, y, base.inner_steps, coords=coords)
    if refine_steps > 0:
        device = next(base.model.parameters()).device
        coords, y = coords.to(device), y.to(device)
        z = z.to(device).clone().requires_grad_()
        opt = torch.optim.Adam([z], lr=refine_lr)
        for p in base.model.parameters():
            p.requires_grad_(False)
        try:
            for _ in range(refine_steps):
                loss = (base.model(z, coords) - y).square().mean(dim=(1, 2)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        finally:
            for p in base.model.parameters():
                p.requires_grad_(True)
        z = z.detach().cpu()
    return z


def _clip(step: float) -> int:
    return min(math.ceil(CLIP_STDS / step), 1 << 15)


def _entropy_model(step: float, count: int) -> tuple[Any, np.ndarray, np.ndarray]:
    import constriction

    r = _clip(step)
    model = constriction.stream.model.QuantizedGaussian(-r, r)
    return model, np.zeros(count), np.full(count, max(1.0 / step, 0.05))


def quantize_latents(z: Tensor, base: CoinppBase, step: float) -> np.ndarray:
    u = (z - base.latent_mean) / base.latent_std
    r = _clip(step)
    return torch.round(u / step).clamp(-r, r).to(torch.int32).numpy().reshape(-1)


def dequantize_latents(k: np.ndarray, base: CoinppBase, step: float) -> Tensor:
    u = torch.from_numpy(k.astype(np.float32)).reshape(-1, base.model.latent_dim) * step
    return u * base.latent_std + base.latent_mean


def _render(base: CoinppBase, z: Tensor, grid: tuple[int, ...]) -> Tensor:
    patches = reconstruct(base.model, z, grid_coordinates(base.patch))
    return from_patches(patches, grid, base.patch)


def encode_latents_to_file(
    signal: Signal, base: CoinppBase, z: Tensor, step: float
) -> tuple[dict[str, Any], bytes, Tensor]:
    """``(header, payload, decoded values)`` for latents ``z`` already fitted to ``signal``."""
    import constriction

    if not MIN_STEP <= step <= MAX_STEP:
        raise ValueError(f"step must lie in [{MIN_STEP}, {MAX_STEP}], got {step}")
    k = quantize_latents(z, base, step)
    model, mu, sd = _entropy_model(step, k.size)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(k, model, mu, sd)
    payload = coder.get_compressed().astype("<u4").tobytes()
    header = {**signal.header(), "base": base.id, "step": float(step)}
    return header, payload, _render(base, dequantize_latents(k, base, step), signal.grid)


def _parse(
    header: dict[str, Any], base: CoinppBase | None
) -> tuple[str, tuple[int, ...], dict[str, float], float, int]:
    """``(kind, shape, meta, step, latent entries)`` of a COIN++ patch file's header, checked against ``base``."""
    kind, shape, meta = basefile.check_header(header, base, CoinppBase, "patch")
    step = header.get("step")
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not MIN_STEP <= step <= MAX_STEP:
        raise CodecError(f"COIN++ header: step must be a number in [{MIN_STEP}, {MAX_STEP}], got {step!r}")
    n = math.prod(patch_grid(shape[:-1], base.patch)) * base.model.latent_dim
    if n > MAX_SYMBOLS:
        raise CodecError(f"COIN++ header: {n} latent entries exceed the bound {MAX_SYMBOLS}")
    return kind, shape, meta, float(step), n


def decode_work(header: dict[str, Any], base: CoinppBase | None) -> tuple[int, str]:
    """Multiply-adds to decode a COIN++ patch file (`compress.work`), and what they are: each of
    the ``N`` patches (edges padded) maps its latent to shifts (``d * sum(hidden)``), then every
    point of every patch goes through the base SIREN (``sum(n_in * n_out)`` over its layers)."""
    _, shape, _, _, _ = _parse(header, base)
    c = base.model.config
    patches, points = math.prod(patch_grid(shape[:-1], base.patch)), math.prod(base.patch)
    per_point = mlp_macs([c.in_features, *c.hidden, c.out_features])
    work = patches * (points * per_point + c.latent_dim * sum(c.hidden))
    return work, f"{patches} patches x {points} points x {per_point} per point, base hidden {list(c.hidden)}"


def decode(header: dict[str, Any], payload: bytes, base: CoinppBase | None) -> Signal:
    """The signal of a COIN++ file's header and payload, with the base it names."""
    import constriction

    kind, shape, meta, step, n = _parse(header, base)
    words = basefile.coded_words(payload)
    model, mu, sd = _entropy_model(float(step), n)
    with basefile.stream_errors():
        coder = constriction.stream.stack.AnsCoder(words)
        k = coder.decode(model, mu, sd)
        basefile.check_empty(coder)
    values = _render(base, dequantize_latents(np.asarray(k), base, float(step)), tuple(shape[:-1]))
    return Signal(values.contiguous(), kind, meta)


__all__ = [
    "CLIP_STDS",
    "CoinppBase",
    "decode",
    "decode_work",
    "dequantize_latents",
    "encode_latents_to_file",
    "latents_of",
    "patches_of",
    "quantize_latents",
    "train_base",
]
