"""Meta-learning: a few inner steps of a meta-trained model beat the initial network on
held-out signals; runs are functions of their seeds; the MAML options do what they say."""

from __future__ import annotations

import pytest
import torch

from weightspace.inr.meta import MetaConfig, encode, fit_latents, meta_train, reconstruct
from weightspace.inr.modulated import ModulatedSiren, ModulatedSirenConfig, psnr
from weightspace.signals import load_digits


@pytest.fixture(scope="module")
def digits():
    ds = load_digits(seed=0)
    return ds.select_split("train"), ds.select_split("test")


def _model(seed: int = 0) -> ModulatedSiren:
    return ModulatedSiren(ModulatedSirenConfig(2, 1, hidden=(16, 16), latent_dim=8, seed=seed, inner_lr=1e-2))


def _held_out_psnr(model, test, k: int) -> float:
    z = encode(model, test, k)
    return float(psnr(reconstruct(model, z, test.coordinates()), test.targets()).mean())


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_learning_beats_the_initial_network_on_held_out_signals(digits, first_order) -> None:
    train, test = digits
    model = _model()
    before = _held_out_psnr(model, test, 3)
    hist = meta_train(
        model, train.coordinates(), train.targets(),
        MetaConfig(steps=60, batch_size=32, lr=3e-3, first_order=first_order, progress=False),
    )
    after = _held_out_psnr(model, test, 3)
    assert len(hist.loss) == 60 and hist.loss[-1] < hist.loss[0]
    assert after > before + 3.0, (before, after)
    # the inner loop matters: k steps beat the meta-learned network without adaptation
    assert after > _held_out_psnr(model, test, 0) + 1.0


def test_runs_are_functions_of_their_seeds(digits) -> None:
    train, _ = digits
    cfg = MetaConfig(steps=3, batch_size=8, progress=False)
    states = []
    for model_seed, batch_seed in [(0, 0), (0, 0), (0, 1)]:
        m = _model(model_seed)
        meta_train(m, train.coordinates(), train.targets(), MetaConfig(**{**cfg.to_dict(), "seed": batch_seed}))
        states.append(m.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.equal(states[0]["weights.0"], states[2]["weights.0"])


def test_second_order_gradients_differ_from_first_order(digits) -> None:
    train, _ = digits
    coords, y = train.coordinates(), train.targets()[:8]
    grads = []
    for create_graph in (True, False):
        m = _model()
        z = fit_latents(m, coords, y, 2, create_graph=create_graph)
        (m(z, coords) - y).square().mean().backward()
        grads.append((m.weights[0].grad.clone(), m.inner_lr.grad.clone()))
    assert not torch.allclose(grads[0][0], grads[1][0])
    assert grads[1][1].abs().sum() > 0  # first order still trains the inner learning rates


def test_encoding_is_per_signal_and_checks_shapes(digits) -> None:
    _, test = digits
    m = _model()
    coords, y = test.coordinates(), test.targets()[:10]
    torch.testing.assert_close(encode(m, y, 2, coords=coords, batch_size=3), encode(m, y, 2, coords=coords))
    assert encode(m, y, 0, coords=coords).abs().sum() == 0  # zero steps: the initial latent
    with pytest.raises(ValueError, match="needs coords"):
        encode(m, y, 2)
    with pytest.raises(ValueError, match="targets must be"):
        encode(m, y[:, :10], 2, coords=coords)
    with pytest.raises(ValueError, match="NaN"):
        encode(m, torch.full_like(y, float("nan")), 2, coords=coords)


def test_inner_loop_runs_under_no_grad_and_matches_grad_mode(digits) -> None:
    train, _ = digits
    model = _model()
    coords, targets = train.coordinates(), train.targets()[:4]
    with_grad = fit_latents(model, coords, targets, steps=3).detach()
    with torch.no_grad():
        without = fit_latents(model, coords, targets, steps=3)
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad)
    assert without.abs().sum() > 0  # three steps moved the latents off zero
