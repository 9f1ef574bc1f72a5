"""Train and evaluate image classifiers (the reference CNNs) with the one training engine.

Images come as an :class:`ImageDataset` (``[N, H, W, C]`` in ``[0, 1]``); the networks see
``[N, C, H, W]``. The engine's loader indexes a dataset with a *list* of positions and
gets a whole batch, so :class:`ImageBatches` holds the images as one tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from weightspace.signals.images import ImageDataset, load_images
from weightspace.tasks.classify import Classification
from weightspace.train import TrainConfig, evaluate, fit
from weightspace.zoo.reference_cnns import CNNConfig, build_cnn


class ImageBatches(Dataset):
    """``data[[i, j, ...]] -> (images [b, C, H, W] float32, labels [b] int64)``."""

    def __init__(self, data: ImageDataset) -> None:
        self.images = data.images.permute(0, 3, 1, 2).contiguous()
        self.labels = data.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        return self.images[idx], self.labels[idx]


def load_classification_data(name_or_path: str | os.PathLike[str], *, seed: int = 0,
                             limit: int | None = None) -> ImageDataset:
    """``digits``, ``mnist-subset``, an MNIST-layout IDX folder, an image folder, or a folder of
    CIFAR-10 / CIFAR-100 binary files (see :mod:`weightspace.signals.cifar`)."""
    return load_images(name_or_path, seed=seed, limit=limit)


def accuracy(model: nn.Module, data: ImageDataset, *, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (run in eval mode) on all of ``data``, on the model's device."""
    device = next(model.parameters(), torch.empty(0)).device
    where = {"accelerator": "gpu", "devices": [device.index or 0]} if device.type == "cuda" else {"accelerator": "cpu"}
    config = TrainConfig(eval_batch_size=batch_size, progress=False, **where)
    return evaluate(model.eval(), Classification(), ImageBatches(data), config)["acc"]


@dataclass
class TrainedCNN:
    model: nn.Module  # eval mode, best validation epoch
    config: CNNConfig
    val_acc: float
    test_acc: float
    seconds: float


def train_cnn(config: CNNConfig, data: ImageDataset, train: TrainConfig | None = None, *, seed: int = 0
              ) -> TrainedCNN:
    """Train a reference CNN on ``data``'s train split (cross-entropy, AdamW + cosine from the
    engine), keep the epoch with the best val accuracy, report test accuracy."""
    train = train or TrainConfig(epochs=15, lr=2e-3, seed=seed)
    c = data.shape[2]
    if c != config.in_channels:
        raise ValueError(f"{data.name} has {c} channels but the network takes {config.in_channels}")
    if int(data.labels.max()) >= config.num_classes:
        raise ValueError(f"{data.name} has labels up to {int(data.labels.max())} but the network has "
                         f"{config.num_classes} classes")
    model = build_cnn(config, seed=seed)
    result = fit(model, Classification(), ImageBatches(data.select_split("train")),
                 ImageBatches(data.select_split("val")), train)
    test = accuracy(result.model, data.select_split("test"))
    return TrainedCNN(result.model.eval(), config, float(result.best_value or 0.0), test, result.seconds)
