"""The main job: signals -> INR zoo -> weight-space models -> accuracy table and figure.

Runs on embedded data (scikit-learn's digits) in a few minutes on 2 CPU cores. The zoo
is cached in the output folder; a second run reuses it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from weightspace.core.transforms import RandomSymmetry
from weightspace.inr.siren import DWSNETS, SirenRecipe, get_recipe
from weightspace.plots import plot_reconstructions
from weightspace.signals import load_images
from weightspace.tasks.classify import classify_zoo
from weightspace.train import TrainConfig
from weightspace.zoo.build import build_inr_zoo
from weightspace.zoo.store import Zoo, ZooError


@dataclass(frozen=True)
class QuickstartConfig:
    dataset: str = "digits"
    limit: int | None = None  # images per split (None: all); small values make a smoke run
    recipe: SirenRecipe = DWSNETS
    models: tuple[str, ...] = ("mlp", "dws")
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    model_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # SIREN hidden neurons admit sign flips, which the DWS model is not invariant to:
    # training on random flips teaches it that symmetry too. The MLP baseline is left plain.
    augment: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"dws": ("sign",)})
    # where the models train (`TrainConfig.accelerator` / ``devices``); the zoo is fitted on the CPU,
    # where the native fitting kernel is fastest (as `weightspace zoo fit-inrs` does by default)
    accelerator: str = "auto"
    devices: int | list[int] = 1


def open_or_build_zoo(
    path: Path, dataset: str, recipe: SirenRecipe, seed: int, console: Console, progress: bool = True, limit: int | None = None
) -> Zoo:
    """Reuse a complete zoo made by the same recipe and data; otherwise build (or resume) it."""
    if (path / "zoo.json").exists():
        try:
            zoo = Zoo.open(path, allow_incomplete=True)  # unfinished: resumed below
            prov = zoo.provenance
            if zoo.complete and prov.get("recipe") == recipe.to_dict() and prov.get("seed") == seed and prov.get("limit") == limit:
                console.print(f"reusing cached zoo at {path} ({len(zoo)} INRs)")
                return zoo
        except ZooError as e:
            console.print(f"[yellow]cached zoo unusable ({e}); resuming/rebuilding[/yellow]")
    data = load_images(dataset, seed=seed, limit=limit)
    console.print(f"fitting {len(data)} INRs to {data.name} {data.shape} with recipe {recipe.name} v{recipe.version}")
    return build_inr_zoo(data, path, recipe, seed=seed, progress=progress, extra_provenance={"limit": limit})


def run_quickstart(out: str | Path = "runs/quickstart", config: QuickstartConfig = QuickstartConfig(), *, progress: bool = True) -> dict[str, Any]:
    console = Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    name = f"zoo-{config.dataset}-{config.recipe.name}" + (f"-limit{config.limit}" if config.limit else "")
    zoo = open_or_build_zoo(out / name, config.dataset, config.recipe, config.seed, console, progress, config.limit)
    fit_seconds = time.perf_counter() - start

    rows = []
    for name in config.models:
        console.print(f"training {name} ...")
        res = classify_zoo(
            zoo,
            name,
            config=TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                               progress=progress, accelerator=config.accelerator, devices=config.devices),
            model_config=config.model_configs.get(name),
            augment=RandomSymmetry(config.augment[name]) if name in config.augment else None,
        )
        rows.append(res.row())

    table = Table(title=f"INR classification on {zoo.provenance.get('dataset')} ({len(zoo)} INRs, test split)")
    for col in ("model", "test accuracy", "val accuracy", "parameters", "train time", "examples/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r["model"], f"{100 * r['test_acc']:.1f}%", f"{100 * r['val_acc']:.1f}%", f"{r['params']:,}", f"{r['train_s']:.0f}s", f"{r['examples_per_s']:.0f}")
    console.print(table)

    figure = _reconstruction_figure(zoo, config, out / "reconstructions.png")
    console.print(f"figure of originals vs reconstructions: {figure}")
    summary = {
        "zoo": str(zoo.path),
        "networks": len(zoo),
        "mean_psnr_db": float(zoo.table["psnr"].mean()),
        "fit_seconds": fit_seconds,
        "results": rows,
        "figure": str(figure),
        "total_seconds": time.perf_counter() - start,
    }
    (out / "quickstart.json").write_text(json.dumps(summary, indent=2))
    return summary


def _reconstruction_figure(zoo: Zoo, config: QuickstartConfig, path: Path, n: int = 8) -> Path:
    data = load_images(config.dataset, seed=config.seed, limit=config.limit)
    pos = zoo.split("test")[:n]
    table = zoo.table.iloc[pos]
    src = torch.as_tensor(table["source_index"].to_numpy().copy())
    h, w, c = data.shape
    recon = config.recipe.render(zoo.weights(pos), data.coordinates()).reshape(len(pos), h, w, c)
    return plot_reconstructions(data.images[src], recon, table["psnr"].tolist(), path, labels=table["label"].tolist())


__all__ = ["QuickstartConfig", "get_recipe", "open_or_build_zoo", "run_quickstart"]
