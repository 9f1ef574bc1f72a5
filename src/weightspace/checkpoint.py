"""Training checkpoints and per-epoch metrics of a run directory, without pickle.

``checkpoint.safetensors`` holds everything a killed run needs to continue exactly where it
stopped after a whole epoch: the model's current and best state, the optimiser's state
tensors and every random generator that training draws from; its safetensors metadata holds
the rest as JSON (epochs done, best value, optimiser param groups, scheduler state, history).

Tensor names: ``model.<key>`` / ``best.<key>`` (state dicts), ``optim.<param index>.<name>``
(e.g. ``optim.3.exp_avg``), ``rng.<name>`` (uint8 generator states).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.csv"
FORMAT = "weightspace-checkpoint"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder and rename it into place, so a run
    killed while writing leaves the previous file whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def plain_tensors(state: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """CPU, contiguous copies (safetensors refuses tensors that share storage)."""
    return {prefix + k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_state_dict(path: Path, state: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> None:
    atomic_write(path, lambda tmp: save_file(plain_tensors(state), str(tmp), metadata=dict(metadata or {})))


@dataclass
class TrainState:
    """What `weightspace.train.fit` needs to continue a run after ``epochs_done`` epochs.

    model / best: state dicts; optimizer: ``torch.optim.Optimizer.state_dict()``; scheduler:
    the LR scheduler's state dict (JSON values only) or None; rng: generator states
    (``torch.Generator.get_state()``, uint8 ``[n]``) by name; history: one row per epoch.
    """

    epochs_done: int
    best_value: float | None
    model: dict[str, Tensor]
    best: dict[str, Tensor] | None
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: dict[str, Tensor]
    history: list[dict[str, float]] = field(default_factory=list)

    def save(self, path: Path) -> None:
        tensors = plain_tensors(self.model, "model.")
        if self.best is not None:
            tensors.update(plain_tensors(self.best, "best."))
        for index, state in self.optimizer["state"].items():
            for name, value in state.items():
                if not isinstance(value, Tensor):  # e.g. a Python step count in old optimisers
                    value = torch.tensor(value)
                tensors[f"optim.{int(index)}.{name}"] = value.detach().to("cpu").contiguous().clone()
        tensors.update(plain_tensors(self.rng, "rng."))
        meta = {
            "format": FORMAT,
            "epochs_done": self.epochs_done,
            "best_value": self.best_value,
            "has_best": self.best is not None,
            "param_groups": self.optimizer["param_groups"],
            "scheduler": self.scheduler,
            "history": self.history,
        }
        # floats survive JSON exactly (shortest round-tripping repr)
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"weightspace": json.dumps(meta)}))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads((f.metadata() or {}).get("weightspace", "{}"))
            tensors = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for a damaged file
            raise ValueError(f"{path}: unreadable checkpoint ({str(e)[:100]})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a weightspace training checkpoint")

        def part(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        state: dict[int, dict[str, Tensor]] = {}
        for key, value in part("optim.").items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
        return cls(
            epochs_done=int(meta["epochs_done"]),
            best_value=meta["best_value"],
            model=part("model."),
            best=part("best.") if meta["has_best"] else None,
            optimizer={"state": state, "param_groups": groups},
            scheduler=meta["scheduler"],
            rng=part("rng."),
            history=meta["history"],
        )


def json_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A scheduler's state dict with only JSON values; refuses anything else rather than
    resuming with part of the schedule silently missing."""
    out = {}
    for k, v in state.items():
        try:
            json.dumps(v)
        except TypeError:
            raise ValueError(f"scheduler state {k!r} ({type(v).__name__}) cannot be saved without pickle") from None
        out[k] = v
    return out


def metric_columns(history: Sequence[Mapping[str, float]]) -> list[str]:
    """``epoch``, the task's metrics (``train/loss`` -> ``train_loss``) sorted, ``lr``, ``seconds``."""
    keys = sorted({k for row in history for k in row} - {"epoch", "lr", "seconds"})
    return ["epoch", *keys, "lr", "seconds"]


def write_metrics(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    """``metrics.csv``: one row per epoch; ``epoch`` counts from 1 (the row after that many
    epochs), ``lr`` is the learning rate the epoch started with, ``seconds`` its wall time
    (training and validation)."""
    columns = metric_columns(history)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.replace("/", "_") for c in columns])
    for row in history:
        values = []
        for c in columns:
            v = row.get(c)
            values.append("" if v is None else int(v) + 1 if c == "epoch" else repr(float(v)))
        writer.writerow(values)
    atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))
