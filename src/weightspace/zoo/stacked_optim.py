"""Optimisers over stacked parameters ``[B, ...]``: each network its own optimiser, learning
rate and weight decay.

Adam, SGD with momentum and RMSprop follow PyTorch's formulas (``torch.optim``, L2 weight
decay added to the gradient), so a population step matches ``B`` separate ``torch.optim``
steps to float rounding. Networks with different optimisers share one stack: every element
computes each optimiser's candidate update and keeps its own network's (a select, exact),
which on a memory-bound CPU loop costs little next to a second pass over the parameters.

Why a compiled update: a population's parameters are stacked into tensors of several MB
(64 MLPs of 25k parameters: 6.4 MB per tensor), so every elementwise pass of an eager
update streams them from memory, and an eager Adam makes about ten such passes plus
temporaries, and the divergence check four more, while one network's parameters stay in
cache in a one-by-one loop. On CPU the whole update and the per-network finiteness check
are therefore one `torch.compile`d function: Inductor fuses it into one loop per tensor
that reads parameter, gradient and state once and writes them once. Where compiling is
impossible (no C++ compiler), or switched off with ``WEIGHTSPACE_COMPILE=0``, or on other
devices, the same arithmetic runs eagerly.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from weightspace._compile import compile_kernel

ADAM_BETAS, EPS, SGD_MOMENTUM, RMSPROP_ALPHA = (0.9, 0.999), 1e-8, 0.9, 0.99
KINDS = ("adam", "sgd", "rmsprop")


def _per_net(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def _update(params: list[Tensor], grads: list[Tensor], state: list[list[Tensor]], code: Tensor, wd: Tensor,
            lr_sgd: Tensor, step_size: Tensor, root_scale: Tensor) -> Tensor:
    """One step in place on ``params`` and ``state`` (two buffers per parameter: Adam's moments;
    SGD's momentum in the first, RMSprop's square average in the second). ``code [B]``: the
    network's optimiser as its index in `KINDS`; per network ``[B]``: ``wd``, the learning
    rate of SGD networks ``lr_sgd``, the step size of Adam / RMSprop networks (Adam's includes
    its first bias correction) and the divisor of their root mean square (Adam's second bias
    correction, 1 for RMSprop); all step-dependent scalars are computed outside, per step, so
    that the compiled loop does no scalar work per element. Every network's update takes only
    its own optimiser's arithmetic (selected, not blended). Returns ``[B]`` bool: all of the
    network's parameters are finite after the step."""
    finite = torch.ones(params[0].shape[0], dtype=torch.bool, device=params[0].device)
    for p, g, (m, v) in zip(params, grads, state):
        c = _per_net(code, p)
        adam, sgd = c == 0, c == 1
        g = g + _per_net(wd, p) * p
        # torch.optim's formulas; SGD's buffer starts at 0, so its first step sets it to g as torch.optim.SGD does
        m_new = torch.where(adam, torch.lerp(m, g, 1 - ADAM_BETAS[0]), torch.where(sgd, m * SGD_MOMENTUM + g, m))
        beta = torch.where(adam, ADAM_BETAS[1], RMSPROP_ALPHA)
        v_new = torch.where(sgd, v, v * beta + g * g * (1 - beta))
        denom = v_new.sqrt() / _per_net(root_scale, p) + EPS
        step = torch.where(sgd, _per_net(lr_sgd, p) * m_new,
                           torch.where(adam, m_new, g) / denom * _per_net(step_size, p))
        m.copy_(m_new)
        v.copy_(v_new)
        p.sub_(step)
        finite &= torch.isfinite(p).flatten(1).all(1)
    return finite


_compiled: object = None  # the compiled `_update`, or False once compiling has failed


def _use_compiled(params: Sequence[Tensor]) -> bool:
    return (params[0].device.type == "cpu" and params[0].shape[0] > 1  # compiled code specialises size 1
            and os.environ.get("WEIGHTSPACE_COMPILE", "1") != "0")


class StackedOptimizer:
    """Adam / SGD with momentum / RMSprop on stacked parameters ``[B, ...]``, each network with
    its own optimiser (``kinds``: one name for all, or one per network), ``lr`` and
    ``weight_decay`` (``[B]`` tensors; an ``lr`` of 0 freezes a network)."""

    def __init__(self, kinds: str | Sequence[str], params: Sequence[Tensor], lr: Tensor, weight_decay: Tensor) -> None:
        b = params[0].shape[0]
        kinds = [kinds] * b if isinstance(kinds, str) else list(kinds)
        if len(kinds) != b:
            raise ValueError(f"{len(kinds)} optimiser names for {b} networks")
        if unknown := sorted(set(kinds) - set(KINDS)):
            raise ValueError(f"unknown optimizer {unknown[0]!r}; known: {KINDS}")
        self.code = torch.tensor([KINDS.index(k) for k in kinds], dtype=torch.int8, device=params[0].device)
        self.lr, self.wd, self.t = lr, weight_decay, 0
        self.state = [[torch.zeros_like(p), torch.zeros_like(p)] for p in params]

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor], active: Tensor | None = None) -> Tensor:
        """Update ``params`` in place from ``grads``; networks where ``active [B]`` is 0 keep
        their parameters. Returns ``[B]`` bool: the network's parameters are all finite."""
        global _compiled
        self.t += 1
        lr = self.lr if active is None else self.lr * active
        adam = self.code == 0
        bc1, bc2 = 1 - ADAM_BETAS[0] ** self.t, 1 - ADAM_BETAS[1] ** self.t
        step_size = torch.where(adam, lr / bc1, lr)
        root_scale = torch.where(adam, math.sqrt(bc2), 1.0)
        args = ([p.detach() for p in params], list(grads), self.state, self.code, self.wd, lr, step_size, root_scale)
        if _use_compiled(params) and _compiled is not False:
            if _compiled is not None:
                return _compiled(*args)
            fn = compile_kernel(_update)
            try:  # compiling happens before any tensor is touched: a failure leaves the state as it was
                out = fn(*args)
            except Exception as e:  # noqa: BLE001 -- no compiler, unsupported platform: stay correct, only slower
                warnings.warn(f"torch.compile of the stacked optimiser update failed ({type(e).__name__}: {e}); "
                              "running it eagerly", stacklevel=2)
                _compiled = False
            else:
                _compiled = fn
                return out
        return _update(*args)


__all__ = ["ADAM_BETAS", "EPS", "KINDS", "RMSPROP_ALPHA", "SGD_MOMENTUM", "StackedOptimizer"]
