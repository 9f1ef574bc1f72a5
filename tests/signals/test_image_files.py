"""Image files read for INR zoos (`load_image_folder`) and the codec (`read_image`): every mode
scaled to [0, 1] without clipping, grey by luma, decompression bombs refused from the header."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from weightspace.compress.signal import read_signal
from weightspace.signals.images import load_image_folder, read_image


def _folder(tmp_path, images: dict[str, list[Image.Image]], suffix: str = ".png"):
    for cls, ims in images.items():
        (tmp_path / cls).mkdir()
        for i, im in enumerate(ims):
            im.save(tmp_path / cls / f"{i}{suffix}")
    return tmp_path


def test_folder_of_16_bit_images_keeps_its_levels(tmp_path) -> None:
    rng = np.random.default_rng(0)
    levels = [rng.integers(0, 65536, size=(8, 8), dtype=np.uint16) for _ in range(4)]
    root = _folder(tmp_path, {"a": [Image.fromarray(x) for x in levels[:2]], "b": [Image.fromarray(x) for x in levels[2:]]})
    data = load_image_folder(root, test_fraction=0.0, val_fraction=0.0)
    got = np.round(data.images[..., 0].numpy().astype(np.float64) * 65535).astype(np.int64)
    assert np.array_equal(got, np.stack(levels).astype(np.int64))  # convert("L") clipped 99.6% of these to 1.0
    assert data.labels.tolist() == [0, 0, 1, 1]


def test_folder_rgb_to_grey_uses_luma_and_grey_to_rgb_repeats(tmp_path) -> None:
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    root = _folder(tmp_path, {"a": [Image.fromarray(rgb)], "b": [Image.fromarray(rgb[..., 0])]})
    grey = load_image_folder(root, test_fraction=0.0, val_fraction=0.0)
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert np.allclose(grey.images[0].numpy(), expected, atol=1e-6)
    assert np.allclose(grey.images[1].numpy(), 200 / 255)
    colour = load_image_folder(root, mode="RGB", test_fraction=0.0, val_fraction=0.0)
    assert colour.images.shape == (2, 4, 4, 3)
    assert np.allclose(colour.images[1].numpy(), 200 / 255)  # grey repeated into every channel


def test_folder_resize_in_float_keeps_16_bit_precision(tmp_path) -> None:
    x = np.full((8, 8), 1000, dtype=np.uint16)  # 1000 / 65535 is no multiple of 1/255
    root = _folder(tmp_path, {"a": [Image.fromarray(x)]})
    data = load_image_folder(root, size=(4, 4), test_fraction=0.0, val_fraction=0.0)
    assert data.images.shape == (1, 4, 4, 1)
    assert np.allclose(data.images.numpy(), 1000 / 65535, atol=1e-7)


def test_folder_refuses_transparency_naming_the_file(tmp_path) -> None:
    rgba = np.full((4, 4, 4), 255, dtype=np.uint8)
    rgba[0, 0, 3] = 0
    root = _folder(tmp_path, {"a": [Image.fromarray(rgba, "RGBA")]})
    with pytest.raises(ValueError, match=r"0\.png: a RGBA image with transparency"):
        load_image_folder(root)


@pytest.mark.parametrize("factor", [1.5, 3.0])  # Pillow warns between 1x and 2x its limit, errors above
def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch, factor) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(path)  # 10,000 pixels; the limit is lowered below that
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(10_000 / factor))
    with pytest.raises(ValueError, match="bomb.png: refused, more than"):
        read_image(path)
    with pytest.raises(ValueError, match="bomb.png: refused"):
        read_signal(path)
    (tmp_path / "c").mkdir()
    path.rename(tmp_path / "c" / "bomb.png")
    with pytest.raises(ValueError, match="bomb.png: refused"):
        load_image_folder(tmp_path)


def test_truncated_image_is_one_error(tmp_path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="cut.png: cannot read image"):
        read_image(path)
