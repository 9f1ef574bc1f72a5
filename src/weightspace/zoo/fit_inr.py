"""Fitting many INRs at once (building a zoo from them: `weightspace.zoo.build`).

All networks of a batch are one set of stacked tensors: one batched matmul per layer per
step, an elementwise Adam over the stack (so each network keeps its own moments, exactly
as if it had its own optimiser), and per-network early stopping that removes finished
networks from the batch. No Python loop runs over networks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.optim.adam import adam as functional_adam
from tqdm.auto import tqdm

from weightspace._malloc import keep_freed_memory
from weightspace._progress import disabled
from weightspace.core.functional import forward
from weightspace.core.weights import Weights
from weightspace.inr.siren import SirenRecipe
from weightspace.zoo import siren_grad

# Activations of a fitting step on the compiled PyTorch path are [n, P, width] float32 tensors,
# several allocated per step. On a 2-core CPU, glibc returned blocks near its 32 MB mmap
# threshold to the OS and faulted them back in every step (167-334 networks of 28x28 per batch
# fit at ~4k INR-steps/s, 64-128 at ~7.5k, before `keep_freed_memory`); that path's rate was
# then flat within noise from 32 to 128 networks. The native kernel (`siren_native`) keeps no
# such tensors: its recorded sweep rises to 22.5k INR-steps/s at 52 networks and 23.9k at 128
# (BENCHMARKS.md, fit_inrs). 52 networks of 28x28 (one activation tensor near 5 MB) serves both.
_ACTIVATION_BUDGET_BYTES = 5 * 2**20


@dataclass(frozen=True)
class FitResult:
    weights: Weights  # [n, 1, ...] fitted networks
    psnr: Tensor  # [n] dB of the returned weights, in the recipe's target range
    steps: Tensor  # [n] optimiser steps taken (< recipe.steps where stopped early)


class _StackedAdam:
    """Adam (Kingma & Ba; PyTorch's defaults) over stacked per-network parameters.

    Adam is elementwise, so one state tensor per stacked parameter is exactly one Adam per
    network. The update is `torch.optim.adam.adam`, PyTorch's functional Adam, with its fused
    kernel (one in-place pass per parameter; on CPU and CUDA in float32/float64), its foreach
    form elsewhere: the arithmetic of `torch.optim.Adam`, without the optimiser object's
    per-step bookkeeping (hooks, state lookups: 0.2-0.3 ms a step of profiler self time on
    the 2-core CPU, 5-8% of a 48-network step). `keep` drops finished networks from parameters and
    state alike.
    """

    def __init__(self, params: list[Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        # one step counter per parameter, as torch.optim.Adam keeps them (float32 on the CPU for the fused kernel)
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device if self.fused else "cpu") for p in params]

    @torch.no_grad()
    def step(self) -> None:
        # the fused kernel walks a gradient in its parameter's memory order: a strided view
        # (the hand-written step's first-layer gradient is a transpose) would be misread
        grads = [p.grad if p.grad.stride() == p.stride() else p.grad.contiguous() for p in self.params]
        functional_adam(
            [p.detach() for p in self.params], grads, self.exp_avg, self.exp_avg_sq, [], self.steps,
            foreach=not self.fused, fused=self.fused,
            amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=0.0, eps=self.eps,
            maximize=False,
        )
        for p in self.params:
            p.grad = None

    def keep(self, mask: Tensor) -> None:
        self.params = [p.detach()[mask].requires_grad_() for p in self.params]
        self.exp_avg = [m[mask] for m in self.exp_avg]
        self.exp_avg_sq = [v[mask] for v in self.exp_avg_sq]


# A GPU wants large batches to fill it; ~10 activation tensors of this size live per step.
_GPU_ACTIVATION_BUDGET_BYTES = 512 * 2**20


def auto_batch_size(num_points: int, width: int, device: str | torch.device = "cpu") -> int:
    """Networks per batch: one activation tensor ``[n, P, width]`` float32 near 5 MB on a
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
    on_step: Callable[[int], None] | None = None,
) -> FitResult:
    """Fit one INR per signal.

    coords: ``[P, d]`` in ``[-1, 1]``; targets: ``[n, P, c]`` signal values in ``[0, 1]``
    (mapped to the recipe's target range here); seeds: ``n`` initialisation seeds.
    Sine MLPs (both published recipes) use the hand-written gradient of
    `weightspace.zoo.siren_grad` unless ``use_autograd`` (the reference path, kept for tests
    and for other specs). ``on_step(k)`` is called after every optimiser step with the number
    of networks that took it (fewer as networks stop early): how a caller's progress bar moves.
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
    bar = tqdm(total=recipe.steps, disable=disabled(progress), leave=False, desc="fit")
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
        if on_step is not None:
            on_step(len(active))
        if done.any():  # finished networks leave the batch (after the step: autograd saw them)
            opt.keep(~done)
            active, y = active[~done], y[~done]
        bar.update(1)
    bar.close()
    return FitResult(Weights.from_tensors(spec, final).detach(), psnr.cpu(), steps.cpu())
