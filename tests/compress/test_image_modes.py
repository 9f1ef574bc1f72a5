"""`read_signal` reads every Pillow image mode into [0, 1] without clipping or silent loss.

Each test writes an image of one mode with Pillow into a temporary directory and checks
the values the codec would compress: 16-bit levels stay distinct, palettes and CMYK become
their RGB colours, opaque alpha is dropped and real transparency is refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from weightspace.compress.signal import read_signal


def _read(im: Image.Image, path) -> np.ndarray:
    im.save(path)
    with Image.open(path) as back:
        mode = back.mode
    values = read_signal(path).values.numpy()
    assert values.dtype == np.float32 and values.min() >= 0 and values.max() <= 1
    return values, mode


def test_16_bit_ramp_keeps_every_level(tmp_path) -> None:
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    v, mode = _read(Image.fromarray(ramp), tmp_path / "ramp.png")
    assert mode.startswith("I;16") or mode == "I"  # however Pillow reads 16-bit PNG back
    assert v.shape == (256, 256, 1)
    assert np.array_equal(np.round(v[..., 0].astype(np.float64) * 65535).astype(np.int64), ramp)
    assert len(np.unique(v)) == 65536 and (v == 1.0).sum() == 1  # no clipping to white


def test_big_endian_16_bit_tiff(tmp_path) -> None:
    levels = np.array([[0, 1, 257], [32768, 65534, 65535]], dtype=">u2")
    v, mode = _read(Image.frombytes("I;16B", (3, 2), levels.tobytes()), tmp_path / "be.tif")
    assert mode.startswith("I;16")
    assert np.array_equal(np.round(v[..., 0].astype(np.float64) * 65535), levels.astype(np.float64))


def test_32_bit_integer_pixels_read_as_16_bit_or_refused(tmp_path) -> None:
    ok = np.array([[0, 1000], [40000, 65535]], dtype=np.int32)
    v, mode = _read(Image.fromarray(ok), tmp_path / "i.tif")
    assert mode == "I" and np.allclose(v[..., 0], ok / 65535.0, atol=0, rtol=1e-7)
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"span \[0, 70000\].*16-bit range"):
        read_signal(tmp_path / "wide.tif")
    Image.fromarray(np.array([[-5, 10]], dtype=np.int32)).save(tmp_path / "neg.tif")
    with pytest.raises(ValueError, match="outside the 16-bit range"):
        read_signal(tmp_path / "neg.tif")


def test_float_pixels_in_unit_range_or_refused(tmp_path) -> None:
    f = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    v, mode = _read(Image.fromarray(f), tmp_path / "f.tif")
    assert mode == "F" and np.array_equal(v[..., 0], f)
    Image.fromarray(np.array([[0.0, 3.5]], dtype=np.float32)).save(tmp_path / "big.tif")
    with pytest.raises(ValueError, match=r"float pixels must be finite and in \[0, 1\].*3\.5"):
        read_signal(tmp_path / "big.tif")
    Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="finite"):
        read_signal(tmp_path / "nan.tif")


def test_8_bit_grey_rgb_and_bilevel(tmp_path) -> None:
    g = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    v, _ = _read(Image.fromarray(g), tmp_path / "g.png")
    assert np.array_equal(v[..., 0], g / np.float32(255))
    rgb = np.arange(24, dtype=np.uint8).reshape(2, 4, 3) * 10
    v, _ = _read(Image.fromarray(rgb), tmp_path / "rgb.png")
    assert v.shape == (2, 4, 3) and np.array_equal(v, rgb / np.float32(255))
    bits = np.array([[True, False, True], [False, False, True]])
    v, mode = _read(Image.fromarray(bits), tmp_path / "b.png")
    assert mode == "1" and np.array_equal(v[..., 0], bits.astype(np.float32))


def test_palette_becomes_its_rgb_colours(tmp_path) -> None:
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 128, 255, 10, 20, 30] + [0] * (256 * 3 - 9))
    im.putdata([0, 1, 2])
    v, mode = _read(im, tmp_path / "p.png")
    assert mode == "P" and v.shape == (1, 3, 3)
    assert np.array_equal(np.round(v[0] * 255), [[255, 0, 0], [0, 128, 255], [10, 20, 30]])
    im.info["transparency"] = 1  # index 1 transparent, and used
    im.save(tmp_path / "pt.png", transparency=1)
    with pytest.raises(ValueError, match=r"P image with transparency \(33\.3% of pixels"):
        read_signal(tmp_path / "pt.png")


def test_cmyk_becomes_rgb(tmp_path) -> None:
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)  # white, cyan, black
    v, mode = _read(Image.fromarray(cmyk, mode="CMYK"), tmp_path / "c.tif")
    assert mode == "CMYK" and v.shape == (1, 3, 3)
    assert np.array_equal(v[0], [[1, 1, 1], [0, 1, 1], [0, 0, 0]])


@pytest.mark.parametrize("mode,channels", [("RGBA", 3), ("LA", 1)])
def test_opaque_alpha_is_dropped_and_transparency_refused(tmp_path, mode, channels) -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (4, 5, channels), dtype=np.uint8)
    alpha = np.full((4, 5, 1), 255, dtype=np.uint8)
    im = Image.fromarray(np.concatenate([colour, alpha], axis=-1), mode=mode)
    v, _ = _read(im, tmp_path / "opaque.png")
    assert v.shape == (4, 5, channels) and np.array_equal(v, colour / np.float32(255))
    alpha[0, 0] = 0
    Image.fromarray(np.concatenate([colour, alpha], axis=-1), mode=mode).save(tmp_path / "t.png")
    with pytest.raises(ValueError, match=rf"{mode} image with transparency \(5\.0% of pixels not opaque\)"):
        read_signal(tmp_path / "t.png")
