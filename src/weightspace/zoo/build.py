"""Building an INR zoo from a signal dataset: what to fit, with which seed, written where.

The builder decides the networks of the zoo (one per signal, or NFN's ``k`` per training
signal), their seeds and their shards; a backend (`weightspace.zoo.backends`) fits the
shards; the builder writes each finished shard through `ZooWriter`, so a killed run
resumes with whole shards kept and nothing fitted twice.

Network order: the plan is copy-major (copy 0 of every signal, then copy 1 of every
training signal, and so on), and networks are fitted and numbered in a seeded random
permutation of that plan (`fitting_order`), so the shards written so far are a uniform random
sample of the zoo: a zoo stopped after two shards holds every class, not only the first two.
A zoo started by an older version (no ``order`` in its provenance) resumes in the plan's own
order. Seeds follow the signal and copy, not the position, so the order does not change any
network's weights:

- copy 0 of signal ``i``: ``seed * 1_000_000 + i`` (unchanged from the first zoo format);
- copy ``c`` > 0: ``seed * 1_000_000 + i + c * 10**12`` (distinct for ``i`` < 10**6).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weightspace._progress import StepBar
from weightspace.inr.siren import SirenRecipe
from weightspace.signals.base import SignalDataset, signal_provenance
from weightspace.zoo.backends import Backend, FitJob, ShardTask, fit_shard, make_backend
from weightspace.zoo.fit_inr import auto_batch_size
from weightspace.zoo.store import Zoo, ZooWriter

SEED_RULE = "network seed = seed * 1_000_000 + source_index"
COPY_SEED_RULE = (
    SEED_RULE + " + copy * 10**12 (copy 0..k-1; k INRs per training signal, 1 per val/test signal)"
)
_COPY_STRIDE = 10**12


def network_seed(seed: int, source_index: int, copy: int = 0) -> int:
    """The initialisation seed of copy ``copy`` of the INR of signal ``source_index``."""
    return seed * 1_000_000 + int(source_index) + int(copy) * _COPY_STRIDE


def plan_networks(
    split: tuple[str, ...] | list[str], inrs_per_train_image: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(source_index ``[M]``, copy ``[M]``) of every network of the zoo, in network order.

    Training signals get ``inrs_per_train_image`` copies (NFN's recipe: differently seeded
    fits of the same image), validation and test signals one each.
    """
    if inrs_per_train_image < 1:
        raise ValueError(f"inrs_per_train_image must be >= 1, got {inrs_per_train_image}")
    n = len(split)
    train = np.flatnonzero(np.asarray(split, dtype=object) == "train")
    sources = [np.arange(n)] + [train] * (inrs_per_train_image - 1)
    copies = [np.full(len(s), c, dtype=np.int64) for c, s in enumerate(sources)]
    return np.concatenate(sources).astype(np.int64), np.concatenate(copies)


ORDER_RULE = "numpy.random.default_rng([seed, 0x0BDE5]).permutation(num_networks) of the copy-major plan"


def fitting_order(num_networks: int, seed: int) -> np.ndarray:
    """The positions of the copy-major plan in the order they are fitted and numbered."""
    return np.random.default_rng([seed, 0x0BDE5]).permutation(num_networks)


def _resumed_order(out: Path) -> str:
    """``"shuffled"`` for a new zoo; for one being resumed, the order it was started with."""
    meta = Path(out) / "zoo.json"
    if not meta.is_file():
        return "shuffled"
    try:
        import json

        provenance = json.loads(meta.read_text()).get("provenance", {})
    except (ValueError, OSError, AttributeError, RecursionError):
        return "shuffled"  # a damaged zoo.json: the writer names the problem
    return provenance.get("order", "source") if isinstance(provenance, dict) else "shuffled"


def build_inr_zoo(
    dataset: SignalDataset,
    out: str | Path,
    recipe: SirenRecipe,
    *,
    seed: int = 0,
    shard_size: int = 256,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    extra_provenance: dict[str, Any] | None = None,
    inrs_per_train_image: int = 1,
    backend: str | Backend = "local",
    ray_address: str | None = None,
) -> Zoo:
    """Fit INRs to every signal of ``dataset`` (any `SignalDataset`) into a zoo at ``out``.

    Resumable: shards already on disk are kept, and a network's weights depend only on
    its seed and signal, so a resumed, re-batched or Ray-run zoo equals an uninterrupted
    local one. Table columns: ``source_index``, ``copy``, ``label``, ``split``, ``psnr``
    (dB, in the recipe's target range), ``steps``, ``seed``.
    """
    coords = dataset.coordinates()
    targets = dataset.targets()  # [N, P, C]
    runner = make_backend(backend, ray_address)
    sources, copies = plan_networks(dataset.split, inrs_per_train_image)
    m = len(sources)
    order = _resumed_order(Path(out))
    if order == "shuffled":
        perm = fitting_order(m, seed)
        sources, copies = sources[perm], copies[perm]
    labels, split = dataset.labels.numpy(), np.asarray(dataset.split, dtype=object)
    seeds = np.array(
        [network_seed(seed, i, c) for i, c in zip(sources.tolist(), copies.tolist())], dtype=np.int64
    )
    spec = recipe.spec(coords.shape[1], targets.shape[2])
    writer = ZooWriter(
        out,
        spec,
        shard_size=shard_size,
        num_networks=m,
        provenance={
            "kind": "inr",
            "recipe": recipe.to_dict(),
            "dataset": dataset.name,
            **signal_provenance(dataset),
            "seed": seed,
            "seed_rule": SEED_RULE if inrs_per_train_image == 1 else COPY_SEED_RULE,
            "inrs_per_train_image": inrs_per_train_image,
            "order": order,
            **({"order_rule": ORDER_RULE} if order == "shuffled" else {}),
            "library": _version(),
            **(extra_provenance or {}),
        },
    )
    num_shards = math.ceil(m / shard_size)
    todo = [k for k in range(num_shards) if k not in writer.completed_shards()]
    job = FitJob(
        coords, recipe, batch_size or auto_batch_size(coords.shape[0], max(recipe.hidden), device), str(device)
    )

    def shard_rows(k: int) -> np.ndarray:
        return np.arange(k * shard_size, min(m, (k + 1) * shard_size))

    def tasks() -> Iterator[ShardTask]:
        for k in todo:  # lazily: a Ray driver submits a window of shards at a time
            rows = shard_rows(k)
            yield ShardTask(k, targets[sources[rows]], tuple(int(s) for s in seeds[rows]))

    done_before = m - sum(len(shard_rows(k)) for k in todo)
    # The bar counts INR-steps (networks x optimiser steps), moved after every step of a local fit,
    # so it shows a rate and an ETA from the first seconds; networks that stop early at the
    # recipe's PSNR give their unused steps back when their shard is written.
    steps = recipe.steps
    bar = StepBar(m * steps, done_before * steps, progress, unit="INR-step", desc=f"fitting INRs ({runner.name})")
    work = partial(fit_shard, on_step=bar.on_step) if runner.name == "local" else fit_shard
    written = done_before
    with bar, closing(runner.run(job, tasks(), work)) as results:
        for res in results:
            rows = shard_rows(res.shard)
            writer.write_shard(
                res.shard,
                res.weights,
                {
                    "source_index": sources[rows].tolist(),
                    "copy": copies[rows].tolist(),
                    "label": labels[sources[rows]].tolist(),
                    "split": [str(s) for s in split[sources[rows]]],
                    "psnr": res.psnr.tolist(),
                    "steps": res.steps.tolist(),
                    "seed": seeds[rows].tolist(),
                },
            )
            written += len(rows)
            bar.shard_done(len(rows) * steps, networks=f"{written}/{m}", mean_psnr=f"{res.psnr.mean():.1f}dB")
    return writer.finalize()


def _version() -> str:
    from weightspace import __version__

    return __version__


__all__ = ["COPY_SEED_RULE", "ORDER_RULE", "SEED_RULE", "build_inr_zoo", "fitting_order", "network_seed", "plan_networks"]
