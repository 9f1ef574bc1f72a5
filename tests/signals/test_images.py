"""Tests for weightspace.signals.images: loaders, splits, IDX parsing, image folders."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from weightspace.signals import (
    ImageDataset,
    load_digits,
    load_image_folder,
    load_images,
    load_mnist_idx,
    load_mnist_subset,
    read_idx,
)

MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
          np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def write_idx(path: Path, arr: np.ndarray, *, compress: bool = False) -> Path:
    """Minimal IDX writer: big-endian header and payload, optionally gzipped."""
    header = struct.pack(">BBBB", 0, 0, _CODES[arr.dtype], arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def _check_dataset(ds: ImageDataset, shape: tuple[int, int, int], n: int) -> None:
    assert len(ds) == n and ds.shape == shape
    assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
    assert ds.images.shape == (n, *shape) and ds.labels.shape == (n,)
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    assert len(ds.split) == n and set(ds.split) <= {"train", "val", "test"}


def test_digits_shapes_and_split_sizes() -> None:
    ds = load_digits()
    _check_dataset(ds, (8, 8, 1), 1797)
    assert float(ds.images.max()) == 1.0 and ds.name == "digits" and len(ds.classes) == 10
    counts = {s: ds.split.count(s) for s in ("train", "val", "test")}
    assert counts == {"test": round(1797 * 0.2), "val": round(1797 * 0.1),
                      "train": 1797 - round(1797 * 0.2) - round(1797 * 0.1)}


def test_mnist_subset_shapes() -> None:
    ds = load_mnist_subset()
    _check_dataset(ds, (28, 28, 1), 5000)
    assert float(ds.images.max()) == 1.0 and ds.name == "mnist-subset"
    assert sorted(set(ds.labels.tolist())) == list(range(10))


def test_mnist_subset_limit_covers_classes() -> None:
    # The bundled CSV is class-sorted, so a limit must not keep only zeros.
    ds = load_mnist_subset(limit=50, seed=3)
    assert len(ds.select_split("train")) == 50 and len(ds.select_split("test")) == 50
    assert len(set(ds.select_split("train").labels.tolist())) >= 5


def test_split_determinism_and_seed_dependence() -> None:
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    assert a.split == b.split and torch.equal(a.images, b.images)
    assert a.split != c.split


def test_splits_are_disjoint_and_cover() -> None:
    ds = load_digits(seed=5)
    parts = {s: ds.select_split(s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(ds)
    idx = {s: {i for i, t in enumerate(ds.split) if t == s} for s in parts}
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"])
    assert not (idx["val"] & idx["test"])
    assert all(set(p.split) == {s} for s, p in parts.items())


def test_limit_and_subset() -> None:
    ds = load_digits(limit=7)
    assert len(ds) == 21 and all(ds.split.count(s) == 7 for s in ("train", "val", "test"))
    full = load_digits()
    sub = full.subset(np.array([3, 0, 10]))
    assert torch.equal(sub.images, full.images[[3, 0, 10]])
    assert sub.split == tuple(full.split[i] for i in (3, 0, 10))
    mask = torch.zeros(len(full), dtype=torch.bool)
    mask[:4] = True
    assert len(full.subset(mask)) == 4
    with pytest.raises(ValueError, match="unknown split"):
        full.select_split("validation")


def test_coordinates_and_targets_pixel_order() -> None:
    images = torch.rand(2, 3, 5, 2)
    ds = ImageDataset(images, torch.tensor([0, 1]), ("train", "test"), "toy", ("a", "b"))
    coords, targets = ds.coordinates(), ds.targets()
    assert coords.shape == (15, 2) and coords.dtype == torch.float32
    assert targets.shape == (2, 15, 2) and targets.dtype == torch.float32
    h, w = 3, 5
    for r in range(h):
        for c in range(w):
            assert torch.equal(targets[:, r * w + c], images[:, r, c])
            assert coords[r * w + c].tolist() == pytest.approx([-1 + 2 * r / (h - 1), -1 + 2 * c / (w - 1)])


def test_container_validates() -> None:
    with pytest.raises(ValueError):
        ImageDataset(torch.rand(2, 3, 3), torch.tensor([0, 1]), ("train", "test"), "bad", ("a",))
    with pytest.raises(ValueError):
        ImageDataset(torch.rand(2, 3, 3, 1), torch.tensor([0, 1]), ("train", "holdout"), "bad", ("a",))
    split = np.array(["train", "val"])
    ds = ImageDataset(torch.rand(2, 3, 3, 1), torch.tensor([0, 1]), split, "ok", ("a", "b"))
    assert ds.split == ("train", "val")


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, compress: bool, dtype: type) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.random((4, 3, 5)) * 100).astype(dtype)
    out = read_idx(write_idx(tmp_path / "data.idx", arr, compress=compress))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_idx_gzip_detected_by_magic_not_name(tmp_path: Path) -> None:
    arr = np.arange(6, dtype=np.int32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain.gz", arr)), arr)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "packed", arr, compress=True)), arr)


_GOOD = struct.pack(">BBBBI", 0, 0, 8, 1, 10) + bytes(10)
BAD_IDX: dict[str, bytes] = {
    "truncated": _GOOD[:-3],
    "trailing": _GOOD + b"xx",
    "wrong_magic": b"\x01\x02" + _GOOD[2:],
    "foreign_png": b"\x89PNG\r\n\x1a\n" + bytes(32),
    "dtype_code": struct.pack(">BBBBI", 0, 0, 0x07, 1, 10) + bytes(10),
    "short_header": b"\x00\x00\x08\x03\x00\x00",
    "empty": b"",
    # ~6e29 bytes claimed: must be rejected from the header, never allocated.
    "absurd": struct.pack(">BBBB3I", 0, 0, 0x0E, 3, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(16),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("kind", sorted(BAD_IDX))
def test_idx_bad_input_raises_value_error(tmp_path: Path, compress: bool, kind: str) -> None:
    payload = BAD_IDX[kind]
    path = tmp_path / f"bad-{kind}.idx"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(ValueError, match=f"bad-{kind}"):
        read_idx(path)


def test_idx_corrupt_gzip_stream(tmp_path: Path) -> None:
    data = gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 5000) + bytes(range(256)) * 20)
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(path)


def _write_mnist_folder(root: Path, compress: bool) -> None:
    rng = np.random.default_rng(1)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", 20), ("t10k", 6)):
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (n, 4, 3), dtype=np.uint8), compress=compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}",
                  rng.integers(0, 10, n, dtype=np.uint8), compress=compress)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_idx_small(tmp_path: Path, compress: bool) -> None:
    _write_mnist_folder(tmp_path, compress)
    ds = load_mnist_idx(tmp_path, seed=0, val_fraction=0.25)
    _check_dataset(ds, (4, 3, 1), 26)
    assert ds.split[20:] == ("test",) * 6 and ds.split[:20].count("val") == 5
    raw = read_idx(next(tmp_path.glob("train-images*")))
    assert torch.allclose(ds.images[:20, ..., 0], torch.from_numpy(raw).float() / 255)
    assert load_mnist_idx(tmp_path, seed=0, val_fraction=0.25).split == ds.split
    assert load_mnist_idx(tmp_path, seed=9, val_fraction=0.25).split != ds.split
    limited = load_images(tmp_path, limit=2)
    assert limited.name.startswith("mnist-idx:") and len(limited) == 6
    assert limited.split.count("test") == 2 and limited.split[-2:] == ("test", "test")


def test_load_mnist_idx_label_count_mismatch(tmp_path: Path) -> None:
    _write_mnist_folder(tmp_path, False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="t10k-labels"):
        load_mnist_idx(tmp_path)


def _write_png_classes(root: Path, sizes: dict[str, list[tuple[int, int]]], mode: str = "L") -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True)
        for k, (h, w) in enumerate(shapes):
            shape = (h, w) if mode == "L" else (h, w, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / cls / f"{k}.png")
    (root / next(iter(sizes)) / "notes.txt").write_text("not an image")  # non-images must be skipped


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    _write_png_classes(tmp_path, {"dog": [(6, 5)] * 4, "cat": [(6, 5)] * 3})
    ds = load_image_folder(tmp_path, test_fraction=0.3, val_fraction=0.0)
    _check_dataset(ds, (6, 5, 1), 7)
    assert ds.classes == ("cat", "dog") and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    first = np.asarray(Image.open(tmp_path / "cat" / "0.png"), dtype=np.float32) / 255
    assert torch.allclose(ds.images[0, ..., 0], torch.from_numpy(first))
    rgb = load_images(tmp_path, size=(4, 2), mode="RGB")
    assert rgb.shape == (4, 2, 3) and rgb.name.startswith("folder:")


def test_image_folder_mixed_sizes(tmp_path: Path) -> None:
    _write_png_classes(tmp_path, {"a": [(6, 5), (6, 5)], "b": [(7, 5)]})
    with pytest.raises(ValueError, match=r"b[/\\]0\.png"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=(3, 3)).shape == (3, 3, 1)


def test_load_images_dispatch_and_unknown() -> None:
    assert load_images("digits", limit=2).name == "digits"
    with pytest.raises(ValueError, match="mnist-subset"):
        load_images("cifar-10")


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"real MNIST IDX files not present at {MNIST_DIR}")
def test_real_mnist() -> None:
    ds = load_mnist_idx(MNIST_DIR, limit=100)
    _check_dataset(ds, (28, 28, 1), 300)
    assert set(ds.labels.tolist()) == set(range(10)) and ds.classes == tuple(str(c) for c in range(10))
