"""Training a population of classifiers at once: stacked parameters, one grouped forward.

All networks of a call share a spec up to the hidden activation; they are sorted by
activation and stacked along a leading axis (``[B, out, in, *kernel]``), every step feeds
each network its own minibatch (``x [B, b, ...]``) through the grouped convolution /
batched matmul of `weightspace.core.functional`, each block of networks goes through its own
activation, and one optimiser update (`weightspace.zoo.stacked_optim`) runs on the stacked
tensors with per-network optimiser, learning rate and weight decay, next to per-network
dropout rates. Small CNNs on a CPU are stacked 16 at a time (see `CPU_CONV_STACK`).

A network's training depends only on its `RunConfig` (init seed, subset, data order),
never on which networks it was stacked with, except for the dropout masks, which come
from the stack's generator. `train_sequential` trains one run the plain PyTorch way
(``nn.Module`` + ``torch.optim``) from the same initialisation and batches: the tests
check that both give the same weights, and the throughput benchmark races them.

Divergence: a network whose loss or parameters become non-finite is frozen at its
parameters from the start of that epoch (learning rate 0 from then on) and flagged
``diverged``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.core.activations import get_activation
from weightspace.core.functional import _conv, _linear, forward
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.zoo.search_space import RunConfig, ZooRecipe, spec_with_activation
from weightspace.zoo.stacked_optim import ADAM_BETAS, EPS, RMSPROP_ALPHA, SGD_MOMENTUM, StackedOptimizer


@dataclass(frozen=True, eq=False)
class ClassifierData:
    """Inputs as the networks take them: ``[N, C, H, W]`` (conv) or ``[N, F]`` (MLP);
    labels int64 ``[N]``."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    name: str = ""

    def to(self, device: str | torch.device) -> ClassifierData:
        return ClassifierData(*(t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y)),
                              self.num_classes, self.name)


# ---------------------------------------------------------------------- what every run shares
@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def init_network(spec: NetworkSpec, init: str, seed: int) -> nn.Sequential:
    """A fresh network of ``spec`` initialised by scheme ``init`` from ``seed``.

    ``default`` is PyTorch's layer default; the others draw the weights with the named
    ``torch.nn.init`` function and set biases to zero.
    """
    with _seeded(seed):
        module = spec.build_module()
        if init != "default":
            fn = {
                "xavier_uniform": nn.init.xavier_uniform_,
                "xavier_normal": nn.init.xavier_normal_,
                "kaiming_normal": lambda t: nn.init.kaiming_normal_(t, nonlinearity="relu"),
                "orthogonal": nn.init.orthogonal_,
            }[init]
            for w, b in spec.parameters_of(module):
                with torch.no_grad():
                    fn(w)
                    if b is not None:
                        b.zero_()
    return module


def train_subset(n_train: int, fraction: float, seed: int) -> Tensor:
    """The training images of a run: ``round(fraction * n_train)`` (at least 1) positions."""
    k = max(1, round(fraction * n_train))
    return torch.from_numpy(np.random.default_rng(seed).permutation(n_train)[:k].copy())


def epoch_batches(subset: Tensor, steps: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """``[steps, batch_size]`` positions: shuffled passes over ``subset``, cycled as needed."""
    need, parts = steps * batch_size, []
    while sum(len(p) for p in parts) < need:
        parts.append(subset[torch.randperm(len(subset), generator=generator)])
    return torch.cat(parts)[:need].reshape(steps, batch_size)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)


def _data_generator(run: RunConfig) -> torch.Generator:
    return torch.Generator().manual_seed(run.seed + 1)  # not the init stream


# ---------------------------------------------------------------------- the plain optimisers
def torch_optimizer(run: RunConfig, params) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimiser that `StackedOptimizer` vectorises (for plain loops)."""
    if run.optimizer == "adam":
        return torch.optim.Adam(params, lr=run.lr, betas=ADAM_BETAS, eps=EPS, weight_decay=run.weight_decay)
    if run.optimizer == "sgd":
        return torch.optim.SGD(params, lr=run.lr, momentum=SGD_MOMENTUM, weight_decay=run.weight_decay)
    return torch.optim.RMSprop(params, lr=run.lr, alpha=RMSPROP_ALPHA, eps=EPS, weight_decay=run.weight_decay)


# ---------------------------------------------------------------------- forward with dropout
def dropout_forward(spec: NetworkSpec, params: Sequence[Tensor], x: Tensor, rate: Tensor | None,
                    generator: torch.Generator | None = None,
                    activations: Sequence[tuple[str, int]] | None = None) -> Tensor:
    """`weightspace.core.functional.forward` of stacked raw parameters (``[B, out, in, ...]``,
    weight then bias per layer, as `Weights.tensors` without the C axis), with per-network
    dropout ``rate [B]`` (rounded to multiples of 1/256) after every hidden layer's activation. ``x``: ``[B, n, ...]``;
    returns ``[B, n, out]``. ``rate=None`` is exactly the functional forward.

    ``activations``: the hidden layers' activation per consecutive block of networks, as
    ``(name, count)`` pairs summing to ``B`` (networks sorted by activation); by default
    ``spec``'s activations for all.
    """
    dropout = rate is not None and bool((rate > 0).any())
    if not dropout and activations is None:
        return forward(Weights.from_tensors(spec, params), x)
    b, h, k = x.shape[0], x, 0
    if dropout:
        # Masks from 8-bit random numbers (drop where r < d, d = round(256 * rate)): a quarter of
        # the random bits and passes of float masks, which cost as much as the convolutions on a
        # CPU. Rates are thereby rounded to multiples of 1/256; the scale 256 / (256 - d) keeps
        # the expected activation exact.
        drop = (rate * 256).round().clamp(0, 255)
        scale = 256.0 / (256.0 - drop)
        drop = drop.to(torch.uint8)
    for i, layer in enumerate(spec.layers):
        w = params[k]
        bias = params[k + 1] if layer.bias else None
        k += 1 + layer.bias
        if layer.kind == "linear":
            h = _linear_t(h, w, bias, i) if h.dim() == 3 else _linear(h, w, bias, i)
        else:
            h = _conv(h, w, bias, layer.stride, layer.padding, b, i)
        if i < spec.num_layers - 1 and activations is not None:
            h = _activate_blocks(h, activations, layer.omega)
        elif layer.activation != "identity":
            h = get_activation(layer.activation).fn(h, layer.omega)
        if dropout and i < spec.num_layers - 1:
            view = (-1, *([1] * (h.dim() - 1)))
            r = _random_bytes(h.shape, generator, h.device)
            h = h * (r >= drop.view(view)).to(h.dtype).mul_(scale.view(view))
        if spec.pool != "none" and i == spec.num_conv - 1:
            h = h.mean(dim=(-2, -1)) if spec.pool == "avg" else h.amax(dim=(-2, -1))
    return h


def _linear_t(h: Tensor, w: Tensor, bias: Tensor | None, i: int) -> Tensor:
    """`_linear` computed as ``(W h^T + b)^T`` (h: ``[B, N, in]``, w: ``[B, out, in]``; returns a
    ``[B, N, out]`` view of a ``[B, out, N]`` tensor): autograd then hands back the weight's
    gradient in the weight's own layout, not as a transposed view, which the optimiser's loop
    would read with a stride (measured: 3.7 vs 1.8 ms per step for 64 stacked MLPs)."""
    if h.shape[-1] != w.shape[-1]:
        raise ValueError(f"layer {i}: input has {h.shape[-1]} features, the layer takes {w.shape[-1]}")
    h_t = h.transpose(1, 2)
    out = torch.bmm(w, h_t) if bias is None else torch.baddbmm(bias.unsqueeze(2), w, h_t)
    return out.transpose(1, 2)


def _activate_blocks(h: Tensor, blocks: Sequence[tuple[str, int]], omega: float) -> Tensor:
    """Each block of networks (``h``'s leading axis) through its own activation."""
    if len(blocks) == 1:
        return get_activation(blocks[0][0]).fn(h, omega)
    parts, lo = [], 0
    for name, count in blocks:
        parts.append(get_activation(name).fn(h[lo:lo + count], omega))
        lo += count
    return torch.cat(parts)


def _random_bytes(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform random uint8 of ``shape``, drawn as int32 (4 bytes per draw)."""
    n = math.prod(shape)
    r = torch.randint(-(2**31), 2**31 - 1, ((n + 3) // 4,), dtype=torch.int32, generator=generator, device=device)
    return r.view(torch.uint8)[:n].view(shape)


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_population(weights: Weights, x: Tensor, y: Tensor, *, max_floats: int = 2 * 10**7) -> tuple[Tensor, Tensor]:
    """(correct ``[B, N]`` bool, cross-entropy ``[B, N]``) of every network on all of ``x``.

    Convolutional networks on a CPU are evaluated one network at a time (an ordinary
    convolution over all the images): measured here (one thread, 64 small CNNs, 500 MNIST
    images) 274-291 ms that way against 363-539 ms as one grouped convolution, which suits
    training's small per-network batches but not evaluation's one large shared batch.
    """
    if len(weights) > 1 and _one_at_a_time(weights, x):
        parts = [evaluate_population(weights[i : i + 1], x, y, max_floats=max_floats) for i in range(len(weights))]
        return torch.cat([c for c, _ in parts]), torch.cat([loss for _, loss in parts])
    width = max(layer.out_features for layer in weights.spec.layers)
    per_item = width * (int(np.prod(x.shape[2:])) if x.dim() == 4 else 1)
    chunk = max(8, max_floats // max(1, len(weights) * per_item))
    correct, losses = [], []
    for lo in range(0, len(x), chunk):
        logits = forward(weights, x[lo:lo + chunk])  # [B, n, classes]
        target = y[lo:lo + chunk].expand(len(weights), -1)
        correct.append(logits.argmax(-1) == target)
        losses.append(F.cross_entropy(logits.transpose(1, 2), target, reduction="none"))
    return torch.cat(correct, 1), torch.cat(losses, 1)


def _one_at_a_time(weights: Weights, x: Tensor) -> bool:
    """Whether `evaluate_population` runs these networks one by one (see there)."""
    return len(weights) == 1 or bool(weights.spec.num_conv and x.device.type == "cpu")


def _metrics(weights: Weights, data: ClassifierData, masks: Tensor) -> dict[str, Tensor]:
    """Train metrics over each run's own subset (``masks [B, N_train]``), test over all.

    Networks evaluated one at a time see only their own training images; stacked networks
    share one input and are masked afterwards.
    """
    c_te, l_te = evaluate_population(weights, data.test_x, data.test_y)
    if _one_at_a_time(weights, data.train_x):
        acc, loss = [], []
        for j in range(len(weights)):
            sub = masks[j].nonzero().squeeze(1)
            c, l_ = evaluate_population(weights[j : j + 1], data.train_x[sub], data.train_y[sub])
            acc.append(c.float().mean(1))
            loss.append(l_.mean(1))
        train_acc, train_loss = torch.cat(acc), torch.cat(loss)
    else:
        c_tr, l_tr = evaluate_population(weights, data.train_x, data.train_y)
        m = masks.float()
        train_acc = (c_tr.float() * m).sum(1) / m.sum(1)
        train_loss = (l_tr * m).sum(1) / m.sum(1)
    test_acc = c_te.float().mean(1)
    return {
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "train_loss": train_loss,
        "test_loss": l_te.mean(1),
        "gap": train_acc - test_acc,
    }


# ---------------------------------------------------------------------- the population trainer
@dataclass
class PopulationResult:
    """``weights``: run-major, ``[len(runs) * K]`` (run ``r`` checkpoint ``k`` at ``r*K + k``);
    ``columns``: the zoo table columns, one value per network; ``seconds``: wall time."""

    weights: Weights
    columns: dict[str, list[Any]]
    seconds: float


# Networks per stack for convolutional specs on a CPU. oneDNN's grouped convolution (one group
# per network) costs more per network as the groups grow: forward + backward of the small CNN
# at batch 32, one thread, measured 0.87 ms per network in stacks of 8 or 16 and 1.0-1.5 ms
# in stacks of 64. MLPs (batched matmuls) and GPUs stack everything.
CPU_CONV_STACK = 16


def train_population(base_spec: NetworkSpec, runs: Sequence[RunConfig], data: ClassifierData,
                     recipe: ZooRecipe, *, device: str | torch.device = "cpu", dropout_seed: int = 0,
                     max_stack: int | None = None, on_step: Callable[[int], None] | None = None) -> PopulationResult:
    """Train ``runs`` (any mix of activations and optimisers, stacked together) and return
    every checkpoint of ``recipe.checkpoints``. ``max_stack``: networks trained as one stack
    (default: all, except `CPU_CONV_STACK` for convolutional specs on a CPU). ``on_step(k)``
    after every optimiser step of a stack of ``k`` networks (a progress bar)."""
    start = time.perf_counter()
    if max_stack is None:
        max_stack = CPU_CONV_STACK if base_spec.num_conv and torch.device(device).type == "cpu" else len(runs)
    if max_stack < 1:
        raise ValueError(f"max_stack must be at least 1, got {max_stack}")
    # sorted by activation, so that each activation runs on one block of networks per stack
    order = sorted(range(len(runs)), key=lambda i: runs[i].activation)
    k = len(recipe.checkpoints)
    slots: list[Weights | None] = [None] * (len(runs) * k)
    per_run: list[dict[int, dict[str, Any]]] = [{} for _ in runs]
    for lo in range(0, len(order), max_stack):
        members = order[lo:lo + max_stack]
        blocks = [(act, len(list(group))) for act, group in groupby(runs[i].activation for i in members)]
        ckpts = _train_stack(base_spec, [runs[i] for i in members], blocks, data, recipe, device, dropout_seed + lo,
                             on_step)
        for j, i in enumerate(members):
            for c, (w, metrics, diverged) in enumerate(ckpts):
                wj = w[j].to("cpu")
                slots[i * k + c] = Weights(base_spec, wj.weights, wj.biases)  # one zoo spec; activation per row
                per_run[i][c] = {name: float(v[j]) for name, v in metrics.items()} | {"diverged": bool(diverged[j])}
    cols: dict[str, list[Any]] = {}
    for i, run in enumerate(runs):
        for c, epoch in enumerate(recipe.checkpoints):
            row = {**run.to_row(), "epoch": epoch, **per_run[i][c]}
            for name, v in row.items():
                cols.setdefault(name, []).append(v)
    weights = Weights.cat([w for w in slots if w is not None])
    return PopulationResult(weights, cols, time.perf_counter() - start)


def _train_stack(base_spec: NetworkSpec, runs: Sequence[RunConfig], blocks: Sequence[tuple[str, int]],
                 data: ClassifierData, recipe: ZooRecipe, device: str | torch.device,
                 dropout_seed: int, on_step: Callable[[int], None] | None = None,
                 ) -> list[tuple[Weights, dict[str, Tensor], Tensor]]:
    """All ``runs`` as one stack (sorted by activation; ``blocks``: ``(activation, count)``):
    ``[(weights, metrics, diverged)]`` per checkpoint, the weights under ``base_spec``."""
    data = data.to(device)
    n_train = len(data.train_y)
    init = Weights.from_modules(
        [init_network(spec_with_activation(base_spec, r.activation), r.init, r.seed) for r in runs], base_spec
    ).to(device)
    params = [t[:, 0].clone().requires_grad_() for t in init.tensors()]
    b = len(runs)
    lr = torch.tensor([r.lr for r in runs], device=device)
    wd = torch.tensor([r.weight_decay for r in runs], device=device)
    rate = torch.tensor([r.dropout for r in runs], device=device)
    opt = StackedOptimizer([r.optimizer for r in runs], params, lr, wd)
    subsets = [train_subset(n_train, r.train_fraction, r.seed) for r in runs]
    masks = torch.zeros(b, n_train, dtype=torch.bool)
    for j, s in enumerate(subsets):
        masks[j, s] = True
    masks = masks.to(device)
    gens = [_data_generator(r) for r in runs]
    drop_gen = torch.Generator(device=device).manual_seed(dropout_seed)
    alive = torch.ones(b, dtype=torch.bool, device=device)
    steps = steps_per_epoch(n_train, recipe.batch_size)
    out = []

    def checkpoint() -> None:
        w = Weights.from_tensors(base_spec, [p.detach().clone() for p in params])
        out.append((w, _block_metrics(w, blocks, data, masks), ~alive.clone()))

    if 0 in recipe.checkpoints:
        checkpoint()
    for epoch in range(1, recipe.epochs + 1):
        order = torch.stack([epoch_batches(s, steps, recipe.batch_size, g) for s, g in zip(subsets, gens)]).to(device)
        safe = [p.detach().clone() for p in params]  # once per epoch: a per-step copy costs as much as a step
        for s in range(steps):
            idx = order[:, s]  # [B, batch]
            # index_select on flat positions: 0.30 vs 1.30 ms by advanced indexing (64 x 32 MNIST images, one thread)
            x = data.train_x.index_select(0, idx.flatten()).view(*idx.shape, *data.train_x.shape[1:])
            y = data.train_y.index_select(0, idx.flatten()).view(idx.shape)
            logits = dropout_forward(base_spec, params, x, rate, drop_gen, blocks)
            loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)  # [B]
            ok = alive & torch.isfinite(loss)
            grads = torch.autograd.grad(torch.where(ok, loss, 0.0).sum(), params)
            if not bool(ok.all()):
                grads = [torch.nan_to_num(g) for g in grads]
            finite = opt.step(params, grads, ok.float())
            if on_step is not None:
                on_step(len(runs))
            bad = ~(ok & finite) & alive
            if bool(bad.any()):  # freeze diverged networks at their parameters from the start of this epoch
                with torch.no_grad():
                    for p, p0 in zip(params, safe):
                        p[bad] = p0[bad]
                alive &= ~bad
                opt.lr = opt.lr * alive
        if epoch in recipe.checkpoints:
            checkpoint()
    return out


def _block_metrics(weights: Weights, blocks: Sequence[tuple[str, int]], data: ClassifierData,
                   masks: Tensor) -> dict[str, Tensor]:
    """`_metrics` of each block of networks under its own activation, concatenated."""
    parts, lo = [], 0
    for act, count in blocks:
        w = weights[lo:lo + count]
        parts.append(_metrics(Weights(spec_with_activation(weights.spec, act), w.weights, w.biases), data,
                              masks[lo:lo + count]))
        lo += count
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


# ---------------------------------------------------------------------- the plain reference
def train_sequential(base_spec: NetworkSpec, run: RunConfig, data: ClassifierData, recipe: ZooRecipe, *,
                     device: str | torch.device = "cpu") -> tuple[Weights, dict[str, list[float]]]:
    """One run the plain PyTorch way: ``nn.Sequential`` (+ ``nn.Dropout``), ``torch.optim``,
    the run's own batches; (checkpoint weights ``[K]`` on ``device``, metrics per checkpoint).
    The reference that `train_population` must match, and the baseline of its benchmark."""
    spec = spec_with_activation(base_spec, run.activation)
    module = init_network(spec, run.init, run.seed).to(device)  # initialised on the CPU, as the population's
    data = data.to(device)
    # nn.Dropout after each hidden layer's activation (where `dropout_forward` applies it)
    after = {idx + (layer.activation != "identity") for idx, layer in zip(spec._module_indices(), spec.layers[:-1])}
    layers: list[nn.Module] = []
    for j, m in enumerate(module):
        layers += [m, nn.Dropout(run.dropout)] if j in after else [m]
    net = nn.Sequential(*layers)
    opt = torch_optimizer(run, net.parameters())
    n_train = len(data.train_y)
    subset, gen = train_subset(n_train, run.train_fraction, run.seed), _data_generator(run)
    mask = torch.zeros(1, n_train, dtype=torch.bool)
    mask[0, subset] = True
    mask = mask.to(device)
    steps = steps_per_epoch(n_train, recipe.batch_size)
    ckpts, metrics = [], {}

    def checkpoint() -> None:
        w = Weights.from_modules([module], spec)
        ckpts.append(w)
        for name, v in _metrics(w, data, mask).items():
            metrics.setdefault(name, []).append(float(v[0]))

    if 0 in recipe.checkpoints:
        checkpoint()
    for epoch in range(1, recipe.epochs + 1):
        net.train()
        for idx in epoch_batches(subset, steps, recipe.batch_size, gen):
            idx = idx.to(device)
            opt.zero_grad()
            F.cross_entropy(net(data.train_x[idx]), data.train_y[idx]).backward()
            opt.step()
        if epoch in recipe.checkpoints:
            checkpoint()
    w = Weights.cat(ckpts)
    return Weights(base_spec, w.weights, w.biases), metrics


__all__ = [
    "ClassifierData",
    "PopulationResult",
    "StackedOptimizer",
    "dropout_forward",
    "epoch_batches",
    "evaluate_population",
    "init_network",
    "torch_optimizer",
    "train_population",
    "train_sequential",
    "train_subset",
]
