"""The stacked optimiser: each network follows its own torch.optim optimiser exactly (to float
rounding), compiled and eager agree, frozen networks stay put, non-finite networks are flagged."""

from __future__ import annotations

import pytest
import torch

from weightspace.zoo.population import torch_optimizer
from weightspace.zoo.search_space import RunConfig
from weightspace.zoo.stacked_optim import StackedOptimizer

KINDS = ["adam", "sgd", "rmsprop", "sgd", "adam", "rmsprop"]
SHAPES = [(7, 5), (7,), (3, 7)]


def _problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    b = len(KINDS)
    params = [torch.randn(b, *s, generator=g) for s in SHAPES]
    grads = [[torch.randn(b, *s, generator=g) for s in SHAPES] for _ in range(4)]
    lr = torch.rand(b, generator=g) * 1e-2 + 1e-3
    wd = torch.rand(b, generator=g) * 1e-2
    return params, grads, lr, wd


def _stacked(params, grads, lr, wd, active=None):
    params = [p.clone() for p in params]
    opt = StackedOptimizer(KINDS, params, lr, wd)
    for gs in grads:
        opt.step(params, gs, active)
    return params


def test_each_network_follows_its_torch_optimizer() -> None:
    params, grads, lr, wd = _problem(0)
    mine = _stacked(params, grads, lr, wd)
    for j, kind in enumerate(KINDS):
        ref = [p[j].clone().requires_grad_() for p in params]
        run = RunConfig(run=j, lr=float(lr[j]), weight_decay=float(wd[j]), dropout=0.0, init="default",
                        activation="relu", optimizer=kind, train_fraction=1.0, seed=j)
        opt = torch_optimizer(run, ref)
        for gs in grads:
            for p, g in zip(ref, gs):
                p.grad = g[j].clone()
            opt.step()
        for a, b in zip(mine, ref):
            torch.testing.assert_close(a[j], b.detach(), rtol=1e-5, atol=1e-6)
    # and the test can fail: the networks did move, differently per optimiser
    assert not torch.allclose(mine[0][0], params[0][0])


def test_compiled_and_eager_agree(monkeypatch) -> None:
    params, grads, lr, wd = _problem(1)
    compiled = _stacked(params, grads, lr, wd)
    monkeypatch.setenv("WEIGHTSPACE_COMPILE", "0")
    eager = _stacked(params, grads, lr, wd)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_inactive_networks_keep_their_parameters_and_nonfinite_ones_are_flagged() -> None:
    params, grads, lr, wd = _problem(2)
    active = torch.ones(len(KINDS))
    active[[1, 4]] = 0.0
    out = _stacked(params, grads, lr, wd, active)
    for a, b in zip(out, params):
        assert torch.equal(a[[1, 4]], b[[1, 4]])
        assert not torch.equal(a[[0, 2, 3, 5]], b[[0, 2, 3, 5]])
    ps = [p.clone() for p in params]
    opt = StackedOptimizer(KINDS, ps, lr, wd)
    bad = [g.clone() for g in grads[0]]
    bad[1][3, 2] = float("inf")
    finite = opt.step(ps, bad)
    assert finite.tolist() == [True, True, True, False, True, True]


def test_gradients_with_any_strides() -> None:
    """A transposed-view gradient (as autograd hands back for ``h @ W^T``) is read correctly."""
    params, grads, lr, wd = _problem(3)
    strided = [[g.transpose(-1, -2).contiguous().transpose(-1, -2) if g.dim() == 3 else g for g in gs]
               for gs in grads]
    assert not strided[0][0].is_contiguous()
    for a, b in zip(_stacked(params, strided, lr, wd), _stacked(params, grads, lr, wd)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_arguments() -> None:
    params, _, lr, wd = _problem(4)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        StackedOptimizer([*KINDS[:-1], "lbfgs"], params, lr, wd)
    with pytest.raises(ValueError, match="5 optimiser names for 6 networks"):
        StackedOptimizer(KINDS[:5], params, lr, wd)
    assert StackedOptimizer("sgd", params, lr, wd).code.tolist() == [1] * 6  # one name for all networks
