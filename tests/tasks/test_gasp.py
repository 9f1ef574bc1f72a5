"""GASP: the generator renders functions at any resolution, the discriminator is a set
function of (coordinate, feature) pairs, training is seeded, the file round trip is exact."""

import pytest
import torch
import torch.nn.functional as F

from weightspace.inr.gasp import (
    GaspConfig,
    GaspGenerator,
    PointConvDiscriminator,
    PointConvLayer,
    canonical_order,
    farthest_points,
    load_generator,
    save_generator,
)
from weightspace.signals.base import grid_coordinates
from weightspace.tasks.gasp import PRESETS, Judge, preset, r1_penalty, sample_signals, train_gasp
from weightspace.tasks.generate import nearest_neighbours

SIDE = 8


def _config(**kw) -> GaspConfig:
    disc = (PointConvLayer(64, 9, 8, (8,)), PointConvLayer(16, 9), PointConvLayer(16, 9, 16, (8,)), PointConvLayer(1, 16, 1, (8,)))
    return GaspConfig(2, 1, hidden=(16, 16), latent_dim=8, hyper_hidden=(32,), frequencies=8, disc=disc, **kw)


def _blobs(n: int, seed: int = 0) -> torch.Tensor:
    """Gaussian blobs on an 8x8 grid, values [n, 64, 1] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    c = grid_coordinates((SIDE, SIDE))
    centres = torch.rand(n, 1, 2, generator=g) * 1.2 - 0.6
    return torch.exp(-((c[None] - centres) ** 2).sum(-1) / 0.15)[..., None]


def test_presets_build_and_name_their_sizes():
    for name in PRESETS:
        model, config = preset(name, 3 if "shapes" in name else 2, 1)
        g = GaspGenerator(model)
        PointConvDiscriminator(model)
        n = sum(p.numel() for p in g.hypernetwork.parameters())
        assert (n > 30e6) == (name == "gasp-mnist"), (name, n)  # the paper's image generator: 34M parameters
    with pytest.raises(ValueError, match="unknown GASP preset"):
        preset("gasp-cifar", 2, 3)


def test_a_sample_is_a_function_rendered_at_any_resolution():
    g = GaspGenerator(_config())
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    coarse = g.render(z, grid_coordinates((SIDE, SIDE))).reshape(3, SIDE, SIDE)
    fine = g.render(z, grid_coordinates((2 * SIDE - 1, 2 * SIDE - 1))).reshape(3, 2 * SIDE - 1, 2 * SIDE - 1)
    torch.testing.assert_close(fine[:, ::2, ::2], coarse)  # every other point of the finer grid is the coarse grid
    assert fine.abs().max() <= 1


def test_function_weights_are_the_hypernetworks_output_in_the_reference_layout():
    g = GaspGenerator(_config())
    z = torch.randn(2, 8)
    flat = g.hypernetwork(z)
    layers = g.function_weights(z)
    n_w = sum(o * i for o, i in g.shapes)
    assert torch.equal(layers[0][0].flatten(1), flat[:, : g.shapes[0][0] * g.shapes[0][1]])
    assert torch.equal(layers[0][1], flat[:, n_w : n_w + g.shapes[0][0]])  # every bias after every weight
    assert flat.shape[1] == n_w + sum(o for o, _ in g.shapes)


def test_the_discriminator_is_invariant_to_permuting_points_and_not_to_uncoupled_ones():
    d = PointConvDiscriminator(_config()).eval()
    coords, feats = grid_coordinates((SIDE, SIDE)), _blobs(4) * 2 - 1
    base = d(coords, feats)
    for seed in range(3):
        perm = torch.randperm(SIDE * SIDE, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(d(coords[perm], feats[:, perm]), base, atol=1e-6, rtol=1e-5)
        moved = d(coords, feats[:, perm])  # the values moved to other coordinates: another signal
        assert not torch.allclose(moved, base, atol=1e-4)


def test_the_loss_from_logits_is_the_references_bce_and_keeps_its_gradient_when_saturated():
    d = PointConvDiscriminator(_config()).eval()
    coords, feats = grid_coordinates((SIDE, SIDE)), _blobs(4) * 2 - 1
    logits = d.logits(coords, feats)
    torch.testing.assert_close(d(coords, feats), torch.sigmoid(logits))
    ones = torch.ones_like(logits)
    torch.testing.assert_close(F.binary_cross_entropy_with_logits(logits, ones),
                               F.binary_cross_entropy(torch.sigmoid(logits), ones))
    saturated = torch.full((2, 1), 20.0, requires_grad=True)  # sigmoid(20) is 1.0 in float32
    F.binary_cross_entropy(torch.sigmoid(saturated), torch.zeros(2, 1)).backward()
    assert saturated.grad.abs().max() == 0  # the probability form has lost the gradient
    saturated.grad = None
    F.binary_cross_entropy_with_logits(saturated, torch.zeros(2, 1)).backward()
    assert saturated.grad.abs().min() > 0.4  # d/dlogit = sigmoid(logit) / B


def test_farthest_point_sampling_does_not_depend_on_the_input_order():
    coords = grid_coordinates((SIDE, SIDE))
    chosen = {tuple(map(tuple, coords[farthest_points(coords, 16)].tolist()))}
    for seed in range(3):
        perm = torch.randperm(len(coords), generator=torch.Generator().manual_seed(seed))
        chosen.add(tuple(map(tuple, coords[perm][farthest_points(coords[perm], 16)].tolist())))
    assert len(chosen) == 1
    order = canonical_order(coords[torch.randperm(len(coords))])
    assert order.unique().numel() == len(coords)


def test_r1_penalty_is_the_squared_input_gradient():
    x = torch.randn(3, 5, 2, requires_grad=True)
    w = torch.randn(5, 2)
    prob = torch.sigmoid((x * w).sum(dim=(1, 2)))[:, None]
    s = prob.detach()[:, 0]
    expected = ((s * (1 - s))[:, None, None] * w).square().sum(dim=(1, 2)).mean()
    torch.testing.assert_close(r1_penalty(prob, x), expected)


def test_training_is_seeded_and_updates_the_hypernetwork_only():
    values, coords = _blobs(64), grid_coordinates((SIDE, SIDE))
    from weightspace.tasks.gasp import GaspTrainConfig

    cfg = GaspTrainConfig(steps=6, batch_size=8, progress=False, seed=3)
    a, b = train_gasp(coords, values, _config(), cfg), train_gasp(coords, values, _config(), cfg)
    assert a.history == b.history and len(a.history["generator"]) == 6
    assert all(torch.equal(x, y) for x, y in zip(a.generator.state_dict().values(), b.generator.state_dict().values()))
    before = GaspGenerator(_config())
    assert not torch.equal(a.generator.hypernetwork[-1].weight, before.hypernetwork[-1].weight)
    assert torch.equal(a.generator.encoding.frequency_matrix, before.encoding.frequency_matrix)  # fixed, as the paper's
    samples = sample_signals(a.generator, 5, coords, seed=1)
    assert samples.shape == (5, 64, 1) and 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, sample_signals(a.generator, 5, coords, seed=1))
    with pytest.raises(ValueError, match="do not fit"):
        train_gasp(grid_coordinates((4, 4)), values, _config(), cfg)


def test_generator_file_round_trip_and_damage(tmp_path):
    g = GaspGenerator(_config(seed=4))
    path = save_generator(g, tmp_path / "g.safetensors", {"dataset": "blobs"})
    back, info = load_generator(path)
    assert back.config == g.config and info == {"dataset": "blobs"}
    z = torch.randn(2, 8)
    assert torch.equal(back.render(z, grid_coordinates((4, 4))), g.eval().render(z, grid_coordinates((4, 4))))
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_generator(tmp_path / "bad.safetensors")


def test_the_judge_tells_real_signals_from_noise():
    train, test = _blobs(200, seed=0), _blobs(50, seed=1)
    labels = lambda v: (v[:, :, 0].argmax(1) % SIDE >= SIDE // 2).long()  # noqa: E731 - blob on the right half
    judge = Judge.fit(train, labels(train), test, labels(test))
    assert judge.test_accuracy > 0.8
    real, noise = judge.judge(test), judge.judge(torch.rand(50, 64, 1))
    assert real["nn_rms_median"] < noise["nn_rms_median"] and real["classes_present"] == 2
    assert float(nearest_neighbours(train[:3], train)[1].max()) < 1e-6  # a copy: 0 up to the rounding of |a|^2 - 2ab + |b|^2
