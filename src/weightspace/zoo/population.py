"""Training a population of classifiers at once: stacked parameters, one grouped forward.

The ``B`` networks of a group share a spec, an activation and an optimiser kind; their
parameters are stacked along a leading axis (``[B, out, in, *kernel]``), every step feeds
each network its own minibatch (``x [B, b, ...]``) through the grouped convolution /
batched matmul of `weightspace.core.functional`, and the optimiser update runs on the
stacked tensors with per-network learning rate, weight decay and dropout rate.

A network's training depends only on its `RunConfig` (init seed, subset, data order),
never on which networks it was stacked with, except for the dropout masks, which come
from the group's generator. `train_sequential` trains one run the plain PyTorch way
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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

ADAM_BETAS, EPS, SGD_MOMENTUM, RMSPROP_ALPHA = (0.9, 0.999), 1e-8, 0.9, 0.99


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


# ---------------------------------------------------------------------- stacked optimisers
class StackedOptimizer:
    """Adam / SGD with momentum / RMSprop (PyTorch's formulas, L2 weight decay added to the
    gradient) on stacked parameters ``[B, ...]`` with per-network ``lr`` and ``weight_decay``."""

    def __init__(self, kind: str, params: Sequence[Tensor], lr: Tensor, weight_decay: Tensor) -> None:
        self.kind, self.lr, self.wd, self.t = kind, lr, weight_decay, 0
        self.state = [[torch.zeros_like(p) for _ in range(2 if kind == "adam" else 1)] for p in params]

    @staticmethod
    def _per_net(v: Tensor, like: Tensor) -> Tensor:
        return v.reshape(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor], active: Tensor) -> None:
        self.t += 1
        for p, g, st in zip(params, grads, self.state):
            lr = self._per_net(self.lr * active, p)
            g = torch.addcmul(g, self._per_net(self.wd, p), p)  # + L2 term, one pass
            # in-place temporaries: on small networks these passes over the stacked
            # parameters cost as much as the forward and backward
            if self.kind == "adam":
                m, v = st
                m.lerp_(g, 1 - ADAM_BETAS[0])
                v.mul_(ADAM_BETAS[1]).addcmul_(g, g, value=1 - ADAM_BETAS[1])
                bc1, bc2 = 1 - ADAM_BETAS[0] ** self.t, 1 - ADAM_BETAS[1] ** self.t
                denom = v.sqrt().div_(math.sqrt(bc2)).add_(EPS)
                p.sub_(torch.div(m, denom).mul_(lr / bc1))
            elif self.kind == "sgd":
                (buf,) = st
                if self.t == 1:
                    buf.copy_(g)
                else:
                    buf.mul_(SGD_MOMENTUM).add_(g)
                p.sub_(lr * buf)
            else:
                (sq,) = st
                sq.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
                p.sub_(g.div_(sq.sqrt().add_(EPS)).mul_(lr))


def torch_optimizer(run: RunConfig, params) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimiser that `StackedOptimizer` vectorises (for plain loops)."""
    if run.optimizer == "adam":
        return torch.optim.Adam(params, lr=run.lr, betas=ADAM_BETAS, eps=EPS, weight_decay=run.weight_decay)
    if run.optimizer == "sgd":
        return torch.optim.SGD(params, lr=run.lr, momentum=SGD_MOMENTUM, weight_decay=run.weight_decay)
    return torch.optim.RMSprop(params, lr=run.lr, alpha=RMSPROP_ALPHA, eps=EPS, weight_decay=run.weight_decay)


# ---------------------------------------------------------------------- forward with dropout
def dropout_forward(spec: NetworkSpec, params: Sequence[Tensor], x: Tensor, rate: Tensor | None,
                    generator: torch.Generator | None = None) -> Tensor:
    """`weightspace.core.functional.forward` of stacked raw parameters (``[B, out, in, ...]``,
    weight then bias per layer, as `Weights.tensors` without the C axis), with per-network
    dropout ``rate [B]`` (rounded to multiples of 1/256) after every hidden layer's activation. ``x``: ``[B, n, ...]``;
    returns ``[B, n, out]``. ``rate=None`` is exactly the functional forward."""
    if rate is None or not bool((rate > 0).any()):
        return forward(Weights.from_tensors(spec, params), x)
    b, h, k = x.shape[0], x, 0
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
        h = _linear(h, w, bias, i) if layer.kind == "linear" else _conv(h, w, bias, layer.stride, layer.padding, b, i)
        if layer.activation != "identity":
            h = get_activation(layer.activation).fn(h, layer.omega)
        if i < spec.num_layers - 1:
            view = (-1, *([1] * (h.dim() - 1)))
            r = _random_bytes(h.shape, generator, h.device)
            h = h * (r >= drop.view(view)).to(h.dtype).mul_(scale.view(view))
        if spec.pool != "none" and i == spec.num_conv - 1:
            h = h.mean(dim=(-2, -1)) if spec.pool == "avg" else h.amax(dim=(-2, -1))
    return h


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
    if weights.spec.num_conv and x.device.type == "cpu" and len(weights) > 1:
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


def _metrics(weights: Weights, data: ClassifierData, masks: Tensor) -> dict[str, Tensor]:
    """Train metrics over each run's own subset (``masks [B, N_train]``), test over all."""
    c_tr, l_tr = evaluate_population(weights, data.train_x, data.train_y)
    c_te, l_te = evaluate_population(weights, data.test_x, data.test_y)
    m = masks.float()
    train_acc = (c_tr.float() * m).sum(1) / m.sum(1)
    test_acc = c_te.float().mean(1)
    return {
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "train_loss": (l_tr * m).sum(1) / m.sum(1),
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


def train_population(base_spec: NetworkSpec, runs: Sequence[RunConfig], data: ClassifierData,
                     recipe: ZooRecipe, *, device: str | torch.device = "cpu", dropout_seed: int = 0) -> PopulationResult:
    """Train ``runs`` (any mix of activations and optimisers: networks that share both are
    stacked together) and return every checkpoint of ``recipe.checkpoints``."""
    start = time.perf_counter()
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault((r.activation, r.optimizer), []).append(i)
    k = len(recipe.checkpoints)
    slots: list[Weights | None] = [None] * (len(runs) * k)
    cols: dict[str, list[Any]] = {}
    per_run: list[dict[str, Any]] = [{} for _ in runs]
    for (act, _), members in groups.items():
        spec = spec_with_activation(base_spec, act)
        ckpts = _train_group(spec, [runs[i] for i in members], data, recipe, device, dropout_seed + members[0])
        for j, i in enumerate(members):
            for c, (w, metrics, diverged) in enumerate(ckpts):
                wj = w[j].to("cpu")
                slots[i * k + c] = Weights(base_spec, wj.weights, wj.biases)  # one zoo spec; activation per row
                per_run[i][c] = {name: float(v[j]) for name, v in metrics.items()} | {"diverged": bool(diverged[j])}
    for i, run in enumerate(runs):
        for c, epoch in enumerate(recipe.checkpoints):
            row = {**run.to_row(), "epoch": epoch, **per_run[i][c]}
            for name, v in row.items():
                cols.setdefault(name, []).append(v)
    weights = Weights.cat([w for w in slots if w is not None])
    return PopulationResult(weights, cols, time.perf_counter() - start)


def _train_group(spec: NetworkSpec, runs: Sequence[RunConfig], data: ClassifierData, recipe: ZooRecipe,
                 device: str | torch.device, dropout_seed: int) -> list[tuple[Weights, dict[str, Tensor], Tensor]]:
    """One stacked group (shared activation and optimiser): ``[(weights, metrics, diverged)]``
    per checkpoint."""
    data = data.to(device)
    n_train = len(data.train_y)
    init = Weights.from_modules([init_network(spec, r.init, r.seed) for r in runs], spec).to(device)
    params = [t[:, 0].clone().requires_grad_() for t in init.tensors()]
    b = len(runs)
    lr = torch.tensor([r.lr for r in runs], device=device)
    wd = torch.tensor([r.weight_decay for r in runs], device=device)
    rate = torch.tensor([r.dropout for r in runs], device=device)
    opt = StackedOptimizer(runs[0].optimizer, params, lr, wd)
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
        w = Weights.from_tensors(spec, [p.detach().clone() for p in params])
        out.append((w, _metrics(w, data, masks), ~alive.clone()))

    if 0 in recipe.checkpoints:
        checkpoint()
    for epoch in range(1, recipe.epochs + 1):
        order = torch.stack([epoch_batches(s, steps, recipe.batch_size, g) for s, g in zip(subsets, gens)]).to(device)
        safe = [p.detach().clone() for p in params]  # once per epoch: a per-step copy costs as much as a step
        for s in range(steps):
            idx = order[:, s]  # [B, batch]
            logits = dropout_forward(spec, params, data.train_x[idx], rate, drop_gen)
            loss = F.cross_entropy(logits.transpose(1, 2), data.train_y[idx], reduction="none").mean(1)  # [B]
            ok = alive & torch.isfinite(loss)
            grads = torch.autograd.grad(torch.where(ok, loss, 0.0).sum(), params)
            if not bool(ok.all()):
                grads = [torch.nan_to_num(g) for g in grads]
            opt.step(params, grads, ok.float())
            finite = torch.stack([torch.isfinite(p.detach()).flatten(1).all(1) for p in params]).all(0)
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


# ---------------------------------------------------------------------- the plain reference
def train_sequential(base_spec: NetworkSpec, run: RunConfig, data: ClassifierData, recipe: ZooRecipe) -> tuple[Weights, dict[str, list[float]]]:
    """One run the plain PyTorch way: ``nn.Sequential`` (+ ``nn.Dropout``), ``torch.optim``,
    the run's own batches; (checkpoint weights ``[K]``, metrics per checkpoint). The
    reference that `train_population` must match, and the baseline of its benchmark."""
    spec = spec_with_activation(base_spec, run.activation)
    module = init_network(spec, run.init, run.seed)
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
