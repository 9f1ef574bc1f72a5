"""INR classification: predict the class of the signal an INR represents, from its weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.core.transforms import AlignedMixup, InRawSpace, Standardize, acts_on_raw_weights
from weightspace.models.registry import create_model, model_info
from weightspace.train import TrainConfig, Transform, WeightBatches, evaluate, fit
from weightspace.zoo.store import Zoo


class Classification:
    """Cross-entropy on logits; reports loss and accuracy. Best epoch: highest val accuracy."""

    monitor, mode = "acc", "max"

    def step(self, model: nn.Module, batch) -> tuple[Tensor, dict[str, Tensor], int]:
        weights, labels = batch
        logits = model(weights)
        # soft targets [B, classes] come from mixup; cross_entropy takes them as probabilities
        loss = F.cross_entropy(logits, labels)
        hard = labels.argmax(dim=1) if labels.dim() == 2 else labels
        acc = (logits.argmax(dim=1) == hard).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc}, len(labels)


@dataclass
class ClassifyResult:
    model_name: str
    test_acc: float
    val_acc: float
    num_params: int
    train_seconds: float
    examples_per_second: float
    epochs_run: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None
    test_loss: float = float("nan")
    run_dir: Path | None = None  # where the run was written (``out``)

    def row(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "test_acc": self.test_acc,
            "val_acc": self.val_acc,
            "params": self.num_params,
            "train_s": self.train_seconds,
            "examples_per_s": self.examples_per_second,
        }


DEFAULT_AUGMENT = ""


def recipe(model: str, *, augment: str | None = None, **given) -> tuple[TrainConfig, str]:
    """The training configuration and augmentation for ``model``: a preset's published recipe
    (`weightspace.models.registry.Preset.train`, ``.augment``), else `TrainConfig`'s defaults;
    options given (not None) override either."""
    from weightspace.models.registry import resolve

    _, _, preset = resolve(model)
    fields = dict(preset.train) if preset else {}
    fields.update({k: v for k, v in given.items() if v is not None})
    if "epochs" not in fields:
        fields["epochs"] = 40
    if "batch_size" not in fields:
        fields["batch_size"] = 32
    aug = augment if augment is not None else (preset.augment if preset else DEFAULT_AUGMENT)
    return TrainConfig(**fields), aug


def training_transform(augment: Transform | None, norm) -> Transform | None:
    """The augmentation as applied to standardised training batches. Permutations commute with
    per-tensor standardisation; sign flips, rescaling (`RandomSymmetry.raw_weights`) and maps of
    the signal's domain (`InputAffine`) preserve a network's function only on its raw weights,
    so those run behind the standardisation (undo, transform, redo)."""
    if augment is not None and acts_on_raw_weights(augment) and isinstance(norm, Standardize):
        return InRawSpace(augment, norm)
    return augment


def classify_zoo(
    zoo: Zoo,
    model_name: str,
    *,
    config: TrainConfig = TrainConfig(),
    model_config: dict[str, Any] | None = None,
    target: str = "label",
    augment: Transform | None = None,
    mixup: float | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    record: dict[str, Any] | None = None,
) -> ClassifyResult:
    """Train registry model ``model_name`` on the zoo's train split to predict column
    ``target``; pick the epoch by val accuracy; report test accuracy.

    ``out``: a run directory to write (see `weightspace.runs`): the best model with what
    rebuilds it, metrics.csv, run.json, and a checkpoint each epoch that ``resume`` continues
    from; an existing non-empty directory needs ``resume`` or ``overwrite``. ``record``: extra
    run.json fields (the CLI's command line and augmentation text)."""
    from weightspace import runs

    # checked before anything is loaded or trained
    run_dir = None if out is None else runs.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if resume and run_dir is None:
        raise ValueError("resume needs a run directory (out)")
    if model_info(model_name).output != "invariant":
        raise ValueError(f"model {model_name!r} is equivariant; classification needs an invariant model")
    if target not in zoo.table.columns:
        raise KeyError(f"{zoo.path}: no column {target!r}; columns: {list(zoo.table.columns)}")
    from weightspace.zoo.verify import label_problem

    # before anything is loaded: a label of 10**9 would size a 10**9-way output layer
    problem = label_problem(zoo.table[target], target, zoo.table["id"].to_numpy())
    if problem:
        raise ValueError(f"{zoo.path}: {problem}")
    splits = {}
    for name in ("train", "val", "test"):
        w, table = zoo.load(name)
        splits[name] = (w, torch.as_tensor(table[target].to_numpy().copy(), dtype=torch.long))
    num_classes = int(zoo.table[target].astype(int).max()) + 1  # labels checked above: integers in [0, 10**5)
    torch.manual_seed(config.seed)  # model initialisation
    model = create_model(model_name, zoo.spec, out_features=num_classes, **(model_config or {}))
    # Models that run the networks (probes) need the raw weights; the others learn better
    # from per-tensor standardised ones (a scalar per tensor keeps every symmetry).
    norm = (lambda w, g=None: w) if getattr(model, "wants_raw_weights", False) else Standardize.fit(splits["train"][0])
    data = {k: WeightBatches(norm(w), y, seed=config.seed) for k, (w, y) in splits.items()}
    data["train"].transform = training_transform(augment, norm)
    if mixup:
        data["train"].batch_transform = AlignedMixup(num_classes, alpha=mixup)
    task = Classification()
    if run_dir is not None:
        from weightspace.models.registry import resolve

        arch, options, _ = resolve(model_name, **(model_config or {}))
        meta = runs.RunMetadata(model_name, arch, options, zoo.spec, num_classes, target, num_classes,
                                norm if isinstance(norm, Standardize) else None, runs.library_version())
        rec = runs.RunRecord(str(zoo.path), model_name, options, target, config.seed, asdict(config),
                             None if augment is None else repr(augment), mixup).to_dict()
        rec = runs.start_run(run_dir, {**rec, **(record or {})}, resume=resume)
    result = fit(model, task, data["train"], data["val"], config, run_dir=run_dir, resume=resume)
    test = evaluate(result.model, task, data["test"], config)
    if run_dir is not None:
        runs.finish_run(run_dir, rec, result.model, meta, {
            "test": test, "best_val": result.best_value, "epochs_run": result.epochs_run,
            "train_seconds": result.seconds}, complete=result.epochs_run >= config.epochs)
    return ClassifyResult(
        model_name,
        test_acc=test["acc"],
        val_acc=float(result.best_value or 0.0),
        num_params=sum(p.numel() for p in model.parameters()),
        train_seconds=result.seconds,
        examples_per_second=result.examples_per_second,
        epochs_run=result.epochs_run,
        history=result.history,
        model=result.model,
        test_loss=test.get("loss", float("nan")),
        run_dir=run_dir,
    )
