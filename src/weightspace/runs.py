"""Run directories: what a training run leaves behind, and using a trained model afterwards.

A run directory (``weightspace train ... --out DIR``)::

    model.safetensors        the best-validation weights of the model (its state dict); metadata
                             "weightspace" holds model.json's content, so the file stands alone
    model.json               what rebuilds it: model / preset name, registry model, resolved
                             options, the zoo's NetworkSpec, out_features, target column, class
                             count, the Standardize statistics, the library version
    metrics.csv              one row per epoch (`weightspace.checkpoint.write_metrics`)
    run.json                 command line, seed, TrainConfig, augmentation, versions, start / end
                             time, resumes, test metrics
    checkpoint.safetensors   while training: the state to resume from (`TrainState`); removed
                             when the run completes its epochs (kept when ``max_minutes``
                             stopped it, so that ``--resume`` can go on)
    tensorboard/             Lightning's TensorBoard logs, where ``tensorboard`` is installed

`load_run` rebuilds the model, `predict` applies it to raw weights (it standardises them as
in training), `evaluate_run` scores it on a zoo split, `read_networks` / `apply_run` take
networks from a zoo, a stacked ``.safetensors`` file or a single state dict.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from weightspace.checkpoint import CHECKPOINT, METRICS, atomic_write, save_state_dict
from weightspace.core.spec import NetworkSpec
from weightspace.core.transforms import Standardize
from weightspace.core.weights import Weights

MODEL, MODEL_JSON, RUN_JSON = "model.safetensors", "model.json", "run.json"
HYPERREP_MODEL = "hyperrep.safetensors"  # a `hyperrep fit` run's model (an autoencoder, not a run model)
RUN_FILES = (MODEL, MODEL_JSON, METRICS, RUN_JSON, CHECKPOINT, HYPERREP_MODEL)
MODEL_FORMAT = "weightspace-run-model"


class RunError(ValueError):
    """A run directory or its inputs that cannot be used; the message is one line."""


@dataclass(frozen=True)
class RunMetadata:
    """Everything needed to rebuild a trained classifier and feed it: ``architecture`` is the
    registry model built with ``options`` (a preset's options resolved, so a later change to
    the preset does not change this model); ``standardize`` is None for models that read raw
    weights."""

    model: str
    architecture: str
    options: dict[str, Any]
    spec: NetworkSpec
    out_features: int
    target: str
    num_classes: int
    standardize: Standardize | None
    version: str
    task: str = "classify"  # classify (integer labels), regress, or classify-names (``classes`` named)
    classes: tuple[str, ...] = ()  # classify-names: the class of output k is classes[k]
    target_mean: float = 0.0  # regress: the model predicts (target - target_mean) / target_std
    target_std: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(spec=self.spec.to_dict(), standardize=None if self.standardize is None else self.standardize.to_dict(),
                 classes=list(self.classes))  # as JSON gives it back
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunMetadata:
        norm = d.get("standardize")
        return cls(**{**d, "spec": NetworkSpec.from_dict(d["spec"]), "classes": tuple(d.get("classes", ())),
                      "standardize": None if norm is None else Standardize.from_dict(norm)})


class RunModel(nn.Module):
    """A trained model with its input standardisation: raw `Weights` ``[B, 1, ...]`` -> logits
    ``[B, out_features]``. ``net`` is the registry model (the state dict in model.safetensors)."""

    def __init__(self, net: nn.Module, meta: RunMetadata) -> None:
        super().__init__()
        self.net, self.meta = net, meta

    def forward(self, weights: Weights) -> Tensor:
        norm = self.meta.standardize
        return self.net(weights if norm is None else norm(weights))


def library_version() -> str:
    from weightspace import __version__

    return __version__


def versions() -> dict[str, str]:
    import lightning

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "weightspace": library_version()}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- the directory
def prepare_run_dir(out: str | Path, *, resume: bool = False, overwrite: bool = False, clear: bool = True) -> Path:
    """Check ``out`` before any training: refuse a file, a non-empty directory (unless
    resuming or overwriting a run directory), a resume with nothing to resume, an unwritable
    folder; create it. ``overwrite`` deletes the run's own files (never anything else) unless
    ``clear`` is False (a check ahead of time that changes nothing)."""
    out = Path(out)
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a directory; --out takes a run directory")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    ours = [e for e in entries if e in RUN_FILES or e == "tensorboard"]
    if resume:
        if not (out / CHECKPOINT).is_file():
            done = " (the run is complete)" if (out / MODEL).is_file() or (out / HYPERREP_MODEL).is_file() else ""
            raise RunError(f"{out}: nothing to resume, no {CHECKPOINT}{done}")
    elif entries and not overwrite:
        raise RunError(f"{out}: exists and is not empty; pass --resume to continue its run or --overwrite to replace it")
    elif entries and not ours:
        raise RunError(f"{out}: not a run directory (no {RUN_JSON}); refusing to overwrite its {len(entries)} entries")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunError(f"{out}: not writable ({e.strerror or e})") from None
    if overwrite and clear:
        import shutil

        for name in ours:
            shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str) + "\n"))


_NOT_COMPARED = ("progress", "max_minutes", "accelerator", "devices", "eval_batch_size")


def start_run(run_dir: Path, record: dict[str, Any], *, resume: bool) -> dict[str, Any]:
    """Write run.json at the start (status "running"). A resumed run must be the same run:
    same model, options, target, augmentation and training configuration (wall-time limits,
    progress and devices may change)."""
    if not resume:
        record = {**record, "status": "running", "started": now(), "finished": None, "resumed": []}
        write_json(run_dir / RUN_JSON, record)
        return record
    try:
        old = json.loads((run_dir / RUN_JSON).read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{run_dir / RUN_JSON}: unreadable, cannot check the resumed run ({e})") from None

    def key(r: dict[str, Any]) -> dict[str, Any]:
        cfg = {k: v for k, v in r.get("train_config", {}).items() if k not in _NOT_COMPARED}
        return {"train_config": cfg, **{k: r.get(k) for k in ("model", "model_options", "target", "augment", "mixup")}}

    a, b = key(old), key(json.loads(json.dumps(record, default=str)))
    if a != b:
        diff = [k for k in a if a[k] != b[k]]
        if "train_config" in diff:
            diff += [f"{k}" for k in a["train_config"] if a["train_config"][k] != b["train_config"].get(k)]
        raise RunError(f"{run_dir}: --resume with different settings than the run ({', '.join(diff)})")
    record = {**old, "command": record.get("command", old.get("command")), "status": "running",
              "resumed": [*old.get("resumed", []), {"at": now(), "command": record.get("command")}]}
    write_json(run_dir / RUN_JSON, record)
    return record


def finish_run(run_dir: Path, record: dict[str, Any], model: nn.Module, meta: RunMetadata,
               results: dict[str, Any], *, complete: bool = True) -> None:
    """Write the best model and its metadata and finish run.json; drop the checkpoint if the
    run trained all its epochs (``complete``), else keep it for ``--resume`` (status "stopped")."""
    text = json.dumps(meta.to_dict())
    save_state_dict(run_dir / MODEL, model.state_dict(), {"format": MODEL_FORMAT, "weightspace": text})
    write_json(run_dir / MODEL_JSON, meta.to_dict())
    finish_record(run_dir, record, results, complete=complete)


def finish_record(run_dir: Path, record: dict[str, Any], results: dict[str, Any], *, complete: bool = True) -> None:
    """Finish run.json with ``results``; drop the checkpoint if the run trained all its epochs."""
    write_json(run_dir / RUN_JSON, {**record, **results, "status": "complete" if complete else "stopped",
                                    "finished": now()})
    if complete:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)  # only now: a run killed before this can still resume


# ---------------------------------------------------------------------------- using a run
def load_run(run_dir: str | Path) -> tuple[RunModel, RunMetadata]:
    """The trained model of a run directory (eval mode, on the CPU) and its metadata."""
    from weightspace.models.registry import create_model

    path = Path(run_dir) / MODEL
    if not path.is_file():
        hint = " (training not finished: resume it with --resume)" if (Path(run_dir) / CHECKPOINT).is_file() else ""
        raise RunError(f"{run_dir}: no {MODEL}{hint}")
    with safe_open(str(path), "pt") as f:
        header = f.metadata() or {}
    if header.get("format") != MODEL_FORMAT:
        raise RunError(f"{path}: not a weightspace run model")
    meta = RunMetadata.from_dict(json.loads(header["weightspace"]))
    sizes = {} if meta.task == "edit" else {"out_features": meta.out_features}  # edits: Weights -> Weights
    net = create_model(meta.architecture, meta.spec, **sizes, **meta.options)
    net.load_state_dict(load_file(str(path)))
    return RunModel(net, meta).eval(), meta


@torch.no_grad()
def predict(model: RunModel, weights: Weights, *, batch_size: int = 512) -> Tensor:
    """Logits ``[B, out_features]`` of raw ``weights`` (``[B, 1, ...]``), in eval mode, in
    batches; refuses weights of another spec."""
    check_spec(model.meta.spec, weights.spec, "these weights")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        parts = [model(weights[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(weights), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, model.meta.out_features)


def check_spec(run: NetworkSpec, given: NetworkSpec, what: str) -> None:
    if run != given:
        raise RunError(f"spec mismatch: the run's model takes {run.describe()}; {what} are {given.describe()}")


def _class_indices(meta: RunMetadata, values: pd.Series, where: str) -> Tensor:
    if meta.task != "classify-names":
        return torch.as_tensor(values.to_numpy().copy(), dtype=torch.long)
    unknown = sorted({str(v) for v in values} - set(meta.classes))
    if unknown:
        raise RunError(f"{where}: {meta.target!r} has classes the run never saw: {unknown[:5]}")
    return torch.as_tensor([meta.classes.index(str(v)) for v in values], dtype=torch.long)


def evaluate_run(run_dir: str | Path, zoo, split: str = "test", *, device: str | torch.device = "cpu"
                 ) -> dict[str, float]:
    """Scores of a run's model on ``split`` of ``zoo`` (a `Zoo`): accuracy and mean cross-entropy
    for a classifier; Kendall's tau, R^2 and MSE (in the target's units) for a regressor. The
    model runs on ``device``."""
    model, meta = load_run(run_dir)
    model.to(device)
    check_spec(meta.spec, zoo.spec, f"the networks of {zoo.path}")
    if meta.task == "edit":
        return _evaluate_edit(model, meta, zoo, split)
    if meta.target not in zoo.table.columns:
        raise RunError(f"{zoo.path}: no column {meta.target!r}, the run's target")
    weights, table = zoo.load(split)
    if meta.task == "regress":
        from scipy.stats import kendalltau

        from weightspace.tasks.predict import r2_score

        true = table[meta.target].to_numpy(dtype=float)
        pred = predict(model, weights)[:, 0].double().numpy() * meta.target_std + meta.target_mean
        return {"kendall_tau": float(kendalltau(true, pred).statistic), "r2": r2_score(true, pred),
                "mse": float(((true - pred) ** 2).mean()), "networks": float(len(true))}
    labels = _class_indices(meta, table[meta.target], str(zoo.path))
    if len(labels) and (labels.min() < 0 or labels.max() >= meta.num_classes):
        raise RunError(f"{zoo.path}: {meta.target!r} has values outside the run's {meta.num_classes} classes")
    logits = predict(model, weights)
    return {"acc": float((logits.argmax(1) == labels).float().mean()), "loss": float(F.cross_entropy(logits, labels)),
            "networks": float(len(labels))}


@torch.no_grad()
def edited(model: RunModel, weights: Weights, *, batch_size: int = 512) -> Weights:
    """Raw ``weights`` edited by an edit run's model (`weightspace.tasks.edit.apply_edit`), on the
    model's device; returned on the device of ``weights``."""
    from weightspace.tasks.edit import apply_edit

    check_spec(model.meta.spec, weights.spec, "these weights")
    model.eval()
    norm = model.meta.standardize
    device = next(model.parameters()).device
    parts = []
    for i in range(0, len(weights), batch_size):
        raw = weights[i:i + batch_size].to(device)
        parts.append(apply_edit(raw, model.net(norm(raw)), norm).to(weights.device))
    return Weights.cat(parts)


def _evaluate_edit(model: RunModel, meta: RunMetadata, zoo, split: str) -> dict[str, float]:
    """MSE of the edited and of the unedited INRs against the dilated renderings of ``split``."""
    from weightspace.signals.base import grid_coordinates
    from weightspace.tasks.edit import _recipe_of, dilation_data, rendering_mse

    check_spec(meta.spec, zoo.spec, f"the networks of {zoo.path}")
    recipe, shape = _recipe_of(zoo), tuple(zoo.provenance.get("signal_shape") or ())
    coords = grid_coordinates(shape[:2])
    raw, target = dilation_data(zoo, split, recipe, coords, shape)
    return {"mse": rendering_mse(edited(model, raw), target, recipe, coords),
            "identity_mse": rendering_mse(raw, target, recipe, coords),
            "networks": float(len(raw))}


_SHARD_KEY = re.compile(r"layers\.(\d+)\.(weight|bias)$")


def _describe(tensors: dict[str, Tensor]) -> str:
    return ", ".join(f"{k} {list(v.shape)}" for k, v in sorted(tensors.items())) or "no tensors"


def read_networks(path: str | Path, spec: NetworkSpec, *, split: str | None = None,
                  allow_incomplete: bool = False) -> tuple[Weights, pd.DataFrame]:
    """Networks to apply a model of ``spec`` to, and a table naming them (``id``, plus the
    zoo's ``split`` and other columns). ``path``: a zoo directory (``split`` selects part), a
    ``.safetensors`` of stacked weights in the zoo shard layout (``layers.<i>.weight``
    ``[N, out, in, *k]``, ``layers.<i>.bias`` ``[N, out]``), or one network's state dict in
    either that layout without the N axis or `NetworkSpec.build_module`'s (``0.weight`` ...)."""
    from weightspace.zoo.store import Zoo

    path = Path(path)
    if path.is_dir():
        zoo = Zoo.open(path, allow_incomplete=allow_incomplete)
        check_spec(spec, zoo.spec, f"the networks of {path}")
        return zoo.load(split)
    if not path.is_file():
        raise RunError(f"{path}: no such zoo directory or .safetensors file")
    if split is not None:
        raise RunError("--split applies to a zoo, not to a file")
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise RunError(f"{path}: not a readable safetensors file ({str(e)[:100]})") from None
    mismatch = RunError(f"spec mismatch: the run's model takes {spec.describe()}; {path} holds {_describe(tensors)}")
    if tensors and all(_SHARD_KEY.match(k) for k in tensors):
        keys = [(f"layers.{i}.weight", f"layers.{i}.bias" if layer.bias else None) for i, layer in enumerate(spec.layers)]
    else:
        keys = list(spec.state_dict_keys())
    if set(tensors) != {k for pair in keys for k in pair if k is not None}:
        raise mismatch
    first = tensors[keys[0][0]]
    stacked = first.dim() == len(spec.layers[0].weight_shape) + 1
    want = [(w, tuple(layer.weight_shape)) for (w, _), layer in zip(keys, spec.layers)]
    want += [(b, (layer.out_features,)) for (_, b), layer in zip(keys, spec.layers) if b is not None]
    n = len(first) if stacked else 1
    if any(tuple(tensors[k].shape) != ((n,) if stacked else ()) + shape for k, shape in want):
        raise mismatch
    ordered = []
    for (w, b) in keys:
        ordered.append(tensors[w].float() if stacked else tensors[w].float()[None])
        if b is not None:
            ordered.append(tensors[b].float() if stacked else tensors[b].float()[None])
    return Weights.from_tensors(spec, ordered), pd.DataFrame({"id": range(n)})


def apply_run(run_dir: str | Path, networks: str | Path, *, split: str | None = None,
              allow_incomplete: bool = False, device: str | torch.device = "cpu") -> pd.DataFrame:
    """Predictions of a run's model: the networks' table (``id``, ``split``, the target if
    present) with ``predicted`` (a classifier: the class, and ``p_<class>`` its softmax
    probabilities; a regressor: the value in the target's units). The model runs on ``device``."""
    model, meta = load_run(run_dir)
    model.to(device)
    weights, table = read_networks(networks, meta.spec, split=split, allow_incomplete=allow_incomplete)
    if meta.task == "edit":
        raise RunError(f"{run_dir}: an edit run gives networks, not a table; use apply_edits (`weightspace apply "
                       "RUN NETWORKS -o edited.safetensors`)")
    outputs = predict(model, weights)
    keep = [c for c in ("id", "split", meta.target) if c in table.columns]
    out = table[keep].reset_index(drop=True).copy()
    if meta.task == "regress":  # in the target's own units
        out["predicted"] = outputs[:, 0].double().numpy() * meta.target_std + meta.target_mean
        return out
    probs = outputs.softmax(dim=1)
    pred = probs.argmax(dim=1).numpy()
    names = meta.classes or tuple(str(k) for k in range(probs.shape[1]))
    out["predicted"] = [names[k] for k in pred] if meta.classes else pred
    for k in range(probs.shape[1]):
        out[f"p_{names[k]}"] = probs[:, k].numpy()
    return out


def apply_edits(run_dir: str | Path, networks: str | Path, out: str | Path, *, split: str | None = None,
                allow_incomplete: bool = False, device: str | torch.device = "cpu") -> int:
    """Write the networks edited by an edit run's model (run on ``device``) to ``out``
    (.safetensors, the zoo shard layout: ``layers.<i>.weight`` ``[N, ...]``, ``layers.<i>.bias``);
    returns how many."""
    model, meta = load_run(run_dir)
    model.to(device)
    if meta.task != "edit":
        raise RunError(f"{run_dir}: not an edit run (task {meta.task!r}); its predictions are a table")
    weights, _ = read_networks(networks, meta.spec, split=split, allow_incomplete=allow_incomplete)
    w = edited(model, weights)
    tensors = {}
    for i, (wt, b) in enumerate(zip(w.weights, w.biases)):
        tensors[f"layers.{i}.weight"] = wt[:, 0].contiguous()
        if b is not None:
            tensors[f"layers.{i}.bias"] = b[:, 0].contiguous()
    save_state_dict(Path(out), tensors, {"format": "weightspace-edited-networks", "run": str(run_dir)})
    return len(w)


@dataclass
class RunRecord:
    """run.json's fields that `classify_zoo` fills in; the CLI adds ``command``."""

    zoo: str
    model: str
    model_options: dict[str, Any]
    target: str
    seed: int
    train_config: dict[str, Any]
    augment: str | None
    mixup: float | None
    command: list[str] | None = None
    versions: dict[str, str] = field(default_factory=versions)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
