"""SVHN .mat reader, on small files written here in the official layout (format 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat

from weightspace.signals.images import load_images
from weightspace.signals.svhn import is_svhn_folder, load_svhn, read_svhn_mat


def _write(path, rng, n):
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)  # 1..10, 10 = digit 0
    savemat(path, {"X": x, "y": y})
    return x.transpose(3, 0, 1, 2), y[:, 0].astype(np.int64) % 10


def test_svhn_layout_labels_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    train_x, train_y = _write(tmp_path / "train_32x32.mat", rng, 10)
    test_x, test_y = _write(tmp_path / "test_32x32.mat", rng, 4)
    assert is_svhn_folder(tmp_path) and not is_svhn_folder(tmp_path / "nowhere")
    ds = load_images(tmp_path, val_fraction=0.2)
    assert ds.name.startswith("svhn:") and ds.images.shape == (14, 32, 32, 3) and ds.images.dtype == torch.float32
    np.testing.assert_array_equal(ds.images.numpy(), np.concatenate([train_x, test_x]) / np.float32(255.0))
    assert ds.labels.tolist() == np.concatenate([train_y, test_y]).tolist()
    assert 0 <= int(ds.labels.min()) and int(ds.labels.max()) <= 9 and ds.classes == tuple(str(d) for d in range(10))
    # SVHN's label 10 is the digit 0, the others are themselves
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 3), np.uint8), "y": np.array([[10], [1], [9]])})
    assert load_svhn(tmp_path).labels[-3:].tolist() == [0, 1, 9]
    assert ds.split[-4:] == ("test",) * 4 and ds.split.count("val") == 2
    assert len(load_svhn(tmp_path, limit=1)) == 3  # one per split
    with pytest.raises(FileNotFoundError, match="extra_32x32.mat"):
        load_svhn(tmp_path, extra=True)
    extra_x, _ = _write(tmp_path / "extra_32x32.mat", rng, 3)
    with_extra = load_svhn(tmp_path, extra=True)
    assert len(with_extra) == 16 and with_extra.split.count("test") == 3  # 10 train + 3 extra + the rewritten 3 test


def test_bad_svhn_files_get_clear_errors(tmp_path):
    rng = np.random.default_rng(1)
    _write(tmp_path / "good.mat", rng, 5)
    data = (tmp_path / "good.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.mat"):
        read_svhn_mat(tmp_path / "cut.mat")
    (tmp_path / "foreign.mat").write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(ValueError, match="foreign.mat"):
        read_svhn_mat(tmp_path / "foreign.mat")
    savemat(tmp_path / "other.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="no SVHN arrays X and y"):
        read_svhn_mat(tmp_path / "other.mat")
    savemat(tmp_path / "labels.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])})
    with pytest.raises(ValueError, match="labels must be 1..10"):
        read_svhn_mat(tmp_path / "labels.mat")
    savemat(tmp_path / "shape.mat", {"X": np.zeros((28, 28, 2), np.uint8), "y": np.array([[1], [3]])})
    with pytest.raises(ValueError, match=r"X should be uint8 \[32, 32, 3, N\]"):
        read_svhn_mat(tmp_path / "shape.mat")


def test_a_classifier_zoo_trains_on_svhn(tmp_path):
    from weightspace.zoo.population import train_population
    from weightspace.zoo.search_space import get_zoo_recipe
    from weightspace.zoo.train_zoo import classifier_data, plan_runs

    rng = np.random.default_rng(2)
    _write(tmp_path / "train_32x32.mat", rng, 12)
    _write(tmp_path / "test_32x32.mat", rng, 6)
    images = load_images(tmp_path)
    recipe = get_zoo_recipe("small-cnn", epochs=1, checkpoints=(1,), batch_size=4)
    data = classifier_data(images, recipe.arch, seed=0)
    spec = recipe.spec(images.shape, data.num_classes)
    assert spec.layers[0].in_features == 3  # RGB input
    runs, _ = plan_runs(recipe, 2, seed=0)
    result = train_population(spec, runs, data, recipe)
    assert len(result.weights) == 2 and all(0 <= a <= 1 for a in result.columns["test_accuracy"])
