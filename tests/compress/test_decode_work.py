"""Bounded decoding: a file asking for more multiply-adds than its size allows is refused first.

The crafted case: a 25 KB COIN file whose header is inside every documented bound (a
4096x4096 grey image, hidden widths [256]*4, 1-bit weights) but would take 3.3e12
multiply-adds to decode. The counts themselves are checked against PyTorch's FLOP counter
on real decodes, so the limit guards the work that actually happens.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.compress import coin, pyramid
from weightspace.compress.codec import compress, decode_work, decompress
from weightspace.compress.format import CodecError, pack
from weightspace.compress.fuzz import fuzz_base, fuzz_pyramid_base
from weightspace.compress.quantize import packed_size
from weightspace.compress.signal import Signal
from weightspace.compress.work import WORK_FLOOR, WORK_PER_BYTE, DecodeWorkError, check_work, work_limit


def _coin_file(side: int, hidden: list[int], bits: int) -> bytes:
    """A valid COIN file for a ``side x side`` grey image: every range (lo 0, step 1e-3), all codes 0."""
    sizes = [2, *hidden, 1]
    tensors = 2 * (len(sizes) - 1)
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    payload = coin._PAIR.pack(0.0, 1e-3) * tensors + bytes(packed_size(params, bits))
    header = {"kind": "image", "shape": [side, side, 1], "meta": {}, "hidden": hidden, "omega": 30.0, "bits": bits}
    return pack("coin", header, payload)


CRAFTED = _coin_file(4096, [256] * 4, 1)
CRAFTED_WORK = 4096 * 4096 * (2 * 256 + 3 * 256 * 256 + 256)  # points x multiply-adds per point


def test_the_crafted_file_is_small_and_refused_before_decoding(monkeypatch) -> None:
    assert 24_000 < len(CRAFTED) < 26_000
    assert decode_work(CRAFTED) == CRAFTED_WORK  # 3.3e12
    limit = work_limit(len(CRAFTED))
    assert limit == WORK_PER_BYTE * len(CRAFTED) < CRAFTED_WORK

    def no_rendering(*args, **kwargs):
        raise AssertionError("decoding started")

    monkeypatch.setattr(coin, "render", no_rendering)
    start = time.perf_counter()
    with pytest.raises(DecodeWorkError) as err:
        decompress(CRAFTED)
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert f"{CRAFTED_WORK:.3g}" in message and f"{limit:.3g}" in message  # both numbers, stated
    assert "16777216 points x 197376 per point" in message  # and what the work is
    assert isinstance(err.value, CodecError) and isinstance(err.value, ValueError)  # callers' handlers still catch it
    # a caller's own limit applies in both directions (the file is not decoded: rendering would take hours)
    with pytest.raises(DecodeWorkError, match="the given max_work"):
        decompress(CRAFTED, max_work=CRAFTED_WORK - 1)
    with pytest.raises(AssertionError, match="decoding started"):
        decompress(CRAFTED, max_work=CRAFTED_WORK)


def test_the_limit_scales_with_the_file() -> None:
    assert work_limit(0) == work_limit(100) == WORK_FLOOR
    assert work_limit(10**6) == WORK_PER_BYTE * 10**6
    # the same network at 16 bits per weight: a 16x larger file, now within its limit
    sixteen = _coin_file(1024, [256] * 4, 16)
    assert decode_work(sixteen) <= work_limit(len(sixteen))
    # hostile sizes or bad limits are refused, never decoded
    with pytest.raises(ValueError, match="max_work"):
        check_work(10, 100, -1)
    with pytest.raises(ValueError, match="max_work"):
        check_work(10, 100, float("nan"))


def _measured_macs(fn) -> int:
    """Multiply-adds PyTorch counts while ``fn`` runs (its FLOP counter reports 2 per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() // 2


def test_coin_count_is_what_decoding_does() -> None:
    data = _coin_file(24, [12, 12], 8)
    assert decode_work(data) == 24 * 24 * (2 * 12 + 12 * 12 + 12 * 1)
    assert _measured_macs(lambda: decompress(data)) == decode_work(data)
    # max_work is a bound on exactly this count
    with pytest.raises(DecodeWorkError):
        decompress(data, max_work=decode_work(data) - 1)
    assert decompress(data, max_work=decode_work(data)).values.shape == (24, 24, 1)


def test_coinpp_patch_count_is_what_decoding_does() -> None:
    base = fuzz_base()  # hidden (8,), latent 4, patches 4x4
    s = Signal(torch.rand(10, 9, 1, generator=torch.Generator().manual_seed(0)), "image")
    data = compress(s, method="coin++", bpp=64.0, base=base).data
    patches = math.ceil(10 / 4) * math.ceil(9 / 4)
    want = patches * (16 * (2 * 8 + 8 * 1) + 4 * 8)
    assert decode_work(data, base=base) == want
    assert _measured_macs(lambda: decompress(data, base=base)) == want
    with pytest.raises(DecodeWorkError):
        decompress(data, base=base, max_work=want - 1)


def test_pyramid_count_bounds_what_decoding_does() -> None:
    base = fuzz_pyramid_base()  # levels 3, hidden 4, conv 2, context 2, grey
    s = Signal(torch.rand(12, 10, 1, generator=torch.Generator().manual_seed(0)), "image")
    data = compress(s, method="coin++", bpp=64.0, base=base, search=1, fit_steps=5).data
    work = decode_work(data, base=base)
    # PyTorch counts the convolutions but not the interpolation taps the formula adds
    shapes = pyramid.level_shapes((12, 10), 3)
    taps = 16 * (2 * 12 * 10 + 2 * sum(math.prod(s) for s in shapes[:-1]))
    measured = _measured_macs(lambda: decompress(data, base=base))
    assert measured + taps == work
    with pytest.raises(DecodeWorkError):
        decompress(data, base=base, max_work=work - 1)


def test_cli_reports_one_clean_line_and_exit_2(tmp_path) -> None:
    (tmp_path / "crafted.wsc").write_bytes(CRAFTED)
    r = CliRunner().invoke(app, ["decompress", str(tmp_path / "crafted.wsc"), "-o", str(tmp_path / "out.png")])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert "multiply-adds" in lines[0] and "--max-work" in lines[0] and "[256, 256, 256, 256]" in lines[0]
    assert not (tmp_path / "out.png").exists()
    small = _coin_file(8, [4], 8)
    (tmp_path / "small.wsc").write_bytes(small)
    r = CliRunner().invoke(app, ["decompress", str(tmp_path / "small.wsc"), "-o", str(tmp_path / "s.png"),
                                 "--max-work", str(decode_work(small) - 1)])
    assert r.exit_code == 2 and "the given max_work" in r.output
    r = CliRunner().invoke(app, ["decompress", str(tmp_path / "small.wsc"), "-o", str(tmp_path / "s.png"),
                                 "--max-work", str(decode_work(small))])
    assert r.exit_code == 0, r.output
