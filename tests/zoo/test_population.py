"""The vectorised population trainer: same weights as one-by-one PyTorch training of the
same runs, independence of the networks stacked together, dropout, divergence handling."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from weightspace import Weights, forward
from weightspace.signals.images import load_images
from weightspace.zoo.population import (
    dropout_forward,
    init_network,
    train_population,
    train_sequential,
)
from weightspace.zoo.search_space import (
    RunConfig,
    SearchSpace,
    get_zoo_recipe,
    small_cnn_spec,
    spec_with_activation,
)
from weightspace.zoo.train_zoo import classifier_data


@pytest.fixture(scope="module")
def mnist():
    return load_images("mnist-subset", limit=80)


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", limit=80)


def _setup(images, name):
    recipe = get_zoo_recipe(name, epochs=2, checkpoints=(0, 1, 2), batch_size=16)
    data = classifier_data(images, recipe.arch, n_train=48, n_test=32)
    return recipe, data, recipe.spec(images.shape, data.num_classes)


def _runs(n: int, seed: int, **fixed) -> list[RunConfig]:
    # every optimiser, activation and init, varied lr / wd / train fraction
    return [replace(r, **fixed) for r in SearchSpace(lr=(1e-3, 1e-2)).sample(n, seed=seed)]


def test_small_cnn_has_unterthiners_parameter_count() -> None:
    assert small_cnn_spec(1, 10).num_params == 4970
    assert small_cnn_spec(3, 10).num_params == 4970 + 2 * 16 * 9


@pytest.mark.parametrize("arch", ["small-cnn", "mlp"])
def test_vectorised_matches_sequential(arch, mnist, digits) -> None:
    recipe, data, spec = _setup(mnist if arch == "small-cnn" else digits, arch)
    runs = _runs(9, seed=1, dropout=0.0)
    assert {r.optimizer for r in runs} == {"adam", "sgd", "rmsprop"}
    result = train_population(spec, runs, data, recipe)
    k = len(recipe.checkpoints)
    for i, run in enumerate(runs):
        ref, metrics = train_sequential(spec, run, data, recipe)
        mine = result.weights[list(range(i * k, (i + 1) * k))]
        for a, b in zip(ref.tensors(), mine.tensors()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)  # Adam amplifies float noise a little
        # metrics at each checkpoint follow from the weights
        for c in range(k):
            assert result.columns["epoch"][i * k + c] == recipe.checkpoints[c]
            assert result.columns["run"][i * k + c] == run.run
            assert abs(result.columns["test_accuracy"][i * k + c] - metrics["test_accuracy"][c]) < 1e-6
    # training moved the weights: checkpoint 0 differs from the last
    assert not torch.equal(result.weights[0].weights[0], result.weights[k - 1].weights[0])


def test_networks_train_independently_of_their_stack(mnist) -> None:
    """A run's weights do not depend on the other networks stacked with it, even one that
    diverges (that one is frozen at finite weights and flagged)."""
    recipe, data, spec = _setup(mnist, "small-cnn")
    base = _runs(3, seed=2, dropout=0.0, optimizer="sgd", activation="relu")
    bad = replace(base[0], run=99, lr=1e8)
    together = train_population(spec, [*base, bad], data, recipe)
    alone = train_population(spec, base[1:2], data, recipe)
    k = len(recipe.checkpoints)
    for a, b in zip(together.weights[list(range(k, 2 * k))].tensors(), alone.weights.tensors()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert together.columns["diverged"][-1] and not any(together.columns["diverged"][: 3 * k])
    assert all(torch.isfinite(t).all() for t in together.weights.tensors())


def test_dropout_forward(gen) -> None:
    spec = small_cnn_spec(1, 10)
    params = [torch.stack([t for t in p]) for p in zip(*[
        [x.detach() for pair in spec.parameters_of(init_network(spec, "default", s)) for x in pair] for s in range(2)
    ])]
    x = torch.rand(2, 5, 1, 28, 28, generator=gen)
    plain = dropout_forward(spec, params, x, None)

    assert torch.equal(plain, forward(Weights.from_tensors(spec, params), x))
    out = dropout_forward(spec, params, x, torch.tensor([0.0, 0.5]), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[0], plain[0])  # rate 0: untouched
    assert not torch.allclose(out[1], plain[1])  # rate 0.5: masked


def test_dropout_runs_train_and_stay_finite(mnist) -> None:
    recipe, data, spec = _setup(mnist, "small-cnn")
    runs = _runs(4, seed=3, dropout=0.3)
    result = train_population(spec, runs, data, recipe)
    assert len(result.weights) == 4 * len(recipe.checkpoints)
    assert all(0.0 <= a <= 1.0 for a in result.columns["test_accuracy"])
    gap = [tr - te for tr, te in zip(result.columns["train_accuracy"], result.columns["test_accuracy"])]
    assert result.columns["gap"] == pytest.approx(gap)


def test_inits_differ_and_are_seeded() -> None:
    spec = spec_with_activation(small_cnn_spec(1, 10), "tanh")
    a = {i: init_network(spec, i, 5)[0].weight for i in ("default", "xavier_uniform", "orthogonal")}
    assert torch.equal(init_network(spec, "orthogonal", 5)[0].weight, a["orthogonal"])
    assert not torch.equal(a["default"], a["xavier_uniform"])
    assert not torch.equal(init_network(spec, "orthogonal", 6)[0].weight, a["orthogonal"])


def test_search_space_is_seeded_and_validated() -> None:
    space = SearchSpace()
    assert space.sample(20, seed=4) == space.sample(20, seed=4)
    assert space.sample(20, seed=4) != space.sample(20, seed=5)
    runs = space.sample(200, seed=0)
    assert all(space.lr[0] <= r.lr <= space.lr[1] for r in runs)
    assert len({r.seed for r in runs}) == 200
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        replace(runs[0], optimizer="lbfgs")
    with pytest.raises(ValueError, match="train_fraction"):
        replace(runs[0], train_fraction=0.0)
    with pytest.raises(ValueError, match="checkpoints"):
        get_zoo_recipe("small-cnn", epochs=2, checkpoints=(0, 3))
