"""Signals for the codec: patches round-trip for 1-3 axes, files read back, bad input is named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightspace.compress.signal import Signal, from_patches, read_signal, to_patches, write_signal
from weightspace.signals.base import grid_coordinates


@settings(max_examples=40, deadline=None)
@given(
    grid=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    patch_seed=st.integers(0, 1000),
    c=st.integers(1, 3),
)
def test_patches_round_trip_and_hold_the_right_points(grid, patch_seed, c) -> None:
    rng = np.random.default_rng(patch_seed)
    patch = [int(rng.integers(1, 5)) for _ in grid]
    v = torch.from_numpy(rng.random((*grid, c)).astype(np.float32))
    p = to_patches(v, patch)
    assert p.shape[1:] == (int(np.prod(patch)), c)
    torch.testing.assert_close(from_patches(p, grid, patch), v, rtol=0, atol=0)
    # patch 0 is the corner block, its points in grid_coordinates(patch) order
    block = v[tuple(slice(0, min(pa, g)) for pa, g in zip(patch, grid))]
    if all(pa <= g for pa, g in zip(patch, grid)):
        torch.testing.assert_close(p[0], block.reshape(-1, c), rtol=0, atol=0)
    assert grid_coordinates(patch).shape[0] == p.shape[1]


def test_signal_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="channels"):
        Signal(torch.zeros(4, 4, 2), "image")
    with pytest.raises(ValueError, match="sample_rate"):
        Signal(torch.zeros(10, 1), "audio")
    with pytest.raises(ValueError, match="kind"):
        Signal(torch.zeros(4, 1), "video")
    with pytest.raises(ValueError, match="NaN"):
        Signal(torch.full((4, 4, 1), float("nan")), "image")


def test_files_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    img = Signal(torch.from_numpy(rng.integers(0, 256, (6, 7, 3)).astype(np.float32) / 255), "image")
    write_signal(img, tmp_path / "a.png")
    torch.testing.assert_close(read_signal(tmp_path / "a.png").values, img.values)
    audio = Signal(torch.from_numpy(rng.integers(0, 65535, (50, 1)).astype(np.float32) / 65534), "audio", {"sample_rate": 8000})
    write_signal(audio, tmp_path / "a.wav")
    back = read_signal(tmp_path / "a.wav")
    assert back.meta["sample_rate"] == 8000 and (back.values - audio.values).abs().max() < 2e-5
    field = rng.normal(size=(5, 8)) * 10 + 273
    np.save(tmp_path / "t.npy", field)
    g = read_signal(tmp_path / "t.npy")
    assert g.kind == "grid" and g.values.shape == (5, 8, 1)
    write_signal(g, tmp_path / "t2.npy")
    assert np.allclose(np.load(tmp_path / "t2.npy"), field, rtol=1e-5)
    np.save(tmp_path / "vol.npy", rng.random((4, 5, 6)))
    assert read_signal(tmp_path / "vol.npy").kind == "shape"
    with pytest.raises(ValueError, match="audio is written as .wav"):
        write_signal(audio, tmp_path / "a.png")
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="x.png"):
        read_signal(tmp_path / "x.png")
