"""CIFAR-10 / CIFAR-100 from the official *binary* files at a user path (nothing downloads).

Layouts (as distributed by the dataset's authors, Krizhevsky 2009):

- CIFAR-10, folder ``cifar-10-batches-bin``: ``data_batch_1.bin`` … ``data_batch_5.bin``
  and ``test_batch.bin``; each record is 1 label byte then 3,072 pixel bytes
  (1,024 red, 1,024 green, 1,024 blue, each a row-major 32x32 plane). Class names in
  ``batches.meta.txt``, one a line.
- CIFAR-100, folder ``cifar-100-binary``: ``train.bin`` and ``test.bin``; each record is
  a coarse label byte, a fine label byte, then the same 3,072 pixel bytes. Class names
  in ``fine_label_names.txt`` / ``coarse_label_names.txt``.

:func:`load_cifar` returns an :class:`ImageDataset` with images float32 ``[N, 32, 32, 3]``
in ``[0, 1]``: the official test file forms ``test``, a seeded ``val_fraction`` of the
training files forms ``val``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from weightspace.signals.images import ImageDataset, _build, _random_split

SIDE = 32
PIXELS = 3 * SIDE * SIDE
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR100_TRAIN, CIFAR100_TEST = "train.bin", "test.bin"
_FOLDERS = ("cifar-10-batches-bin", "cifar-100-binary")


def read_cifar_binary(path: str | os.PathLike[str], label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR binary file.

    Returns images uint8 ``[N, 32, 32, 3]`` (channels last) and labels uint8
    ``[N, label_bytes]`` (CIFAR-10: 1 label byte; CIFAR-100: coarse then fine).
    Raises ``ValueError`` naming the file when its size is not a whole number of records.
    """
    path = Path(path)
    record = label_bytes + PIXELS
    size = path.stat().st_size
    if size == 0 or size % record:
        raise ValueError(f"{path}: {size} bytes is not a whole number of {record}-byte CIFAR records "
                         f"({label_bytes} label byte(s) + {PIXELS} pixels); truncated or not a CIFAR binary file")
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, record)
    # Planes are stored [3, 32, 32] per record; the library's images are channels-last.
    images = raw[:, label_bytes:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), raw[:, :label_bytes].copy()


def find_cifar_folder(root: str | os.PathLike[str]) -> tuple[Path, Literal["cifar10", "cifar100"]] | None:
    """The folder holding CIFAR binary files (``root`` itself or the official sub-folder), and which
    dataset it is; ``None`` when there is none."""
    root = Path(root)
    for folder in (root, *(root / name for name in _FOLDERS)):
        if (folder / CIFAR10_TEST).is_file() or (folder / CIFAR10_TRAIN[0]).is_file():
            return folder, "cifar10"
        if (folder / CIFAR100_TEST).is_file() and (folder / CIFAR100_TRAIN).is_file():
            return folder, "cifar100"
    return None


def is_cifar_folder(root: str | os.PathLike[str]) -> bool:
    return Path(root).is_dir() and find_cifar_folder(root) is not None


def _class_names(path: Path, n: int) -> tuple[str, ...]:
    if path.is_file():
        names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) == n:
            return tuple(names)
    return tuple(str(i) for i in range(n))


def load_cifar(root: str | os.PathLike[str], *, seed: int = 0, val_fraction: float = 0.1,
               limit: int | None = None, labels: Literal["fine", "coarse"] = "fine") -> ImageDataset:
    """CIFAR-10 or CIFAR-100 binary files under ``root``: images ``[N, 32, 32, 3]`` in ``[0, 1]``.

    ``labels`` picks CIFAR-100's fine (100) or coarse (20) classes; it is ignored for
    CIFAR-10. ``limit`` keeps the first ``limit`` images of each split in file order.
    """
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    found = find_cifar_folder(root)
    if found is None:
        raise FileNotFoundError(f"{root}: no CIFAR binary files (expected {CIFAR10_TEST} and data_batch_*.bin, "
                                f"or {CIFAR100_TRAIN} and {CIFAR100_TEST}, here or in {' / '.join(_FOLDERS)})")
    folder, kind = found
    if kind == "cifar10":
        train_files, test_files, label_bytes, column, n_classes = list(CIFAR10_TRAIN), [CIFAR10_TEST], 1, 0, 10
        names = _class_names(folder / "batches.meta.txt", 10)
    else:
        train_files, test_files, label_bytes = [CIFAR100_TRAIN], [CIFAR100_TEST], 2
        column, n_classes = (1, 100) if labels == "fine" else (0, 20)
        names = _class_names(folder / f"{labels}_label_names.txt", n_classes)
    missing = [f for f in train_files + test_files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing CIFAR files {missing}")
    parts = {}
    for part, files in (("train", train_files), ("test", test_files)):
        arrays = [read_cifar_binary(folder / f, label_bytes) for f in files]
        parts[part] = np.concatenate([a for a, _ in arrays]), np.concatenate([y[:, column] for _, y in arrays])
        bad = parts[part][1] >= n_classes
        if bad.any():
            raise ValueError(f"{folder}: {part} label {int(parts[part][1][bad][0])} is outside "
                             f"0..{n_classes - 1} ({kind}); not a {kind} binary file?")
    n_train, n_test = len(parts["train"][1]), len(parts["test"][1])
    train_split, _ = _random_split(n_train, seed=seed, val_fraction=val_fraction, test_fraction=0.0)
    split = np.concatenate([train_split, np.full(n_test, "test", dtype=object)])
    images = np.concatenate([parts["train"][0], parts["test"][0]])
    targets = np.concatenate([parts["train"][1], parts["test"][1]]).astype(np.int64)
    return _build(images, targets, split, np.arange(len(targets)), name=f"{kind}:{folder.resolve()}",
                  classes=names, scale=255.0, limit=limit)
