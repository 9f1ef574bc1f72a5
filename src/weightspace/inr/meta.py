"""Meta-learning a `ModulatedSiren`: inner-loop fitting of latents, outer MAML training.

Inner loop (`fit_latents`), vectorised over a batch of B signals: from ``z = 0``, take
``k`` steps of Meta-SGD on the latents only,

    z <- z - inner_lr * grad_z sum_b mse_b(z_b)        inner_lr: [d], learned

(``mse_b`` is signal b's mean squared error over points and channels, so summing over the
batch leaves each signal's gradient its own and independent of B.)

Outer loop (`meta_train`): MAML through the inner loop (second order by default,
``first_order=True`` treats the inner gradients as constants), updating the shared base
SIREN, the latent map and the inner learning rates with Adam on the MSE after ``k`` inner
steps. Batches are drawn by a seeded generator, so a run is a function of its seeds.

`encode` turns new signals into latents with the trained model frozen; `reconstruct`
renders latents back to signal values.

Shapes: coords ``[P, d_in]`` in ``[-1, 1]`` (shared by every signal, e.g.
`signals.base.grid_coordinates` or ``dataset.coordinates()``), targets ``[N, P, c]`` in
``[0, 1]`` (``dataset.targets()``), latents ``[N, d]``.

Devices: the model's decides. Every function here moves the coordinates and targets (or
each chunk of them) to the device of the model's parameters, computes there, and returns
its results on the device the inputs came on (the CPU for data from a dataset), so a
model moved to a GPU is all it takes to run there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from weightspace._progress import disabled
from weightspace.inr.modulated import ModulatedSiren, psnr


@dataclass(frozen=True)
class MetaConfig:
    """Outer-loop settings. steps: Adam steps on the shared parameters; batch_size: signals
    per step; inner_steps: Meta-SGD steps on the latent per signal; lr: outer Adam learning
    rate; first_order: drop second-order terms; grad_clip: max global gradient norm (None: off);
    seed: batch order."""

    steps: int = 500
    batch_size: int = 32
    inner_steps: int = 3
    lr: float = 3e-4
    first_order: bool = False
    grad_clip: float | None = 1.0
    seed: int = 0
    progress: bool = True
    points_per_step: int | None = None  # a random subset of the coordinates per outer step (None: all)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MetaHistory:
    """Per outer step: training loss (MSE after the inner loop) and mean PSNR (dB) of that batch."""

    loss: list[float]
    psnr: list[float]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s parameters (where the work on it runs)."""
    return next(model.parameters()).device


Decode = Callable[[ModulatedSiren, Tensor, Tensor], Tensor]


def direct(model: ModulatedSiren, z: Tensor, coords: Tensor) -> Tensor:
    """The default decode: the modulated SIREN's values at the coordinates, ``[B, P, c]``."""
    return model(z, coords)


def _check(model: ModulatedSiren, coords: Tensor, targets: Tensor, decode: Decode | None = None) -> None:
    if decode is not None:  # another observation model (e.g. volume rendering) checks its own inputs
        if targets.dim() != 3 or targets.shape[1] != coords.shape[0]:
            raise ValueError(f"targets must be [N, {coords.shape[0]}, c] to match coords, got {tuple(targets.shape)}")
        if not torch.isfinite(targets).all():
            raise ValueError("targets hold NaN or infinite values")
        return
    cfg = model.config
    if coords.dim() != 2 or coords.shape[1] != cfg.in_features:
        raise ValueError(f"coords must be [P, {cfg.in_features}], got {tuple(coords.shape)}")
    if targets.dim() != 3 or targets.shape[1] != coords.shape[0] or targets.shape[2] != cfg.out_features:
        raise ValueError(
            f"targets must be [N, {coords.shape[0]}, {cfg.out_features}] to match coords and the model, "
            f"got {tuple(targets.shape)}"
        )
    if not torch.isfinite(targets).all():
        raise ValueError("targets hold NaN or infinite values")


def fit_latents(
    model: ModulatedSiren,
    coords: Tensor,
    targets: Tensor,
    steps: int,
    *,
    create_graph: bool = False,
    latents: Tensor | None = None,
    mask: Tensor | None = None,
    decode: Decode | None = None,
) -> Tensor:
    """The inner loop: ``steps`` Meta-SGD steps on the latents of ``targets`` ``[B, P, c]``.

    Starts from ``latents`` (default zeros ``[B, d]``); returns ``[B, d]``. With
    ``create_graph`` the result stays differentiable w.r.t. the model's parameters through
    every inner step (MAML); otherwise the inner gradients are constants (first order), yet
    the result still depends on ``inner_lr`` and, through the last step, on nothing else.
    Runs on the model's device; the latents come back on the device of ``targets``.

    ``mask`` ``[B, P]`` (bool) restricts each signal's loss to its observed points (the
    mean over them): values at the other points do not enter (shape inference from a
    partial observation, `tasks.shape_inference`).

    ``decode(model, z, coords)`` turns latents into predictions of the targets (default:
    the network's values at the coordinates; volume rendering of rays for NeRFs, `inr.nerf`).
    """
    decode = decode or direct
    b, home, device = targets.shape[0], targets.device, model_device(model)
    coords, targets = coords.to(device), targets.to(device)
    if mask is not None:
        if mask.shape != targets.shape[:2]:
            raise ValueError(f"mask must be {list(targets.shape[:2])} like the targets' points, got {list(mask.shape)}")
        weight = mask.to(device, targets.dtype)[..., None] / (mask.sum(1).clamp_min(1) * targets.shape[2]).to(
            device, targets.dtype)[:, None, None]
        targets = torch.where(mask.to(device)[..., None], targets, torch.zeros((), dtype=targets.dtype, device=device))
    outer_grad = torch.is_grad_enabled()  # a caller under no_grad gets plain tensors back
    z = torch.zeros(b, model.latent_dim, dtype=targets.dtype, device=device) if latents is None else latents.to(device)
    if not z.requires_grad:
        z = z.detach().requires_grad_()
    for _ in range(steps):
        # the update too, so that z still requires grad for the next step under no_grad
        with torch.enable_grad():
            err = (decode(model, z, coords) - targets).square()
            mse = err.mean(dim=(1, 2)) if mask is None else (err * weight).sum(dim=(1, 2))
            (g,) = torch.autograd.grad(mse.sum(), z, create_graph=create_graph)
            z = z - model.inner_lr * g
    z = z.to(home)
    return z if outer_grad else z.detach()


def meta_train(
    model: ModulatedSiren,
    coords: Tensor,
    targets: Tensor,
    config: MetaConfig = MetaConfig(),
    *,
    decode: Decode | None = None,
) -> MetaHistory:
    """Meta-learn ``model`` (in place) on ``targets`` ``[N, P, c]`` at ``coords`` ``[P, d_in]``,
    on the model's device (each batch is moved there; the batch order is drawn on the CPU, so
    it is the same on every device). With ``config.points_per_step`` each step sees a random
    subset of the coordinates (the same for the batch): rays of NeRF views, say."""
    _check(model, coords, targets, decode)
    decode = decode or direct
    n, p, device = targets.shape[0], targets.shape[1], model_device(model)
    coords = coords.to(device)
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses: list[float] = []
    psnrs: list[float] = []
    bar = tqdm(range(config.steps), disable=disabled(config.progress), desc="meta-train", leave=False)
    for _ in bar:
        idx = torch.randperm(n, generator=g)[: config.batch_size]
        xs, y = coords, targets[idx]
        if config.points_per_step and config.points_per_step < p:
            sub = torch.randperm(p, generator=g)[: config.points_per_step]
            xs, y = coords[sub.to(device)], y[:, sub]
        y = y.to(device)
        z = fit_latents(model, xs, y, config.inner_steps, create_graph=not config.first_order, decode=decode)
        pred = decode(model, z, xs)
        loss = (pred - y).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        psnrs.append(float(psnr(pred.detach(), y).mean()))
        bar.set_postfix(psnr=f"{psnrs[-1]:.2f}")
    return MetaHistory(losses, psnrs)


def encode(
    model: ModulatedSiren,
    signals: Any,
    steps: int = 3,
    *,
    coords: Tensor | None = None,
    batch_size: int = 256,
    decode: Decode | None = None,
) -> Tensor:
    """Latents ``[N, d]`` of new signals, the model frozen.

    ``signals``: a signal dataset (anything with ``coordinates()`` and ``targets()``, e.g.
    `SignalSet` or `ImageDataset`) or a tensor ``[N, P, c]`` in [0, 1] with ``coords``
    ``[P, d_in]``. Runs in chunks of ``batch_size`` signals on the model's device; each
    signal's latent depends on that signal only. The latents come back on the signals' device.
    """
    if isinstance(signals, Tensor):
        if coords is None:
            raise ValueError("encoding a tensor of signals needs coords [P, d_in]")
        targets = signals
    else:
        coords, targets = signals.coordinates(), signals.targets()
    dtype, home, device = model.weights[0].dtype, targets.device, model_device(model)
    coords, targets = coords.to(dtype), targets.to(dtype)
    _check(model, coords, targets, decode)
    coords = coords.to(device)
    out = []
    for start in range(0, targets.shape[0], batch_size):
        z = fit_latents(model, coords, targets[start : start + batch_size].to(device), steps, decode=decode)
        out.append(z.detach().to(home))
    if not out:
        return torch.zeros(0, model.latent_dim, dtype=dtype, device=home)
    return torch.cat(out)


@torch.no_grad()
def reconstruct(model: ModulatedSiren, latents: Tensor, coords: Tensor, batch_size: int = 256,
                decode: Decode | None = None) -> Tensor:
    """Signal values in [0, 1] (clamped): latents ``[N, d]``, coords ``[P, d_in]`` -> ``[N, P, c]``,
    computed on the model's device, returned on the latents' device."""
    decode = decode or direct
    home, device = latents.device, model_device(model)
    coords = coords.to(device)
    parts = [decode(model, latents[s : s + batch_size].to(device), coords).clamp(0.0, 1.0).to(home)
             for s in range(0, latents.shape[0], batch_size)]
    if parts:
        return torch.cat(parts)
    return torch.zeros(0, coords.shape[0], model.config.out_features, device=home)


__all__ = ["Decode", "MetaConfig", "MetaHistory", "direct", "encode", "fit_latents", "meta_train", "model_device",
           "reconstruct"]
