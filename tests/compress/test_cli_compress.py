"""`weightspace compress / decompress / compress-base` on files, and their clean errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.compress.signal import read_signal

runner = CliRunner()


def _image(path, size=16):
    y, x = np.mgrid[0:size, 0:size] / size
    Image.fromarray(np.round(255 * (0.5 + 0.4 * np.sin(3 * x) * np.cos(2 * y))).astype(np.uint8)).save(path)


def test_coin_compress_decompress_and_errors(tmp_path) -> None:
    _image(tmp_path / "in.png")
    r = runner.invoke(app, ["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "b.wsc"), "--bpp", "6", "--steps", "50"])
    assert r.exit_code == 0, r.output
    header_bits = 8 * 200  # a generous bound on container + JSON header
    assert "bpp payload" in r.output and (tmp_path / "b.wsc").stat().st_size * 8 <= 6 * 256 + header_bits
    r = runner.invoke(app, ["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.wsc"), "--psnr", "20", "--steps", "300",
                            "--device", "cpu"])
    assert r.exit_code == 0 and "not reached" not in r.output, r.output
    r = runner.invoke(app, ["decompress", str(tmp_path / "a.wsc"), "-o", str(tmp_path / "out.png"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    a, b = read_signal(tmp_path / "in.png").values, read_signal(tmp_path / "out.png").values
    # the written PNG rounds to 8 bits: it may lose a little of the encoder's PSNR
    assert a.shape == b.shape and 10 * np.log10(1 / float((a - b).square().mean())) > 20 - 0.3
    data = bytearray((tmp_path / "a.wsc").read_bytes())
    data[30] ^= 1
    (tmp_path / "bad.wsc").write_bytes(bytes(data))
    r = runner.invoke(app, ["decompress", str(tmp_path / "bad.wsc"), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "checksum" in " ".join(r.output.split())
    r = runner.invoke(app, ["decompress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "not a weightspace compressed file" in " ".join(r.output.split())
    r = runner.invoke(app, ["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.wsc")])
    assert r.exit_code == 2 and "exactly one of --bpp and --psnr" in " ".join(r.output.split())


def test_coinpp_base_then_compress(tmp_path) -> None:
    base = tmp_path / "base.safetensors"
    r = runner.invoke(app, ["compress-base", "digits", "-o", str(base), "--patch", "8x8", "--hidden", "16,16",
                            "--latent", "8", "--steps", "20", "--limit", "200", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    _image(tmp_path / "in.png", 16)
    r = runner.invoke(app, ["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.wsc"), "--psnr", "15",
                            "--method", "coin++", "--base", str(base), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["decompress", str(tmp_path / "a.wsc"), "-o", str(tmp_path / "o.png")])
    assert r.exit_code == 2 and "needs its base" in " ".join(r.output.split())
    r = runner.invoke(app, ["decompress", str(tmp_path / "a.wsc"), "-o", str(tmp_path / "o.png"), "--base", str(base)])
    assert r.exit_code == 0, r.output
    assert torch.is_tensor(read_signal(tmp_path / "o.png").values)


@pytest.mark.filterwarnings("ignore:each crop's latents get only")  # a 20-step base: fast, not good
def test_pyramid_base_then_compress(tmp_path) -> None:
    base = tmp_path / "pyr.safetensors"
    r = runner.invoke(app, ["compress-base", "digits", "-o", str(base), "--patch", "8x8", "--layout", "pyramid",
                            "--levels", "3", "--hidden", "8", "--steps", "20", "--limit", "100", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "latent-pyramid base" in r.output
    _image(tmp_path / "in.png", 16)
    r = runner.invoke(app, ["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.wsc"), "--bpp", "4",
                            "--method", "coin++", "--base", str(base), "--search", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "coin++pyramid" in r.output
    r = runner.invoke(app, ["decompress", str(tmp_path / "a.wsc"), "-o", str(tmp_path / "o.png")])
    assert r.exit_code == 2 and "needs its base" in " ".join(r.output.split())
    r = runner.invoke(app, ["decompress", str(tmp_path / "a.wsc"), "-o", str(tmp_path / "o.png"), "--base", str(base)])
    assert r.exit_code == 0, r.output
    assert read_signal(tmp_path / "o.png").values.shape == (16, 16, 1)
    r = runner.invoke(app, ["compress-base", "digits", "-o", str(base), "--patch", "8x8", "--layout", "grid"])
    assert r.exit_code == 2 and "unknown layout" in " ".join(r.output.split())
