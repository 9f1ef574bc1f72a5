"""SVHN (Street View House Numbers, cropped digits) from the official ``.mat`` files at a
user path (nothing downloads).

Layout (format 2 as distributed by Netzer et al. 2011): ``train_32x32.mat``,
``test_32x32.mat`` and optionally ``extra_32x32.mat``, each a MATLAB 5 file with
``X`` uint8 ``[32, 32, 3, N]`` (height, width, channel, image) and ``y`` ``[N, 1]`` with
labels 1..10, where 10 stands for the digit 0. Read with scipy's MATLAB reader (a plain
binary format; no pickle involved).

:func:`load_svhn` returns an :class:`ImageDataset` with images float32 ``[N, 32, 32, 3]``
in ``[0, 1]`` and labels 0..9 (the digit shown): the official test file forms ``test``, a
seeded ``val_fraction`` of the training file (plus ``extra`` when asked) forms ``val``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from weightspace.signals.images import ImageDataset, _build, _random_split

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def is_svhn_folder(root: str | os.PathLike[str]) -> bool:
    """True if ``root`` holds SVHN's train and test ``.mat`` files."""
    return all((Path(root) / FILES[p]).is_file() for p in ("train", "test"))


def read_svhn_mat(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN ``.mat`` file: images uint8 ``[N, 32, 32, 3]`` (channels last) and digit
    labels int64 ``[N]`` (the file's 10 mapped to 0). Raises ``ValueError`` naming the file
    when it is truncated, not a MATLAB file, or lacks SVHN's arrays."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except (ValueError, TypeError, OSError, EOFError, NotImplementedError) as e:
        raise ValueError(f"{path}: cannot read as an SVHN MATLAB file ({type(e).__name__}: {e})") from e
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path}: no SVHN arrays X and y (found {sorted(k for k in mat if not k.startswith('__'))})")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise ValueError(f"{path}: X should be uint8 [32, 32, 3, N], got {x.dtype} {list(x.shape)}")
    if y.shape != (x.shape[3],):
        raise ValueError(f"{path}: {y.size} labels for {x.shape[3]} images")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise ValueError(f"{path}: labels must be 1..10 (10 is the digit 0), found {int(y.min())}..{int(y.max())}")
    images = np.ascontiguousarray(x.transpose(3, 0, 1, 2))
    return images, (y.astype(np.int64) % 10)


def load_svhn(root: str | os.PathLike[str], *, seed: int = 0, val_fraction: float = 0.1,
              limit: int | None = None, extra: bool = False) -> ImageDataset:
    """SVHN's ``.mat`` files under ``root``: images ``[N, 32, 32, 3]`` in ``[0, 1]``, labels
    0..9. ``extra`` adds the 531k-image extra set to the training part. ``limit`` keeps
    the first ``limit`` images of each split in file order."""
    root = Path(root)
    wanted = ["train", "test"] + (["extra"] if extra else [])
    missing = [FILES[p] for p in wanted if not (root / FILES[p]).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: missing SVHN files {missing}")
    parts = {p: read_svhn_mat(root / FILES[p]) for p in wanted}
    train = [parts[p] for p in ("train", "extra") if p in parts]
    train_x, train_y = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    test_x, test_y = parts["test"]
    train_split, _ = _random_split(len(train_y), seed=seed, val_fraction=val_fraction, test_fraction=0.0)
    split = np.concatenate([train_split, np.full(len(test_y), "test", dtype=object)])
    return _build(np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y]), split,
                  np.arange(len(split)), name=f"svhn:{root.resolve()}", classes=[str(d) for d in range(10)],
                  scale=255.0, limit=limit)
