"""Signals to fit implicit neural representations to (currently: labelled images)."""

from weightspace.signals.images import (
    DATASET_NAMES,
    SPLITS,
    ImageDataset,
    is_idx_folder,
    load_digits,
    load_image_folder,
    load_images,
    load_mnist_idx,
    load_mnist_subset,
    read_idx,
)

__all__ = [
    "DATASET_NAMES",
    "SPLITS",
    "ImageDataset",
    "is_idx_folder",
    "load_digits",
    "load_image_folder",
    "load_images",
    "load_mnist_idx",
    "load_mnist_subset",
    "read_idx",
]
