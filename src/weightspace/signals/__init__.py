"""Signals to fit implicit neural representations to: images, 3D shapes, audio (`load_signals`)."""

from weightspace.signals.audio import load_tones, load_wav_folder, read_wav
from weightspace.signals.base import SignalDataset, SignalSet, grid_coordinates
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
from weightspace.signals.load import load_signals
from weightspace.signals.meshes import load_meshes, mesh_sdf
from weightspace.signals.shapes import SHAPE_CLASSES, load_shapes, make_shape

__all__ = [
    "DATASET_NAMES",
    "SHAPE_CLASSES",
    "SPLITS",
    "ImageDataset",
    "SignalDataset",
    "SignalSet",
    "grid_coordinates",
    "is_idx_folder",
    "load_digits",
    "load_image_folder",
    "load_images",
    "load_meshes",
    "load_mnist_idx",
    "load_mnist_subset",
    "load_shapes",
    "load_signals",
    "load_tones",
    "load_wav_folder",
    "make_shape",
    "mesh_sdf",
    "read_idx",
    "read_wav",
]
