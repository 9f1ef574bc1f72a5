"""INR editing, weight to weight: the dilation task of DWSNets / NFN.

An equivariant model reads an INR's weights and outputs a weight update; the edited INR
``w + std * f(standardise(w))`` should represent the morphologically dilated image. The
loss is on the networks' outputs (functional forward at every pixel), not on weights.

The target is the dilation of the INR's own rendering (a 3x3 maximum filter), so the task
needs nothing but the zoo; the reference code instead fits a second INR to each dilated
image. MSE is reported in the recipe's target range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.core.functional import forward
from weightspace.core.transforms import Standardize
from weightspace.core.weights import Weights
from weightspace.inr.siren import SirenRecipe
from weightspace.models.registry import create_model, model_info
from weightspace.plots import plot_image_rows
from weightspace.signals.base import grid_coordinates
from weightspace.train import TrainConfig, WeightBatches, evaluate, fit
from weightspace.zoo.store import Zoo


def dilate(images: Tensor, size: int = 3) -> Tensor:
    """Grey-scale dilation (maximum filter) of ``[B, H, W, C]`` images."""
    x = images.permute(0, 3, 1, 2)
    return F.max_pool2d(x, size, stride=1, padding=size // 2).permute(0, 2, 3, 1)


def apply_edit(raw: Weights, delta: Weights, norm: Standardize) -> Weights:
    """``raw + std_i * delta_i`` per tensor: the model works in standardised units."""
    std = iter(norm.std)

    def add(a: Tensor | None, d: Tensor | None) -> Tensor | None:
        return None if a is None else a + next(std) * d

    return Weights(
        raw.spec,
        tuple(add(a, d) for a, d in zip(raw.weights, delta.weights)),
        tuple(add(a, d) for a, d in zip(raw.biases, delta.biases)),
    )


class DilationEdit:
    """Task: batches are (raw weights, target values ``[B, P, c]`` in [0, 1])."""

    monitor, mode = "mse", "min"

    def __init__(self, recipe: SirenRecipe, coords: Tensor, norm: Standardize) -> None:
        self.recipe, self.coords, self.norm = recipe, coords, norm

    def outputs(self, model: nn.Module, raw: Weights) -> Tensor:
        """Raw outputs (target range) of the edited networks at every pixel: ``[B, P, c]``."""
        edited = apply_edit(raw, model(self.norm(raw)), self.norm)
        return forward(edited, self.coords.to(raw.device)) + self.recipe.output_offset

    def step(self, model: nn.Module, batch) -> tuple[Tensor, dict[str, Tensor], int]:
        raw, target = batch
        loss = F.mse_loss(self.outputs(model, raw), self.recipe.encode_targets(target))
        return loss, {"mse": loss.detach()}, len(target)


@dataclass
class EditResult:
    model_name: str
    test_mse: float
    identity_mse: float  # the unedited INRs against the dilated targets
    num_params: int
    train_seconds: float
    examples_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None

    def row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("model_name", "test_mse", "identity_mse", "num_params", "train_seconds", "examples_per_second")}


def _recipe_of(zoo: Zoo) -> SirenRecipe:
    r = dict(zoo.provenance.get("recipe") or {})
    if not r:
        raise ValueError(f"{zoo.path}: no recipe in provenance; editing needs the INRs' decode path")
    r["hidden"], r["target_range"] = tuple(r["hidden"]), tuple(r["target_range"])
    return SirenRecipe(**r)


def rendering_mse(weights: Weights, target: Tensor, recipe: SirenRecipe, coords: Tensor) -> float:
    """MSE, in the recipe's target range, of raw ``weights``' renderings against ``target`` ``[N, P, c]``."""
    return float(F.mse_loss(forward(weights, coords) + recipe.output_offset, recipe.encode_targets(target)))


def dilation_data(zoo: Zoo, split: str, recipe: SirenRecipe, coords: Tensor, shape: tuple[int, int, int]) -> tuple[Weights, Tensor]:
    """Raw weights of ``split`` and the dilation of their renderings, ``[N, P, c]``."""
    w, _ = zoo.load(split)
    h, wd, c = shape
    rendered = recipe.render(w, coords).reshape(len(w), h, wd, c)
    return w, dilate(rendered).reshape(len(w), h * wd, c)


def edit_zoo(zoo: Zoo, model_name: str, *, config: TrainConfig = TrainConfig(), model_config: dict[str, Any] | None = None,
             out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
             record: dict[str, Any] | None = None) -> EditResult:
    """Train equivariant model ``model_name`` to dilate the zoo's INRs; report test MSE.
    ``out`` / ``resume`` / ``overwrite`` / ``record``: a run directory as `classify_zoo` writes
    one (task "edit"; `weightspace.runs.apply_run` writes the edited networks)."""
    from weightspace import runs

    run_dir = None if out is None else runs.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if resume and run_dir is None:
        raise ValueError("resume needs a run directory (out)")
    if model_info(model_name).output != "equivariant":
        raise ValueError(f"model {model_name!r} is invariant; editing needs an equivariant (Weights -> Weights) model")
    shape = tuple(zoo.provenance.get("signal_shape") or ())
    if len(shape) != 3:
        raise ValueError(f"{zoo.path}: editing needs an image zoo (provenance.signal_shape [H, W, C])")
    recipe = _recipe_of(zoo)
    coords = grid_coordinates(shape[:2])
    data = {s: dilation_data(zoo, s, recipe, coords, shape) for s in ("train", "val", "test")}
    norm = Standardize.fit(data["train"][0])
    batches = {s: WeightBatches(w, y, seed=config.seed) for s, (w, y) in data.items()}
    torch.manual_seed(config.seed)
    model = create_model(model_name, zoo.spec, **(model_config or {}))
    task = DilationEdit(recipe, coords, norm)
    if run_dir is not None:
        from dataclasses import asdict

        from weightspace.models.registry import resolve

        arch, options, _ = resolve(model_name, **(model_config or {}))
        meta = runs.RunMetadata(model_name, arch, options, zoo.spec, 0, "dilation", 0, norm, runs.library_version(),
                                task="edit")
        rec = runs.RunRecord(str(zoo.path), model_name, options, "dilation", config.seed, asdict(config), None, None)
        rec = runs.start_run(run_dir, {**rec.to_dict(), **(record or {})}, resume=resume)
    result = fit(model, task, batches["train"], batches["val"], config, run_dir=run_dir, resume=resume)
    test = evaluate(result.model, task, batches["test"], config)
    identity = rendering_mse(*data["test"], recipe, coords)
    if run_dir is not None:
        runs.finish_run(run_dir, rec, result.model, meta, {
            "test": {"mse": test["mse"], "identity_mse": identity}, "best_val": result.best_value,
            "epochs_run": result.epochs_run, "train_seconds": result.seconds}, complete=result.epochs_run >= config.epochs)
    return EditResult(
        model_name,
        test_mse=test["mse"],
        identity_mse=identity,
        num_params=sum(p.numel() for p in model.parameters()),
        train_seconds=result.seconds,
        examples_per_second=result.examples_per_second,
        history=result.history,
        model=result.model,
    )


def plot_edits(zoo: Zoo, results: list[EditResult], path: str | Path, n: int = 6) -> Path:
    """Rows: input INR, dilated target, then each model's edited INR, for ``n`` test INRs."""
    shape = tuple(zoo.provenance["signal_shape"])
    recipe = _recipe_of(zoo)
    coords = grid_coordinates(shape[:2])
    w, y = dilation_data(zoo, "test", recipe, coords, shape)
    w, y = w[:n], y[:n]
    norm = Standardize.fit(zoo.load("train")[0])
    rows = [("input", recipe.render(w, coords)), ("target", y)]
    for r in results:
        with torch.no_grad():
            out = DilationEdit(recipe, coords, norm).outputs(r.model.eval(), w) - recipe.output_offset
        rows.append((f"{r.model_name}\nMSE {r.test_mse:.4f}", recipe.decode(out)))
    return plot_image_rows([(label, imgs.reshape(-1, *shape)) for label, imgs in rows], path)
