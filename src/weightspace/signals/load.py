"""One entry point for every signal source, by name or path: `load_signals`.

Names: ``digits``, ``mnist-subset`` (images), ``shapes`` (procedural 3D), ``tones``
(procedural audio). Paths are recognised by their contents: MNIST-layout IDX files,
CIFAR binary files, class folders of images, of ``.wav`` files or of meshes. ``kind``
forces the reading of a folder (``image``, ``shape``, ``audio``).

The arguments that loaded a dataset are JSON-able (`source_record`), so a zoo can store
them and the renderer can load the same signals again to compare against.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from weightspace.signals.base import SignalDataset

SIGNAL_NAMES: dict[str, str] = {
    "digits": "image",
    "mnist-subset": "image",
    "shapes": "shape",
    "tones": "audio",
}
# options each kind of source understands (besides seed)
_OPTIONS: dict[str, set[str]] = {
    "images": {"limit"},
    "shapes": {"per_class", "resolution", "field"},
    "meshes": {"limit", "resolution", "field"},
    "tones": {"per_class", "length"},
    "wav": {"limit", "length"},
}


def _detect(source: str, kind: str | None) -> str:
    if source in SIGNAL_NAMES:
        found = SIGNAL_NAMES[source]
        if kind is not None and kind != found:
            raise ValueError(f"dataset {source!r} holds {found} signals, not {kind}")
        return {"image": "images", "shape": "shapes", "audio": "tones"}[found]
    path = Path(source)
    if not path.is_dir():
        raise ValueError(
            f"unknown dataset {source!r}: expected one of {sorted(SIGNAL_NAMES)} or a directory "
            "(MNIST IDX files, CIFAR binary files, or root/<class>/<images | .wav | meshes>)"
        )
    if kind == "image":
        return "images"
    from weightspace.signals.audio import is_wav_folder
    from weightspace.signals.meshes import is_mesh_folder

    if kind == "audio" or (kind is None and is_wav_folder(path)):
        return "wav"
    if kind == "shape" or (kind is None and is_mesh_folder(path)):
        return "meshes"
    if kind is not None and kind != "image":
        raise ValueError(f"unknown signal kind {kind!r}; expected image, shape or audio")
    return "images"


def load_signals(
    source: str | os.PathLike[str], *, kind: str | None = None, seed: int = 0, **options: Any
) -> SignalDataset:
    """Load ``source`` (module docstring). ``options`` that are None are ignored; others must
    apply to the source: ``limit`` (per split for images, per class for folders of meshes or
    WAVs), ``per_class``, ``resolution``, ``field`` (shapes), ``length`` (audio samples)."""
    source = str(source)
    loader = _detect(source, kind)
    options = {k: v for k, v in options.items() if v is not None}
    wrong = sorted(set(options) - _OPTIONS[loader])
    if wrong:
        raise ValueError(
            f"option(s) {', '.join(wrong)} do not apply to {source!r} ({loader}); "
            f"it takes {', '.join(sorted(_OPTIONS[loader])) or 'none'}"
        )
    if loader == "images":
        from weightspace.signals.images import load_images

        return load_images(source, seed=seed, **options)
    if loader == "shapes":
        from weightspace.signals.shapes import load_shapes

        if "per_class" in options:
            options["n_per_class"] = options.pop("per_class")
        return load_shapes(seed=seed, **options)
    if loader == "meshes":
        from weightspace.signals.meshes import load_meshes

        return load_meshes(source, seed=seed, **options)
    if loader == "tones":
        from weightspace.signals.audio import load_tones

        if "per_class" in options:
            options["n_per_class"] = options.pop("per_class")
        return load_tones(seed=seed, **options)
    from weightspace.signals.audio import load_wav_folder

    return load_wav_folder(source, seed=seed, **options)


def source_record(
    source: str | os.PathLike[str], *, kind: str | None = None, seed: int = 0, **options: Any
) -> dict[str, Any]:
    """The JSON-able arguments of a `load_signals` call (paths made absolute)."""
    source = str(source)
    if source not in SIGNAL_NAMES and Path(source).exists():
        source = str(Path(source).resolve())
    return {
        "dataset": source,
        "kind": kind,
        "seed": seed,
        **{k: v for k, v in options.items() if v is not None},
    }


def load_from_record(record: dict[str, Any]) -> SignalDataset:
    """Load the signals a `source_record` describes."""
    rec = dict(record)
    return load_signals(rec.pop("dataset"), **rec)


__all__ = ["SIGNAL_NAMES", "load_from_record", "load_signals", "source_record"]
