"""1D audio signals: WAV files and a procedural set of labelled tones.

A clip of ``T`` samples is a `SignalSet` of kind ``"audio"``: coordinates are
``torch.linspace(-1, 1, T)`` (``[T, 1]``), values ``[N, T, 1]`` are full-scale samples
``x`` in ``[-1, 1]`` mapped to ``(x + 1) / 2`` in ``[0, 1]``. The mapping is fixed, not a
per-clip peak normalisation, so loudness is kept and decoding is exact. No resampling:
every clip of a dataset must share one sample rate, recorded in ``meta``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from weightspace.signals.base import SignalSet, grid_coordinates, seeded_split

AUDIO_ENCODING = "(x + 1) / 2 of full-scale samples x in [-1, 1]"
TONE_CLASSES: tuple[str, ...] = (
    "sine",
    "square",
    "sawtooth",
    "triangle",
    "chirp_up",
    "chirp_down",
    "am",
    "decay",
)


def read_wav(path: str | os.PathLike[str]) -> tuple[Tensor, int]:
    """Mono float32 samples ``[T]`` in ``[-1, 1]`` and the sample rate of a WAV file.

    Integer PCM is scaled by its full scale (uint8 is offset-binary); float WAVs are
    clipped to [-1, 1]; several channels are averaged.
    """
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(str(path))
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read WAV ({e})") from e
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        x = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)  # 24-bit comes as left-aligned int32
    else:
        x = np.clip(data.astype(np.float32), -1.0, 1.0)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        raise ValueError(f"{path}: no samples")
    return torch.from_numpy(np.ascontiguousarray(x)), int(rate)


def _audio_set(
    clips: list[Tensor],
    labels: list[int],
    classes: tuple[str, ...],
    name: str,
    rate: int,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> SignalSet:
    t = len(clips[0])
    values = ((torch.stack(clips) + 1.0) / 2.0).clamp(0.0, 1.0)[..., None].contiguous()
    return SignalSet(
        values,
        grid_coordinates((t,)),
        torch.tensor(labels, dtype=torch.int64),
        tuple(seeded_split(len(clips), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)),
        name,
        classes,
        "audio",
        (t, 1),
        True,
        {"sample_rate": rate, "encoding": AUDIO_ENCODING},
    )


def load_wav_folder(
    root: str | os.PathLike[str],
    length: int | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> SignalSet:
    """WAV clips under ``root/<class>/*.wav`` as a `SignalSet` of kind ``"audio"``.

    ``length`` crops or zero-pads every clip to that many samples; without it all clips
    must have the same length. Classes are the sorted sub-folder names; ``limit`` keeps
    at most that many clips per class.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    files = []
    for label, cls in enumerate(classes):
        found = [f for f in sorted((root / cls).iterdir()) if f.is_file() and f.suffix.lower() == ".wav"]
        files += [(f, label) for f in found[:limit]]
    if not files:
        raise ValueError(f"{root}: no .wav files in class sub-folders")
    clips, rate = [], None
    for f, _ in files:
        x, r = read_wav(f)
        if rate is not None and r != rate:
            raise ValueError(
                f"{f}: sample rate {r} differs from {rate} of {files[0][0]} (no resampling is done)"
            )
        rate = r
        if length is not None:
            x = torch.nn.functional.pad(x[:length], (0, max(0, length - len(x))))
        elif clips and len(x) != len(clips[0]):
            raise ValueError(
                f"{f}: {len(x)} samples, {files[0][0]} has {len(clips[0])}; pass length= to crop/pad"
            )
        clips.append(x)
    assert rate is not None
    return _audio_set(
        clips,
        [lb for _, lb in files],
        classes,
        f"wav:{root.resolve()}",
        rate,
        seed,
        val_fraction,
        test_fraction,
    )


def _tone(cls: str, g: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """One clip of class ``cls`` at times ``t`` (seconds); peak amplitude in [0.5, 0.9].

    The base frequency is 2-10 cycles per clip, whatever the sample rate and length: a
    SIREN with omega 30 on coordinates in [-1, 1] fits that range in the recipes' steps.
    """
    clip = len(t) / (1.0 / (t[1] - t[0]) if len(t) > 1 else 1.0)  # seconds
    amp, f0, phase = g.uniform(0.5, 0.9), g.uniform(2.0, 10.0) / clip, g.uniform(0, 2 * np.pi)
    cycles = f0 * t + phase / (2 * np.pi)
    if cls == "sine":
        x = np.sin(2 * np.pi * cycles)
    elif cls == "square":
        x = np.sign(np.sin(2 * np.pi * cycles))
    elif cls == "sawtooth":
        x = 2.0 * (cycles - np.floor(cycles + 0.5))
    elif cls == "triangle":
        x = 2.0 * np.abs(2.0 * (cycles - np.floor(cycles + 0.5))) - 1.0
    elif cls in ("chirp_up", "chirp_down"):
        f1 = f0 * g.uniform(2.0, 4.0)
        lo, hi = (f0, f1) if cls == "chirp_up" else (f1, f0)
        rate = (hi - lo) / t[-1]
        x = np.sin(2 * np.pi * (lo * t + 0.5 * rate * t * t) + phase)
    elif cls == "am":
        x = np.sin(2 * np.pi * cycles) * (0.5 + 0.5 * np.sin(2 * np.pi * g.uniform(5.0, 20.0) * t))
    elif cls == "decay":
        x = np.sin(2 * np.pi * cycles) * np.exp(-t * g.uniform(10.0, 40.0))
    else:
        raise ValueError(f"unknown tone class {cls!r}; known: {', '.join(TONE_CLASSES)}")
    return amp * x


def load_tones(
    n_per_class: int = 20,
    length: int = 1024,
    *,
    sample_rate: int = 8000,
    seed: int = 0,
    classes: tuple[str, ...] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> SignalSet:
    """Procedural labelled tones (sine, square, sawtooth, triangle, chirps, AM, decaying sine).

    Values ``[n_per_class * len(classes), length, 1]`` in [0, 1], class-major; clip ``j``
    of a class depends only on ``(seed, class, j)``. Base frequencies: 2-10 cycles per clip.
    """
    classes = tuple(classes or TONE_CLASSES)
    t = np.arange(length) / sample_rate
    clips, labels = [], []
    for c, name in enumerate(classes):
        if name not in TONE_CLASSES:
            raise ValueError(f"unknown tone class {name!r}; known: {', '.join(TONE_CLASSES)}")
        for j in range(n_per_class):
            g = np.random.default_rng((seed, TONE_CLASSES.index(name), j))
            clips.append(torch.from_numpy(_tone(name, g, t).astype(np.float32)))
            labels.append(c)
    return _audio_set(clips, labels, classes, "tones", sample_rate, seed, val_fraction, test_fraction)


def is_wav_folder(root: str | os.PathLike[str]) -> bool:
    """True if some class sub-folder of ``root`` holds a ``.wav`` file."""
    root = Path(root)
    return root.is_dir() and any(
        f.suffix.lower() == ".wav" for d in root.iterdir() if d.is_dir() for f in d.iterdir()
    )


__all__ = ["AUDIO_ENCODING", "TONE_CLASSES", "is_wav_folder", "load_tones", "load_wav_folder", "read_wav"]
