"""Property prediction: a network's test accuracy, epoch, generalisation gap (regression)
or a categorical hyperparameter such as its optimiser (classification), from its weights.

Any invariant registry model maps weights to ``[B, 1]`` (regression) or ``[B, classes]``.
Splits come from the zoo's ``split`` column, which a classifier zoo assigns per training
run, so the checkpoints of one run never sit on both sides; `run_splits` checks it.
Regression targets are standardised with the training split's mean and std; metrics on
the test split: Kendall's tau and R^2 (regression) or accuracy (classification).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau
from torch import Tensor, nn

from weightspace.core.transforms import Standardize
from weightspace.core.weights import Weights
from weightspace.models.registry import create_model, model_info
from weightspace.tasks.classify import Classification
from weightspace.train import TrainConfig, WeightBatches, fit
from weightspace.zoo.store import Zoo

SPLITS = ("train", "val", "test")


class Regression:
    """Mean squared error on standardised targets ``[B]``; best epoch: lowest val MSE."""

    monitor, mode = "mse", "min"

    def step(self, model: nn.Module, batch) -> tuple[Tensor, dict[str, Tensor], int]:
        weights, y = batch
        pred = model(weights).squeeze(-1)
        loss = F.mse_loss(pred, y)
        return loss, {"loss": loss.detach(), "mse": loss.detach()}, len(y)


def run_splits(table: pd.DataFrame, group: str = "run") -> dict[str, np.ndarray]:
    """Table positions of train / val / test; raises if a ``group`` (training run) has
    rows in more than one split."""
    if "split" not in table.columns:
        raise KeyError("the zoo's table has no 'split' column")
    if group in table.columns:
        mixed = table.groupby(group)["split"].nunique()
        mixed = mixed[mixed > 1]
        if len(mixed):
            raise ValueError(f"{len(mixed)} runs have checkpoints in more than one split (e.g. {group} {mixed.index[0]})")
    out = {s: np.flatnonzero(table["split"].to_numpy() == s) for s in SPLITS}
    for s in ("train", "test"):
        if len(out[s]) == 0:
            raise ValueError(f"no networks in split {s!r}")
    return out


def is_categorical(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


@dataclass
class PredictResult:
    model_name: str
    target: str
    kind: str  # "regression" or "classification"
    kendall_tau: float | None
    r2: float | None
    accuracy: float | None
    num_params: int
    train_seconds: float
    n_train: int
    n_test: int
    true: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # test targets (original units)
    predicted: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    classes: tuple[str, ...] = ()
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model_name, "target": self.target}
        if self.kind == "regression":
            out |= {"kendall_tau": self.kendall_tau, "r2": self.r2}
        else:
            out |= {"accuracy": self.accuracy, "chance": 1.0 / max(1, len(self.classes))}
        return out | {"params": self.num_params, "train_s": self.train_seconds, "n_train": self.n_train, "n_test": self.n_test}


def r2_score(true: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    ss_tot = float(((true - true.mean()) ** 2).sum())
    return 1.0 - float(((true - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


@torch.no_grad()
def predict_outputs(model: nn.Module, weights: Weights, *, batch_size: int = 512) -> Tensor:
    """Model outputs ``[B, out]`` in eval mode, in batches, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(weights[lo:lo + batch_size].to(device)).cpu() for lo in range(0, len(weights), batch_size)])


def predict_property(
    zoo: Zoo,
    model_name: str,
    target: str = "test_accuracy",
    *,
    config: TrainConfig | None = None,
    model_config: dict[str, Any] | None = None,
    rows: np.ndarray | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    record: dict[str, Any] | None = None,
) -> PredictResult:
    """Train registry model ``model_name`` on the zoo's train split to predict column
    ``target`` (numeric: regression; text / bool: classification); pick the epoch on the
    val split; report Kendall's tau and R^2 (or accuracy) on the test split. ``rows``
    optionally restricts the zoo to those table positions (e.g. one epoch). ``out``, ``resume``,
    ``overwrite``, ``record``: a run directory as `weightspace.tasks.classify.classify_zoo`
    writes one (the model with its target scaling or class names, metrics.csv, run.json,
    checkpoints), used by `weightspace.runs.evaluate_run` / `apply_run`."""
    from weightspace import runs

    run_dir = None if out is None else runs.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if resume and run_dir is None:
        raise ValueError("resume needs a run directory (out)")
    config = config or TrainConfig()
    info = model_info(model_name)
    if info.output != "invariant":
        raise ValueError(f"model {model_name!r} is equivariant; property prediction needs an invariant model")
    if target not in zoo.table.columns:
        raise KeyError(f"{zoo.path}: no column {target!r}; columns: {list(zoo.table.columns)}")
    table = zoo.table if rows is None else zoo.table.iloc[rows]
    positions = np.arange(len(zoo)) if rows is None else np.asarray(rows)
    parts = run_splits(table.reset_index(drop=True))
    values = table[target]
    categorical = is_categorical(values)
    classes = tuple(sorted(str(v) for v in values.unique())) if categorical else ()
    if categorical:
        y_all = torch.as_tensor([classes.index(str(v)) for v in values], dtype=torch.long)
    else:
        y_all = torch.tensor(values.to_numpy(np.float64), dtype=torch.float32)
    mean = float(y_all[parts["train"]].mean()) if not categorical else 0.0
    std = float(y_all[parts["train"]].std()) if not categorical else 1.0
    std = std if std > 0 else 1.0
    weights = {s: zoo.weights(positions[idx]) for s, idx in parts.items() if len(idx)}
    torch.manual_seed(config.seed)  # model initialisation
    model = create_model(model_name, zoo.spec, out_features=len(classes) if categorical else 1, **(model_config or {}))
    norm = (lambda w, g=None: w) if getattr(model, "wants_raw_weights", False) else Standardize.fit(weights["train"])

    def targets(s: str) -> Tensor:
        y = y_all[parts[s]]
        return y if categorical else (y - mean) / std

    data = {s: WeightBatches(norm(w), targets(s), seed=config.seed) for s, w in weights.items()}
    task = Classification() if categorical else Regression()
    if run_dir is not None:
        from dataclasses import asdict

        from weightspace.models.registry import resolve

        arch, options, _ = resolve(model_name, **(model_config or {}))
        meta = runs.RunMetadata(model_name, arch, options, zoo.spec, len(classes) if categorical else 1, target,
                                len(classes), norm if isinstance(norm, Standardize) else None, runs.library_version(),
                                task="classify-names" if categorical else "regress", classes=classes,
                                target_mean=mean, target_std=std)
        rec = runs.RunRecord(str(zoo.path), model_name, options, target, config.seed, asdict(config), None, None)
        rec = runs.start_run(run_dir, {**rec.to_dict(), "rows": None if rows is None else len(rows), **(record or {})},
                             resume=resume)
    result = fit(model, task, data["train"], data.get("val"), config, run_dir=run_dir, resume=resume)
    out = predict_outputs(result.model, data["test"].weights, batch_size=config.eval_batch_size)
    true = y_all[parts["test"]].numpy()
    common = {"model_name": model_name, "target": target, "num_params": sum(p.numel() for p in model.parameters()),
                  "train_seconds": result.seconds, "n_train": len(parts["train"]), "n_test": len(parts["test"]), "history": result.history}
    if categorical:
        pred = out.argmax(1).numpy()
        res = PredictResult(kind="classification", kendall_tau=None, r2=None, accuracy=float((pred == true).mean()),
                            true=true, predicted=pred, classes=classes, **common)
    else:
        pred = out.squeeze(-1).numpy() * std + mean
        tau = kendalltau(true, pred).statistic
        res = PredictResult(kind="regression", kendall_tau=float(tau), r2=r2_score(true, pred), accuracy=None,
                            true=true, predicted=pred, **common)
    if run_dir is not None:
        scores = {k: v for k, v in res.row().items() if k in ("kendall_tau", "r2", "accuracy", "chance")}
        runs.finish_run(run_dir, rec, result.model, meta, {"test": scores, "best_val": result.best_value,
                        "epochs_run": result.epochs_run, "train_seconds": result.seconds},
                        complete=result.epochs_run >= config.epochs)
    return res


def plot_predictions(result: PredictResult | list[PredictResult], path: str | Path) -> Path:
    """Predicted vs true target on the test split, one panel per model."""
    from weightspace.plots import _pyplot, _save

    results = result if isinstance(result, list) else [result]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.3), squeeze=False)
    lo = min(float(min(r.true.min(), r.predicted.min())) for r in results)
    hi = max(float(max(r.true.max(), r.predicted.max())) for r in results)
    for ax, r in zip(axes[0], results):
        if r.kind != "regression":
            raise ValueError(f"{r.model_name}: only regression results have a predicted-vs-true plot")
        ax.scatter(r.true, r.predicted, s=4, alpha=0.4)
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"true {r.target}")
        ax.set_title(f"{r.model_name}: tau {r.kendall_tau:.3f}, R2 {r.r2:.3f}", fontsize=9)
    axes[0, 0].set_ylabel(f"predicted {results[0].target}")
    return _save(fig, path)


__all__ = ["PredictResult", "Regression", "plot_predictions", "predict_outputs", "predict_property", "r2_score", "run_splits"]
