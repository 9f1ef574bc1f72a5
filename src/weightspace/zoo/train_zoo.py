"""Building a zoo of trained classifiers: which runs, in which shards, written where.

The builder draws ``num_runs`` runs from the recipe's search space, orders them so that
runs sharing an activation and an optimiser (one stacked group) sit in the same shards,
and hands shards of ``runs_per_shard`` runs to a backend (`weightspace.zoo.backends`:
local, or Ray tasks with ``backend="ray"``). Each finished shard is written through the
`ZooWriter` (all checkpoints of its runs), so an interrupted build resumes with whole
shards kept. Runs are split train / val / test by run, so every checkpoint of a run sits
in one split.

Table (one row per checkpoint): ``run``, ``epoch``, the hyperparameters ``lr``,
``weight_decay``, ``dropout``, ``init``, ``activation``, ``optimizer``,
``train_fraction``, ``seed``, the metrics ``train_accuracy``, ``test_accuracy``,
``train_loss``, ``test_loss``, ``gap`` (= train - test accuracy), ``diverged`` and
``split``. The zoo's spec carries the recipe's default activation; use
`weightspace.zoo.search_space.spec_for_row` to run a row's network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weightspace._progress import StepBar
from weightspace.signals.images import ImageDataset, load_images
from weightspace.zoo.backends import Backend, make_backend
from weightspace.zoo.population import ClassifierData, PopulationResult, steps_per_epoch, train_population
from weightspace.zoo.search_space import RunConfig, ZooRecipe
from weightspace.zoo.store import Zoo, ZooWriter, assign_splits

RUN_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}


def classifier_data(images: ImageDataset, arch: str, *, n_train: int | None = None, n_test: int | None = None,
                    seed: int = 0) -> ClassifierData:
    """``n_train`` images of ``images``' train split and ``n_test`` of its test split (all
    if None; a seeded random choice otherwise, since some sources are sorted by class),
    shaped for ``arch`` (``[N, C, H, W]`` for CNNs, ``[N, H*W*C]`` for MLPs). Pixel values
    stay in [0, 1]."""
    rng = np.random.default_rng(seed)

    def pick(part: ImageDataset, n: int | None) -> ImageDataset:
        if n is None or n >= len(part):
            return part
        return part.subset(np.sort(rng.permutation(len(part))[:n]))

    train, test = pick(images.select_split("train"), n_train), pick(images.select_split("test"), n_test)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"{images.name}: need images in both the train and the test split")

    def shape(x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).contiguous()
        return x if arch == "small_cnn" else x.flatten(1)

    return ClassifierData(shape(train.images), train.labels, shape(test.images), test.labels,
                          num_classes=len(images.classes), name=images.name)


@dataclass(frozen=True)
class TrainJob:
    """What every shard shares (shipped once to Ray)."""

    data: ClassifierData
    recipe: ZooRecipe
    spec_json: str
    device: str = "cpu"


@dataclass(frozen=True)
class TrainTask:
    shard: int
    runs: tuple[RunConfig, ...]


def train_shard(job: TrainJob, task: TrainTask,
                on_step: Callable[[int], None] | None = None) -> tuple[int, PopulationResult]:
    """Train one shard's runs (the work unit of every backend); ``on_step`` as in `train_population`."""
    from weightspace.core.spec import NetworkSpec

    spec = NetworkSpec.from_json(job.spec_json)
    return task.shard, train_population(spec, task.runs, job.data, job.recipe, device=job.device,
                                        dropout_seed=task.runs[0].seed, on_step=on_step)


def plan_runs(recipe: ZooRecipe, num_runs: int, *, seed: int) -> tuple[list[RunConfig], np.ndarray]:
    """(runs in shard order, split per run id). Runs are sorted by (activation, optimiser,
    run id) so that the stacked groups inside a shard are large."""
    runs = recipe.search_space.sample(num_runs, seed=seed)
    split = assign_splits(num_runs, RUN_SPLITS, seed=seed)
    runs.sort(key=lambda r: (r.activation, r.optimizer, r.run))
    return runs, split


def build_classifier_zoo(
    images: ImageDataset | str,
    out: str | Path,
    recipe: ZooRecipe,
    *,
    num_runs: int,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    runs_per_shard: int = 64,
    device: str | torch.device = "cpu",
    backend: str | Backend = "local",
    ray_address: str | None = None,
    progress: bool = True,
    extra_provenance: dict[str, Any] | None = None,
) -> Zoo:
    """Train ``num_runs`` classifiers of ``recipe`` on ``images`` into a zoo at ``out``
    (one row per checkpoint; see the module docstring). Resumable."""
    if isinstance(images, str):
        images = load_images(images, seed=seed)
    data = classifier_data(images, recipe.arch, n_train=n_train, n_test=n_test, seed=seed)
    spec = recipe.spec(images.shape, data.num_classes)
    runs, split = plan_runs(recipe, num_runs, seed=seed)
    k = len(recipe.checkpoints)
    writer = ZooWriter(
        out,
        spec,
        shard_size=runs_per_shard * k,
        num_networks=num_runs * k,
        provenance={
            "kind": "classifiers",
            "recipe": recipe.to_dict(),
            "dataset": images.name,
            "n_train": len(data.train_y),
            "n_test": len(data.test_y),
            "seed": seed,
            "num_runs": num_runs,
            "run_splits": RUN_SPLITS,
            "seed_rule": "run seed = seed * 1_000_000 + run; init, subset and data order from it",
            "spec_note": "activation varies per run: see the 'activation' column and spec_for_row",
            "library": _version(),
            **(extra_provenance or {}),
        },
    )
    runner = make_backend(backend, ray_address)
    num_shards = math.ceil(num_runs / runs_per_shard)
    todo = [s for s in range(num_shards) if s not in writer.completed_shards()]
    job = TrainJob(data, recipe, spec.to_json(), str(device))

    def shard_runs(s: int) -> Sequence[RunConfig]:
        return runs[s * runs_per_shard:(s + 1) * runs_per_shard]

    def tasks() -> Iterator[TrainTask]:
        for s in todo:
            yield TrainTask(s, tuple(shard_runs(s)))

    done_before = num_runs - sum(len(shard_runs(s)) for s in todo)
    # The bar counts run-steps (networks x optimiser steps), moved after every step of a local run.
    per_run = recipe.epochs * steps_per_epoch(len(data.train_y), recipe.batch_size)
    bar = StepBar(num_runs * per_run, done_before * per_run, progress, unit="run-step",
                  desc=f"training classifiers ({runner.name})")
    work = partial(train_shard, on_step=bar.on_step) if runner.name == "local" else train_shard
    written = done_before
    with bar, closing(runner.run(job, tasks(), work)) as results:
        for s, res in results:
            cols = dict(res.columns)
            cols["split"] = [str(split[r]) for r in cols["run"]]
            writer.write_shard(s, res.weights, cols)
            written += len(shard_runs(s))
            bar.shard_done(len(shard_runs(s)) * per_run, runs=f"{written}/{num_runs}",
                           test_acc=f"{np.mean(cols['test_accuracy']):.3f}")
    return writer.finalize()


def _version() -> str:
    from weightspace import __version__

    return __version__


__all__ = ["RUN_SPLITS", "TrainJob", "TrainTask", "build_classifier_zoo", "classifier_data", "plan_runs", "train_shard"]
