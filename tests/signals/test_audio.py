"""Audio signals: WAV reading and the procedural tones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from weightspace.signals import SignalDataset, load_signals, load_tones, load_wav_folder, read_wav
from weightspace.signals.audio import TONE_CLASSES


@pytest.mark.parametrize(
    ("dtype", "scale", "offset"),
    [(np.int16, 32768.0, 0.0), (np.int32, 2.0**31, 0.0), (np.uint8, 128.0, 128.0), (np.float32, 1.0, 0.0)],
)
def test_read_wav_full_scale_and_mono(tmp_path, dtype, scale, offset) -> None:
    x = np.array([[0.0, 0.5], [-1.0, 0.25], [0.75, -0.5]])  # two channels
    raw = (x * scale + offset).clip(
        np.iinfo(dtype).min if dtype != np.float32 else -1, np.iinfo(dtype).max if dtype != np.float32 else 1
    )
    wavfile.write(tmp_path / "a.wav", 8000, raw.astype(dtype))
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and y.dtype == torch.float32 and y.shape == (3,)
    np.testing.assert_allclose(
        y.numpy(), raw.astype(dtype).astype(np.float64).mean(1) / scale - offset / scale, atol=1e-6
    )


def test_wav_folder(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("drum", "bell"):
        (tmp_path / cls).mkdir()
        for k in range(2):
            wavfile.write(
                tmp_path / cls / f"{k}.wav", 4000, (rng.uniform(-1, 1, 40 + k) * 30000).astype(np.int16)
            )
    with pytest.raises(ValueError, match="length="):
        load_wav_folder(tmp_path)
    ds = load_wav_folder(tmp_path, length=40)
    assert isinstance(ds, SignalDataset) and ds.kind == "audio" and ds.signal_shape == (40, 1)
    assert ds.classes == ("bell", "drum") and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.meta["sample_rate"] == 4000 and 0 <= float(ds.values.min()) and float(ds.values.max()) <= 1
    x, _ = read_wav(tmp_path / "bell" / "1.wav")
    torch.testing.assert_close(ds.values[1, :, 0], (x[:40] + 1) / 2)
    assert torch.equal(ds.coordinates()[:, 0], torch.linspace(-1, 1, 40))
    assert load_signals(tmp_path, length=40).kind == "audio"
    wavfile.write(tmp_path / "drum" / "2.wav", 8000, np.zeros(40, np.int16))
    with pytest.raises(ValueError, match="sample rate"):
        load_wav_folder(tmp_path, length=40)
    (tmp_path / "drum" / "2.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(ValueError, match="2.wav"):
        load_wav_folder(tmp_path, length=40)


def test_tones_are_labelled_deterministic_and_in_range() -> None:
    ds = load_tones(3, 128, seed=2)
    assert len(ds) == 3 * len(TONE_CLASSES) and ds.values.shape == (len(ds), 128, 1)
    assert ds.labels.tolist() == [c for c in range(len(TONE_CLASSES)) for _ in range(3)]
    assert 0.0 <= float(ds.values.min()) and float(ds.values.max()) <= 1.0
    assert torch.equal(ds.values, load_tones(3, 128, seed=2).values)
    assert not torch.equal(ds.values, load_tones(3, 128, seed=3).values)
    assert torch.equal(load_tones(1, 128, seed=2, classes=("square",)).values[0], ds.values[3])
    # classes differ: a square wave takes only its two levels, a sine sweeps between them
    sq, sine = ds.values[3, :, 0], ds.values[0, :, 0]
    assert len(sq.unique()) <= 3 and len(sine.unique()) > 50


def test_load_signals_rejects_options_that_do_not_apply() -> None:
    with pytest.raises(ValueError, match="field"):
        load_signals("digits", field="sdf")
    with pytest.raises(ValueError, match="not audio"):
        load_signals("shapes", kind="audio")
    assert load_signals("tones", per_class=1, length=16).signal_shape == (16, 1)
