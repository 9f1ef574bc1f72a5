"""Fitting many INRs at once (building a zoo from them: `weightspace.zoo.build`).

All networks of a batch are one set of stacked tensors: one batched matmul per layer per
step, an elementwise Adam over the stack (so each network keeps its own moments, exactly
as if it had its own optimiser), and per-network early stopping that removes finished
networks from the batch. No Python loop runs over networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from weightspace._malloc import keep_freed_memory
from weightspace.core.functional import forward
from weightspace.core.weights import Weights
from weightspace.inr.siren import SirenRecipe
from weightspace.zoo import siren_grad

# Activations of a fitting step are [n, P, width] float32 tensors, several allocated per
# step. Measured on a 2-core CPU (28x28 images, width 32) before `keep_freed_memory`:
# 64-128 networks per batch fit at ~7.5k INR-steps/s, 167-334 at ~4k (glibc returned
# blocks near its 32 MB mmap threshold to the OS and faulted them back in every step), so
# batches are sized to keep one activation tensor near 8 MB, well under that threshold.
_ACTIVATION_BUDGET_BYTES = 8 * 2**20


@dataclass(frozen=True)
class FitResult:
    weights: Weights  # [n, 1, ...] fitted networks
    psnr: Tensor  # [n] dB of the returned weights, in the recipe's target range
    steps: Tensor  # [n] optimiser steps taken (< recipe.steps where stopped early)


class _StackedAdam:
    """Adam (Kingma & Ba; PyTorch's defaults) over stacked per-network parameters.

    Adam is elementwise, so one state tensor per stacked parameter is exactly one Adam per
    network. The update is `torch.optim.Adam`'s fused kernel (one in-place pass per
    parameter; on CPU and CUDA in float32/float64), its foreach form elsewhere. `keep` drops
    finished networks from parameters and state alike.
    """

    def __init__(self, params: list[Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = params
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
        self._opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=fused, foreach=None if fused else True)

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            # the fused kernel walks a gradient in its parameter's memory order: a strided view
            # (the hand-written step's first-layer gradient is a transpose) would be misread
            if p.grad is not None and p.grad.stride() != p.stride():
                p.grad = p.grad.contiguous()
        self._opt.step()
        for p in self.params:
            p.grad = None

    def keep(self, mask: Tensor) -> None:
        old, self.params = self.params, [p.detach()[mask].requires_grad_() for p in self.params]
        opt = torch.optim.Adam(self.params, **self._opt.defaults)
        for p_old, p_new in zip(old, self.params):
            if st := self._opt.state.get(p_old):
                opt.state[p_new] = {"step": st["step"].clone(), "exp_avg": st["exp_avg"][mask],
                                    "exp_avg_sq": st["exp_avg_sq"][mask]}
        self._opt = opt


# A GPU wants large batches to fill it; ~10 activation tensors of this size live per step.
_GPU_ACTIVATION_BUDGET_BYTES = 512 * 2**20


def auto_batch_size(num_points: int, width: int, device: str | torch.device = "cpu") -> int:
    """Networks per batch: one activation tensor ``[n, P, width]`` float32 near 8 MB on a
    CPU (see above), near 512 MB on a GPU."""
    budget = _GPU_ACTIVATION_BUDGET_BYTES if torch.device(device).type == "cuda" else _ACTIVATION_BUDGET_BYTES
    return max(1, budget // (4 * num_points * max(width, 1)))


def fit_inrs(
    coords: Tensor,
    targets: Tensor,
    recipe: SirenRecipe,
    seeds: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    use_autograd: bool = False,
) -> FitResult:
    """Fit one INR per signal.

    coords: ``[P, d]`` in ``[-1, 1]``; targets: ``[n, P, c]`` signal values in ``[0, 1]``
    (mapped to the recipe's target range here); seeds: ``n`` initialisation seeds.
    Sine MLPs (both published recipes) use the hand-written gradient of
    `weightspace.zoo.siren_grad` unless ``use_autograd`` (the reference path, kept for tests
    and for other specs).
    """
    n, _, c = targets.shape
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} signals")
    if not torch.isfinite(targets).all():
        raise ValueError("targets hold NaN or infinite values")
    spec = recipe.spec(coords.shape[1], c)
    if torch.device(device).type == "cpu":
        keep_freed_memory()  # each step frees and re-allocates MB-sized activations: keep them mapped
    init = recipe.init(spec, seeds).to(device)
    coords = coords.to(device, torch.float32)
    y = recipe.encode_targets(targets.to(device, torch.float32)) - recipe.output_offset

    params = [t[:, 0].clone().requires_grad_() for t in init.tensors()]
    opt = _StackedAdam(params, recipe.lr)
    active = torch.arange(n, device=device)  # original index of each row still training
    final = [t[:, 0].clone() for t in init.tensors()]
    psnr = torch.zeros(n, device=device)
    steps = torch.full((n,), recipe.steps, device=device)
    # both published recipes take the hand-written gradient; other specs take autograd
    by_hand = siren_grad.SirenMSEGrad(spec, coords, n) if not use_autograd and siren_grad.supports(spec) else None
    bar = tqdm(total=recipe.steps, disable=not progress, leave=False, desc="fit")
    for step in range(recipe.steps + 1):
        if by_hand is not None:
            mse = by_hand(opt.params, y)  # also sets each parameter's .grad
        else:
            mse = (forward(Weights.from_tensors(spec, opt.params), coords) - y).square().mean(dim=(1, 2))  # [n_active]
        cur = recipe.psnr(mse.detach())
        done = cur >= recipe.early_stop_psnr if recipe.early_stop_psnr is not None else torch.zeros_like(cur, dtype=torch.bool)
        if step == recipe.steps:
            done = torch.ones_like(done)
        if done.any():
            idx = active[done]
            for f, q in zip(final, opt.params):
                f[idx] = q.detach()[done]
            psnr[idx], steps[idx] = cur[done], step
            if done.all():
                break
        if by_hand is None:
            mse.sum().backward()  # a sum keeps each network's gradient its own
        opt.step()
        if done.any():  # finished networks leave the batch (after the step: autograd saw them)
            opt.keep(~done)
            active, y = active[~done], y[~done]
        bar.update(1)
    bar.close()
    return FitResult(Weights.from_tensors(spec, final).detach(), psnr.cpu(), steps.cpu())
