import pytest
import torch

from weightspace.core.functional import forward
from weightspace.inr.hyper import (
    HyperINR,
    HyperINRConfig,
    encode_codes,
    fit_hyperinr,
    load_hyperinr,
    psnr_of,
    save_hyperinr,
)
from weightspace.signals.images import load_digits

SMALL = HyperINRConfig(code_dim=16, hidden=(64,), inr_hidden=(16, 16), steps=300, batch_size=16, encode_steps=150)


@pytest.fixture(scope="module")
def digits():
    ds = load_digits(limit=16)
    tr = ds.select_split("train")
    return tr.coordinates(), tr.targets(), ds.select_split("test").targets()


@pytest.fixture(scope="module")
def fitted(digits):
    coords, values, _ = digits
    return fit_hyperinr(coords, values, SMALL, seed=0)


def test_generated_weights_are_a_siren_batch(gen):
    model = HyperINR(SMALL, 2, 1)
    codes = torch.randn(4, SMALL.code_dim, generator=gen)
    w = model(codes)
    assert w.spec == model.spec and w.batch_size == 4 and w.spec.layers[0].activation == "sine"
    # different codes give different networks; the functional forward runs them
    assert not torch.allclose(w.weights[1][0], w.weights[1][1])
    assert forward(w, torch.zeros(3, 2)).shape == (4, 3, 1)
    with pytest.raises(ValueError, match=r"codes must be \[B, 16\]"):
        model(torch.zeros(4, 3))


def test_auto_decoding_fits_the_training_signals(digits, fitted):
    coords, values, _ = digits
    untrained = HyperINR(SMALL, 2, 1, seed=0)
    before = psnr_of(untrained, torch.zeros(len(values), SMALL.code_dim), coords, values)
    assert fitted.psnr.mean() > before.mean() + 5.0
    assert fitted.history[-1] < fitted.history[0]


def test_encoding_a_training_signal_again_recovers_its_reconstruction(digits, fitted):
    coords, values, _ = digits
    codes, psnr = encode_codes(fitted.model, coords, values, steps=600)
    # a fresh code, found with the hypernetwork fixed, reconstructs as well as the jointly trained one
    assert psnr.mean() > fitted.psnr.mean() - 0.5 and (psnr > fitted.psnr - 1.5).all(), (psnr - fitted.psnr)
    # and the generated networks are what the table's PSNR describes
    w = fitted.model(codes).detach()
    y = fitted.model.recipe.encode_targets(values) - fitted.model.recipe.output_offset
    direct = fitted.model.recipe.psnr((forward(w, coords) - y).square().mean(dim=(1, 2)))
    assert torch.allclose(direct, psnr, atol=1e-3)


def test_encoding_held_out_signals_beats_the_mean_code(digits, fitted):
    coords, _, test = digits
    _, psnr = encode_codes(fitted.model, coords, test, steps=SMALL.encode_steps)
    zero = psnr_of(fitted.model, torch.zeros(len(test), SMALL.code_dim), coords, test)
    assert psnr.mean() > zero.mean() + 1.0


def test_save_load_round_trip(tmp_path, fitted, gen):
    save_hyperinr(tmp_path / "m.safetensors", fitted.model, {"dataset": "digits"})
    model, meta = load_hyperinr(tmp_path / "m.safetensors")
    z = torch.randn(3, SMALL.code_dim, generator=gen)
    assert meta == {"dataset": "digits"} and model.config == SMALL
    assert torch.equal(model.flat(z), fitted.model.flat(z))
    (tmp_path / "bad").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad"):
        load_hyperinr(tmp_path / "bad")
