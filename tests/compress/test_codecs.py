"""COIN and COIN++ through the one codec API: decoded = what the encoder measured, targets
met, every modality round-trips, wrong or missing bases are refused."""

from __future__ import annotations

import pytest
import torch

from weightspace.compress import coin, coinpp
from weightspace.compress.codec import compress, decompress, inspect, psnr
from weightspace.compress.format import CodecError
from weightspace.compress.signal import Signal
from weightspace.inr.meta import MetaConfig
from weightspace.inr.modulated import ModulatedSirenConfig
from weightspace.signals import load_digits, load_shapes, load_tones
from weightspace.signals.grids import load_spherical_harmonics

FAST = coin.CoinConfig(steps=300, lr=1e-3)


def _blob(h: int = 16, w: int = 16, c: int = 1) -> Signal:
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    chans = [0.5 + 0.4 * torch.sin(2 * x + k) * torch.cos(1.5 * y - k) for k in range(c)]
    return Signal(torch.stack(chans, -1).float(), "image")


def test_architecture_fits_the_budget_and_grows_with_it() -> None:
    prev = 0
    for bpp in (0.1, 0.3, 1.0, 3.0, 8.0):
        hidden = coin.coin_architecture(bpp, 128 * 128, 2, 1, 16)
        n = coin.num_params(2, hidden, 1)
        assert n * 16 + 128 * (len(hidden) + 1) <= bpp * 128 * 128
        assert n > prev
        prev = n
    with pytest.raises(ValueError, match="cannot hold"):
        coin.coin_architecture(0.01, 100, 2, 1, 16)


@pytest.mark.parametrize("bits", [16, 8])
def test_coin_round_trip_is_exact_and_within_rate(bits) -> None:
    s = _blob()
    res = compress(s, method="coin", bpp=8.0, coin_config=FAST.__class__(**{**FAST.__dict__, "bits": bits}))
    assert res.reached and res.bpp <= 8.0 and inspect(res.data)["bits"] == bits
    back = decompress(res.data)
    assert back.kind == "image" and back.values.shape == s.values.shape
    assert psnr(back.values, s.values) == pytest.approx(res.psnr, abs=1e-9)


def test_coin_reaches_a_requested_psnr() -> None:
    s = _blob()
    res = compress(s, method="coin", psnr_target=30.0, coin_config=FAST)
    assert res.reached and psnr(decompress(res.data).values, s.values) >= 30.0


def test_quantisation_aware_finetuning_beats_plain_rounding_at_low_bits() -> None:
    s = _blob()
    cfg = coin.CoinConfig(steps=300, lr=1e-3, bits=5, qat_steps=150, qat_lr=5e-4)
    w = coin.fit(s, (12, 12), cfg)
    plain = coin._quantize_all(w, 5)[2]
    tuned = coin._quantize_all(coin.finetune_quantized(w, s, cfg), 5)[2]
    grid = s.grid
    assert psnr(coin.render(tuned, grid), s.values) > psnr(coin.render(plain, grid), s.values)


@pytest.mark.parametrize("modality", ["rgb", "audio", "shape", "grid"])
def test_every_modality_round_trips_through_coin(modality, tmp_path) -> None:
    if modality == "rgb":
        s = _blob(12, 10, 3)
    elif modality == "audio":
        s = Signal(load_tones(1, 256).values[0], "audio", {"sample_rate": 8000})
    elif modality == "shape":
        ds = load_shapes(1, 10, "occupancy", classes=["sphere"])
        s = Signal(ds.as_grid()[0].contiguous(), "shape", {"lo": 0.0, "hi": 1.0})
    else:
        ds = load_spherical_harmonics(1, 8, 16, band_limits=(3,))
        s = Signal(ds.as_grid()[0].contiguous(), "grid", {"lo": -3.0, "hi": 3.0})
    res = compress(s, method="coin", bpp=16.0, coin_config=FAST)
    back = decompress(res.data)
    assert back.kind == s.kind and back.meta == s.meta and back.values.shape == s.values.shape
    assert psnr(back.values, s.values) == pytest.approx(res.psnr, abs=1e-9) and res.psnr > 15


@pytest.fixture(scope="module")
def digits_base() -> coinpp.CoinppBase:
    train = load_digits(seed=0).select_split("train")
    patches = coinpp.patches_of(train.images, (8, 8))
    cfg = ModulatedSirenConfig(2, 1, hidden=(16, 16), latent_dim=8)
    return coinpp.train_base(patches, "image", (8, 8), cfg, MetaConfig(steps=60, lr=3e-3, progress=False))


def test_coinpp_rate_falls_and_quality_rises_with_the_step(digits_base) -> None:
    test = load_digits(seed=0).select_split("test")
    top, bottom = torch.cat([test.images[0], test.images[1]], 1), torch.cat([test.images[2], test.images[3]], 1)
    s = Signal(torch.cat([top, bottom], 0), "image")  # four patches; ANS words are 32 bits
    z = coinpp.latents_of(s, digits_base)
    rates, quality = [], []
    for step in (4.0, 0.5, 0.05):
        _, payload, values = coinpp.encode_latents_to_file(s, digits_base, z, step)
        rates.append(len(payload))
        quality.append(psnr(values, s.values))
    assert rates[0] < rates[1] < rates[2] and quality[0] < quality[2]


def test_coinpp_round_trip_bases_and_targets(digits_base, tmp_path) -> None:
    test = load_digits(seed=0).select_split("test")
    s = Signal(torch.cat([test.images[1], test.images[2]], 1), "image")  # 8 x 16: two patches
    res = compress(s, method="coin++", bpp=4.0, base=digits_base)
    assert res.bpp <= 4.0 and res.reached
    assert psnr(decompress(res.data, base=digits_base).values, s.values) == pytest.approx(res.psnr, abs=1e-9)
    target = compress(s, method="coin++", psnr_target=res.psnr - 1.0, base=digits_base)
    assert target.reached and target.psnr >= res.psnr - 1.0
    digits_base.save(tmp_path / "b.safetensors")
    again = coinpp.CoinppBase.load(tmp_path / "b.safetensors")
    assert again.id == digits_base.id
    torch.testing.assert_close(decompress(res.data, base=again).values, decompress(res.data, base=digits_base).values)
    with pytest.raises(CodecError, match="needs its base"):
        decompress(res.data)
    other = coinpp.CoinppBase(again.model, again.kind, again.patch, again.inner_steps,
                              again.latent_mean + 1, again.latent_std)
    with pytest.raises(CodecError, match="made with base"):
        decompress(res.data, base=other)
    with pytest.raises(ValueError, match="codes image signals with 1"):
        compress(_blob(8, 8, 3), method="coin++", bpp=1.0, base=digits_base)


@pytest.mark.parametrize("modality", ["audio", "shape", "grid"])
def test_coinpp_round_trips_every_modality(modality) -> None:
    if modality == "audio":
        data, kind, patch, meta = load_tones(2, 200).values, "audio", (64,), {"sample_rate": 8000}
        values = data.reshape(len(data), 200, 1)
    elif modality == "shape":
        ds = load_shapes(1, 10, "occupancy", classes=["sphere", "box"])
        values, kind, patch, meta = ds.as_grid(), "shape", (4, 4, 4), {"lo": 0.0, "hi": 1.0}
    else:
        ds = load_spherical_harmonics(2, 8, 16, band_limits=(3,))
        values, kind, patch, meta = ds.as_grid(), "grid", (4, 8), {"lo": -3.0, "hi": 3.0}
    cfg = ModulatedSirenConfig(len(patch), 1, hidden=(8,), latent_dim=4)
    base = coinpp.train_base(coinpp.patches_of(values[1:], patch), kind, patch, cfg, MetaConfig(steps=2, progress=False))
    s = Signal(values[0].contiguous(), kind, meta)
    res = compress(s, method="coin++", bpp=64.0, base=base)
    back = decompress(res.data, base=base)
    assert back.kind == kind and back.meta == s.meta and back.values.shape == s.values.shape
    assert psnr(back.values, s.values) == pytest.approx(res.psnr, abs=1e-9)


def test_base_files_that_are_not_bases_are_refused(digits_base, tmp_path) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ValueError, match="junk.safetensors"):
        coinpp.CoinppBase.load(tmp_path / "junk.safetensors")
    from weightspace.inr.modulated import save_modulated

    save_modulated(digits_base.model, tmp_path / "model.safetensors")  # a model, not a base
    with pytest.raises(ValueError, match="not a COIN\\+\\+ base"):
        coinpp.CoinppBase.load(tmp_path / "model.safetensors")
