"""The modulated SIREN: shifts fold into biases exactly, shapes are checked, files round-trip."""

from __future__ import annotations

import pytest
import torch

from weightspace.core.functional import forward
from weightspace.inr.modulated import ModulatedSiren, ModulatedSirenConfig, load_modulated, save_modulated
from weightspace.signals.base import grid_coordinates


@pytest.mark.parametrize("hidden,inp,out", [((16, 8), 2, 1), ((5,), 3, 1), ((12, 12, 12), 1, 3)])
def test_exported_weights_equal_the_modulated_forward(hidden, inp, out, gen) -> None:
    model = ModulatedSiren(ModulatedSirenConfig(inp, out, hidden=hidden, latent_dim=7, seed=3)).double()
    with torch.no_grad():  # a non-zero map bias must fold into the biases too
        model.latent_map.bias.normal_(0, 0.1, generator=gen)
    z = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    x = torch.rand(50, inp, generator=gen, dtype=torch.float64) * 2 - 1
    w = model.to_weights(z)
    assert w.spec == model.config.spec and len(w) == 4
    torch.testing.assert_close(forward(w, x), model(z, x), rtol=1e-10, atol=1e-10)
    # a latent's network differs from another latent's: the modulations are not ignored
    assert not torch.allclose(model(z[:1], x), model(z[1:2], x))


def test_latent_zero_is_the_base_network_and_per_signal_coords_agree(gen) -> None:
    model = ModulatedSiren(ModulatedSirenConfig(2, 1, hidden=(8, 8), latent_dim=4))
    x = grid_coordinates((5, 6))
    z = torch.randn(3, 4, generator=gen)
    torch.testing.assert_close(model(z, x), model(z, x.expand(3, -1, -1)))
    torch.testing.assert_close(forward(model.base_weights(), x), model(torch.zeros(1, 4), x))


def test_bad_shapes_name_the_problem() -> None:
    model = ModulatedSiren(ModulatedSirenConfig(2, 1, hidden=(8,), latent_dim=4))
    with pytest.raises(ValueError, match="latents must be"):
        model(torch.zeros(2, 5), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="coords must be"):
        model(torch.zeros(2, 4), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="hidden layer"):
        ModulatedSirenConfig(2, 1, hidden=())


def test_same_seed_same_model_other_seed_other_model() -> None:
    a, b, c = (ModulatedSiren(ModulatedSirenConfig(2, 1, hidden=(8,), latent_dim=4, seed=s)) for s in (1, 1, 2))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["weights.0"], sc["weights.0"])
    assert not torch.equal(sa["latent_map.weight"], sc["latent_map.weight"])


def test_save_load_round_trip_is_exact(tmp_path, gen) -> None:
    model = ModulatedSiren(ModulatedSirenConfig(3, 2, hidden=(6, 5), latent_dim=3, omega=20.0, seed=9))
    with torch.no_grad():
        model.inner_lr.uniform_(0, 1, generator=gen)
    save_modulated(model, tmp_path / "m.safetensors")
    back = load_modulated(tmp_path / "m.safetensors")
    assert back.config == model.config
    sa, sb = model.state_dict(), back.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_modulated(tmp_path / "junk.safetensors")


def test_an_appearance_code_shifts_the_outputs_and_stays_a_plain_siren(tmp_path, gen) -> None:
    plain = ModulatedSiren(ModulatedSirenConfig(3, 4, hidden=(8, 8), latent_dim=6, seed=2))
    model = ModulatedSiren(ModulatedSirenConfig(3, 4, hidden=(8, 8), latent_dim=6, seed=2, appearance_dim=2,
                                                appearance_inner_lr=5.0)).double()
    # the shared network is the published model's; the code's two entries start off the hidden shifts
    assert torch.equal(model.weights[0].float(), plain.weights[0])
    assert torch.equal(model.latent_map.weight[:, -2:], torch.zeros(16, 2, dtype=torch.float64))
    assert torch.equal(model.inner_lr.float(), torch.tensor([0.01] * 4 + [5.0] * 2))
    x = torch.rand(30, 3, generator=gen, dtype=torch.float64) * 2 - 1
    z = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    moved = z.clone()
    moved[:, -2:] += torch.randn(3, 2, generator=gen, dtype=torch.float64)
    # changing the code alone adds output_map(change) at every coordinate (before training)
    diff = model(moved, x) - model(z, x)
    torch.testing.assert_close(diff, model.output_map(moved[:, -2:] - z[:, -2:])[:, None].expand_as(diff))
    assert diff.abs().min() > 0
    torch.testing.assert_close(forward(model.to_weights(moved), x), model(moved, x), rtol=1e-10, atol=1e-10)
    save_modulated(model, tmp_path / "a.safetensors")
    back = load_modulated(tmp_path / "a.safetensors")
    assert back.config == model.config and torch.equal(back.output_map.weight, model.output_map.weight.float())
    with pytest.raises(ValueError, match="appearance_dim must lie"):
        ModulatedSirenConfig(3, 4, latent_dim=6, appearance_dim=7)
