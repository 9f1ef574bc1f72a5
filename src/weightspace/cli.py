"""`weightspace` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Neural networks as data.")
zoo_app = typer.Typer(no_args_is_help=True, help="Build and inspect zoos (datasets of networks).")
app.add_typer(zoo_app, name="zoo")
console = Console()


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@zoo_app.command("info")
def zoo_info(path: Path = typer.Argument(..., help="zoo directory"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Print a zoo's spec, counts, splits, columns and provenance."""
    from weightspace.zoo.store import Zoo, ZooError

    try:
        info = Zoo.open(path).info()
    except ZooError as e:
        _fail(str(e))
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    console.print(f"[bold]{info['path']}[/bold]  ({'complete' if info['complete'] else 'INCOMPLETE: resume by running the same command'})")
    console.print(f"spec:     {info['spec']}")
    console.print(f"networks: {info['networks']} in {info['shards']} shards")
    console.print("splits:   " + ", ".join(f"{k} {v}" for k, v in info["splits"].items()))
    console.print("columns:  " + ", ".join(f"{k} ({v})" for k, v in info["columns"].items()))
    prov = info["provenance"]
    recipe = prov.get("recipe", {})
    if recipe:
        console.print(f"recipe:   {recipe.get('name')} v{recipe.get('version')}")
    console.print(f"source:   {prov.get('dataset', '?')}, seed {prov.get('seed', '?')}")


@zoo_app.command("fit-inrs")
def zoo_fit_inrs(
    out: Path = typer.Option(..., "--out", "-o", help="zoo directory to write (resumed if it exists)"),
    dataset: str = typer.Option("digits", help="digits | mnist-subset | a folder of IDX files | an image folder"),
    recipe: str = typer.Option("dwsnets", help="dwsnets | nfn"),
    steps: Optional[int] = typer.Option(None, help="override the recipe's step count (recorded in the recipe name)"),
    limit: Optional[int] = typer.Option(None, help="keep at most this many images per split"),
    seed: int = typer.Option(0),
    shard_size: int = typer.Option(256),
    device: str = typer.Option("cpu"),
) -> None:
    """Fit one SIREN per image into a zoo, many networks at once."""
    from weightspace.inr.siren import get_recipe
    from weightspace.signals import load_images
    from weightspace.zoo.fit_inr import build_inr_zoo
    from weightspace.zoo.store import ZooError

    try:
        rec = get_recipe(recipe, **({"steps": steps} if steps is not None else {}))
        data = load_images(dataset, seed=seed, limit=limit)
        zoo = build_inr_zoo(data, out, rec, seed=seed, shard_size=shard_size, device=device)
    except (ValueError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    console.print(f"wrote {len(zoo)} INRs to {out}; mean PSNR {zoo.table['psnr'].mean():.2f} dB")


@app.command("train")
def train(
    zoo_path: Path = typer.Argument(..., help="zoo directory"),
    model: str = typer.Option("dws", help="registry model name (see `weightspace models`)"),
    target: str = typer.Option("label", help="table column to predict"),
    epochs: int = typer.Option(40),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    augment: str = typer.Option("", help="random symmetries applied to training batches: e.g. 'sign' or 'permutation,scale'"),
    progress: bool = typer.Option(True),
) -> None:
    """Train an invariant model to classify the networks of a zoo; report test accuracy."""
    from weightspace.core.transforms import RandomSymmetry
    from weightspace.tasks.classify import classify_zoo
    from weightspace.train import TrainConfig
    from weightspace.zoo.store import Zoo, ZooError

    try:
        zoo = Zoo.open(zoo_path)
        aug = RandomSymmetry(tuple(augment.split(","))) if augment else None
        res = classify_zoo(
            zoo, model, target=target, augment=aug,
            config=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress),
        )
    except (ValueError, KeyError, ZooError) as e:
        _fail(str(e))
    console.print(
        f"{model}: test accuracy {100 * res.test_acc:.2f}% (best val {100 * res.val_acc:.2f}%), "
        f"{res.num_params:,} parameters, {res.examples_per_second:.0f} examples/s"
    )


@app.command("models")
def models() -> None:
    """List registered weight-space models."""
    from weightspace.models.registry import list_models, model_info

    for name in list_models():
        info = model_info(name)
        console.print(f"{name:12s} {info.output:12s} {'MLP+CNN' if info.supports_conv else 'MLP':8s} {info.summary}")


@app.command("quickstart")
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o"),
    epochs: int = typer.Option(40),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
) -> None:
    """Fit an INR zoo on embedded data, train the flat MLP and DWS models, print accuracies,
    and write a figure of originals vs reconstructions. The zoo is cached in OUT."""
    from weightspace.tasks.quickstart import QuickstartConfig, run_quickstart

    run_quickstart(out, QuickstartConfig(epochs=epochs, seed=seed), progress=progress)


if __name__ == "__main__":
    app()
