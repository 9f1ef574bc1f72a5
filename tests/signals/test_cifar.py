"""CIFAR-10 / CIFAR-100 binary reader, on small files written here in the official layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from weightspace.signals.cifar import is_cifar_folder, load_cifar, read_cifar_binary
from weightspace.zoo.train_cnn import load_classification_data


def _records(rng: np.random.Generator, n: int, labels: list[np.ndarray]) -> tuple[bytes, np.ndarray]:
    """``n`` records: the label bytes, then the planes R, G, B (each 32x32 row-major).
    Returns the bytes and the images channels-last ``[n, 32, 32, 3]``."""
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(n, -1)
    rows = np.concatenate([np.stack(labels, 1).astype(np.uint8), planes], axis=1)
    return rows.tobytes(), images


def _cifar10(root: Path, per_file: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    all_images, all_labels = [], []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, per_file)
        data, images = _records(rng, per_file, [labels])
        (root / name).write_bytes(data)
        all_images.append(images)
        all_labels.append(labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (root / "batches.meta.txt").write_text("\n".join(names) + "\n\n")  # a trailing blank line is ignored
    return np.concatenate(all_images), np.concatenate(all_labels)


def test_cifar10_layout_labels_and_splits(tmp_path):
    images, labels = _cifar10(tmp_path / "cifar-10-batches-bin")
    assert is_cifar_folder(tmp_path) and not is_cifar_folder(tmp_path / "nowhere")
    ds = load_cifar(tmp_path, seed=0, val_fraction=0.2)  # the parent folder works too
    assert ds.images.shape == (18, 32, 32, 3) and ds.images.dtype == torch.float32
    # Pixel (row 5, column 7) of the green plane lands at [..., 5, 7, 1]: planes are not interleaved.
    np.testing.assert_allclose(ds.images[:, 5, 7, 1].numpy(), images[:, 5, 7, 1] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.images.numpy(), images / np.float32(255.0))
    assert ds.labels.tolist() == labels.tolist()
    assert ds.split[-3:] == ("test",) * 3 and ds.split.count("val") == 3  # 20% of 15 training images
    assert ds.classes[0] == "airplane" and len(ds.classes) == 10
    assert len(load_cifar(tmp_path, limit=1)) == 3  # one per split
    assert len(load_classification_data(tmp_path / "cifar-10-batches-bin")) == 18


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-100-binary"
    root.mkdir()
    coarse, fine = rng.integers(0, 20, 4), rng.integers(0, 100, 4)
    data, images = _records(rng, 4, [coarse, fine])
    (root / "train.bin").write_bytes(data)
    data_t, _ = _records(rng, 2, [np.array([3, 19]), np.array([42, 99])])
    (root / "test.bin").write_bytes(data_t)
    fine_ds = load_cifar(root)
    assert fine_ds.labels.tolist() == fine.tolist() + [42, 99] and len(fine_ds.classes) == 100
    assert load_cifar(root, labels="coarse").labels.tolist() == coarse.tolist() + [3, 19]
    np.testing.assert_array_equal(fine_ds.images[:4].numpy(), images / np.float32(255.0))
    images_raw, labels_raw = read_cifar_binary(root / "train.bin", 2)
    assert images_raw.shape == (4, 32, 32, 3) and labels_raw.shape == (4, 2)


def test_cifar_errors_name_the_file(tmp_path):
    root = tmp_path / "c10"
    _cifar10(root)
    with open(root / "data_batch_3.bin", "ab") as f:
        f.write(b"\x01\x02")  # a truncated extra record
    with pytest.raises(ValueError, match="data_batch_3.bin.*whole number"):
        load_cifar(root)
    (root / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
        load_cifar(root)
    with pytest.raises(FileNotFoundError, match="no CIFAR binary files"):
        load_cifar(tmp_path / "empty")
    bad = tmp_path / "bad"
    _cifar10(bad)
    data, _ = _records(np.random.default_rng(2), 3, [np.array([1, 200, 3])])
    (bad / "test_batch.bin").write_bytes(data)
    with pytest.raises(ValueError, match="label 200"):
        load_cifar(bad)
    with pytest.raises(ValueError, match="fine.*coarse"):
        load_cifar(bad, labels="medium")  # type: ignore[arg-type]
