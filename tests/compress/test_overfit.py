"""The overfit codec (latents and decoder fitted per image): exact round trips, the pyramid
start, rate control, the CLI, clean errors on bad input; and the rate-distortion arithmetic
its benchmark uses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.compress import overfit
from weightspace.compress.codec import compress, decode_work, decompress, psnr
from weightspace.compress.format import CodecError, pack, unpack
from weightspace.compress.rd import bd_rate, psnr_at
from weightspace.compress.signal import Signal, read_signal

runner = CliRunner()


def _picture(h: int = 24, w: int = 20, c: int = 1, seed: int = 0) -> Signal:
    """A smooth pattern with an edge and a little noise: something with structure to code."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    chans = [0.5 + 0.3 * torch.sin(6 * x + k) * torch.cos(4 * y - k) + 0.15 * (x > 0.5 + 0.1 * k) for k in range(c)]
    v = torch.stack(chans, -1) + 0.02 * torch.randn(h, w, c, generator=g)
    return Signal((torch.round(v.clamp(0, 1) * 255) / 255).float(), "image")


def _fit(signal: Signal, lam: float = 0.01, steps: int = 40, **kw) -> tuple[overfit.Fitted, bytes, dict, torch.Tensor]:
    cfg = overfit.OverfitConfig(steps=steps, **kw)
    state = overfit.fit(signal.values.movedim(-1, 0)[None], lam, cfg)
    header, payload, values = overfit.encode(signal, state, lam)
    return state, payload, header, values


@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_is_exact_and_deterministic(channels: int) -> None:
    signal = _picture(c=channels)
    _, payload, header, values = _fit(signal)
    assert header["net"] == [7, 16, 8] and header["shape"] == [24, 20, channels]
    back = overfit.decode(header, payload)
    assert torch.equal(back.values, values)  # the decoder renders exactly what the encoder measured
    _, payload2, header2, _ = _fit(signal)
    assert payload2 == payload and header2 == header  # same image, same seed: same bytes
    _, payload3, _, _ = _fit(signal, seed=1)
    assert payload3 != payload


def test_pyramid_start_renders_the_image() -> None:
    """Before any step, the unrounded pyramid start through the initial synthesis (linear map =
    inverse colour transform x step) reproduces the image closely; the finest level takes the
    residual, so only upsampling's interaction between levels is lost."""
    for c in (1, 3):
        signal = _picture(32, 32, c)
        x = signal.values.movedim(-1, 0)[None]
        state = overfit.initial_state(x, 0.01, overfit.OverfitConfig())
        with torch.no_grad():
            rendered = state.synthesis(state.latents, (32, 32))
        assert [y.shape[1] for y in state.latents] == overfit.latent_channels(c, 7)
        assert psnr(rendered[0].movedim(0, -1), signal.values) > 35
        # and a wrong start (latents of another image) does not
        other = overfit.initial_state(_picture(32, 32, c, seed=3).values.flip(0).movedim(-1, 0)[None], 0.01, overfit.OverfitConfig())
        with torch.no_grad():
            wrong = state.synthesis(other.latents, (32, 32))
        assert psnr(wrong[0].movedim(0, -1), signal.values) < 25


def test_lambda_trades_rate_for_quality() -> None:
    signal = _picture(32, 32)
    small = compress(signal, method="overfit", bpp=100.0,
                     overfit_config=overfit.OverfitConfig(steps=60, refit_steps=20, search=1))
    res = {}
    for lam in (0.001, 0.05):
        _, payload, header, values = _fit(signal, lam=lam, steps=60)
        res[lam] = (len(payload), psnr(values, signal.values))
    assert res[0.001][0] > res[0.05][0] and res[0.001][1] > res[0.05][1]
    assert small.reached and small.method == "overfit" and unpack(small.data)[0] == "overfit"


def test_rate_search_meets_a_budget_and_reports_a_miss() -> None:
    signal = _picture(32, 32)
    cfg = overfit.OverfitConfig(steps=60, refit_steps=30, search=3)
    # at 32x32 the networks' ~400 parameters alone take ~2.5 bpp
    res = compress(signal, method="overfit", bpp=6.0, overfit_config=cfg)
    assert res.reached and res.bpp <= 6.0
    assert torch.equal(decompress(res.data).values, overfit.decode(*unpack(res.data)[1:]).values)
    tiny = compress(signal, method="overfit", bpp=0.01, overfit_config=cfg)  # the parameters alone exceed it
    assert not tiny.reached and tiny.bpp > 0.01
    q = compress(signal, method="overfit", psnr_target=12.0, overfit_config=cfg)
    assert q.reached and q.psnr >= 12.0


def test_every_payload_bit_is_needed_and_bad_headers_are_refused() -> None:
    signal = _picture()
    _, payload, header, _ = _fit(signal)
    # a shortened stream either fails cleanly or decodes to some image (the container's CRC-32
    # is what catches damage); never another exception
    try:
        assert overfit.decode(header, payload[:-4]).values.shape == (24, 20, 1)
    except CodecError:
        pass
    with pytest.raises(CodecError, match="32-bit words"):
        overfit.decode(header, payload[:-1])
    with pytest.raises(CodecError, match="more data"):  # a stack coder reads the last copy, then finds more
        overfit.decode(header, payload + payload)
    bad = [({"net": [7, 8]}, "net must be"), ({"net": [13, 8, 8]}, "net must be"), ({"q": [4, 99]}, "q must be"),
           ({"q": "x"}, "q must be"), ({"shape": [4, 4, 1]}, "sides below"),
           ({"kind": "grid", "shape": [24, 20, 2], "meta": {"lo": 0.0, "hi": 1.0}}, "1 or 3 channels"), ({"kind": "audio", "shape": [40, 1],
            "meta": {"sample_rate": 8000}}, "only 2-D")]
    for change, msg in bad:
        with pytest.raises(CodecError, match=msg):
            overfit.decode({**header, **change}, payload)
    # a header asking for a huge image is refused before anything is decoded: by the format's
    # size bound, and a file over the caller's work bound by that
    with pytest.raises(CodecError, match="exceeds the bounds"):
        decompress(pack("overfit", {**header, "shape": [4000, 4000, 3]}, payload))
    with pytest.raises(CodecError, match="multiply-adds"):
        decompress(pack("overfit", {**header, "shape": [2000, 2000, 3]}, payload), max_work=1e9)
    assert decode_work(pack("overfit", header, payload)) > 24 * 20 * 100


def test_signals_it_does_not_take_are_refused_in_one_line() -> None:
    audio = Signal(torch.rand(64, 1), "audio", {"sample_rate": 8000})
    with pytest.raises(ValueError, match="2-D signals"):
        compress(audio, method="overfit", bpp=1.0)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        compress(Signal(torch.rand(4, 30, 1), "image"), method="overfit", bpp=1.0)
    with pytest.raises(ValueError, match="unknown effort"):
        overfit.OverfitConfig.effort("turbo")
    with pytest.raises(ValueError, match="steps must be"):
        overfit.OverfitConfig(steps=0)
    assert overfit.OverfitConfig.effort("fast").steps < overfit.OverfitConfig.effort("max").steps


def test_cli_overfit_round_trip_and_errors(tmp_path) -> None:
    y, x = np.mgrid[0:24, 0:24] / 24
    rgb = np.stack([0.5 + 0.4 * np.sin(3 * x + k) * np.cos(2 * y) for k in range(3)], -1)
    Image.fromarray(np.round(255 * rgb).astype(np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "a.wsc"
    r = runner.invoke(app, ["compress", str(tmp_path / "in.png"), "-o", str(out), "--method", "overfit", "--bpp", "12",
                            "--effort", "fast", "--steps", "40", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "overfit" in r.output and json.loads(json.dumps(unpack(out.read_bytes())[1]))["shape"] == [24, 24, 3]
    r = runner.invoke(app, ["decompress", str(out), "-o", str(tmp_path / "back.png")])
    assert r.exit_code == 0, r.output
    a, b = read_signal(tmp_path / "in.png").values, read_signal(tmp_path / "back.png").values
    assert a.shape == b.shape and psnr(b, a) > 15
    for args, msg in ((["--effort", "turbo"], "unknown effort"), (["--steps", "0"], "--steps must be at least 1"),
                      (["--base", str(out)], "--base is for coin++"), (["--method", "jpeg"], "unknown method")):
        target = tmp_path / "never.wsc"
        argv = ["compress", str(tmp_path / "in.png"), "-o", str(target), "--bpp", "1", "--no-progress"]
        argv += [] if "--method" in args else ["--method", "overfit"]
        r = runner.invoke(app, argv + args)
        assert r.exit_code != 0 and msg in " ".join(r.output.split()) and "Traceback" not in r.output, r.output
        assert not target.exists()


def test_bd_rate_and_matched_psnr() -> None:
    ref = [(0.1, 25.0), (0.2, 28.0), (0.3, 30.0), (0.5, 32.0)]
    assert bd_rate(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate([(r * 0.9, p) for r, p in ref], ref) == pytest.approx(-10.0)  # 10% fewer bits at every PSNR
    assert bd_rate([(r * 1.25, p) for r, p in reversed(ref)], ref) == pytest.approx(25.0)  # order does not matter
    assert bd_rate([(0.1, 40.0), (0.2, 41.0)], ref) is None  # no common PSNR range
    assert bd_rate([(0.1, 25.0)], ref) is None
    assert psnr_at(ref, 0.2) == pytest.approx(28.0)
    mid = psnr_at(ref, math.sqrt(0.1 * 0.2))  # halfway in log rate
    assert mid == pytest.approx(26.5)
    assert psnr_at(ref, 0.05) is None and psnr_at(ref, 0.6) is None
    # a point worse than a cheaper one is not on the envelope
    assert psnr_at([*ref, (0.25, 20.0)], 0.25) == pytest.approx(psnr_at(ref, 0.25))


@pytest.mark.parametrize("shape,size", [((128, 128), (256, 256)), ((2, 3), (64, 64)), ((5, 7), (17, 9)), ((1, 1), (4, 4))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_upsampling_is_pytorchs_bicubic(shape, size, dtype) -> None:
    import torch.nn.functional as F

    from weightspace.compress.overfit import _up

    y = torch.randn(2, 3, *shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    want = F.interpolate(y, size=size, mode="bicubic", align_corners=False)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(_up(y, size), want, rtol=tol, atol=tol)
    assert _up(y, shape) is y  # same size: no work
