"""CLI for zoos of trained classifiers and property prediction:

``weightspace zoo train-classifiers`` builds a zoo, ``weightspace zoo import-classifiers``
converts a published one (Small CNN Zoo, Model Zoos); ``weightspace predict`` trains registry
models to predict a column (test accuracy, epoch, gap, a hyperparameter) from weights."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from weightspace.cli_checks import ALLOW_INCOMPLETE, lightning, torch_device
from weightspace.cli_checks import fail as _fail

console = Console()


def train_classifiers(
    out: Path = typer.Option(..., "--out", "-o", help="zoo directory to write (resumed if it exists)"),
    dataset: str = typer.Option("mnist-subset", help="digits | mnist-subset | an MNIST-layout IDX folder (MNIST, "
                                "Fashion-MNIST) | a CIFAR binary folder | a <class>/<images> folder (e.g. SVHN)"),
    recipe: str = typer.Option("small-cnn", help="small-cnn (Unterthiner et al.) | mlp"),
    width: int | None = typer.Option(None, help="small-cnn: channels of each conv layer (default 16)"),
    hidden: str | None = typer.Option(None, help="mlp: comma-separated hidden widths (default 32)"),
    runs: int = typer.Option(200, help="training runs (each stores every checkpoint)"),
    epochs: int | None = typer.Option(None, help="override the recipe's epochs"),
    checkpoints: str | None = typer.Option(None, help="comma-separated epochs to store, e.g. 0,1,2,4,8"),
    n_train: int | None = typer.Option(None, help="training images (a seeded subset of the train split)"),
    n_test: int | None = typer.Option(None, help="test images for the test metrics"),
    batch_size: int | None = typer.Option(None),
    runs_per_shard: int = typer.Option(64, help="runs per shard (the unit of work, resume and Ray tasks)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
    backend: str = typer.Option("local", help="local | ray (shards as Ray tasks)"),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)"),
) -> None:
    """Train a population of classifiers (vectorised) into a zoo: one row per checkpoint."""
    from weightspace.zoo.search_space import get_zoo_recipe
    from weightspace.zoo.store import ZooError
    from weightspace.zoo.train_zoo import build_classifier_zoo

    try:
        cps = tuple(int(c) for c in checkpoints.split(",")) if checkpoints else None
        if cps is None and epochs is not None:  # keep the recipe's checkpoints that fit, end at the last epoch
            cps = tuple(sorted({c for c in get_zoo_recipe(recipe).checkpoints if c <= epochs} | {epochs}))
        if width is not None and (width < 1 or recipe != "small-cnn"):
            raise ValueError(f"--width is the small-cnn's channel count (>= 1); got {width} with --recipe {recipe}")
        widths = None
        if hidden is not None:
            try:
                widths = tuple(int(h) for h in hidden.split(","))
            except ValueError:
                raise ValueError(f"--hidden must be comma-separated integers, got {hidden!r}") from None
            if recipe != "mlp" or min(widths) < 1:
                raise ValueError(f"--hidden is the mlp's positive hidden widths; got {hidden!r} with --recipe {recipe}")
        rec = get_zoo_recipe(recipe, epochs=epochs, checkpoints=cps, batch_size=batch_size, width=width, hidden=widths)
        zoo = build_classifier_zoo(dataset, out, rec, num_runs=runs, seed=seed, n_train=n_train, n_test=n_test,
                                   runs_per_shard=runs_per_shard, device=torch_device(device), backend=backend,
                                   ray_address=ray_address)
    except (ValueError, FileNotFoundError, ZooError, ImportError) as e:
        _fail(str(e))
    last = zoo.table[zoo.table["epoch"] == zoo.table["epoch"].max()]
    console.print(f"{len(zoo)} checkpoints of {runs} runs ({zoo.spec.describe()}) in {out}; "
                  f"final test accuracy median {last['test_accuracy'].median():.3f}, "
                  f"diverged {int(last['diverged'].sum())}")


def predict(
    zoo_path: Path = typer.Argument(..., help="zoo of trained classifiers"),
    target: str = typer.Option("test_accuracy", help="a numeric column (regression: test_accuracy, epoch, gap, ...) "
                               "or a categorical one (classification: optimizer, activation, init)"),
    model: list[str] = typer.Option(["statnn"], "--model", "-m", help="registry model(s); repeat the option"),
    epochs: int = typer.Option(30),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    out: Path | None = typer.Option(None, "--out", "-o", help="per model a run directory OUT/<model>: the model "
                                    "(use with `weightspace evaluate` / `apply`), metrics.csv, run.json, checkpoints "
                                    "and, for a numeric target, the predicted-vs-true figure"),
    resume: bool = typer.Option(False, "--resume", help="continue the killed runs in --out (same settings)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the runs in --out"),
    device: str = typer.Option("auto"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=ALLOW_INCOMPLETE),
) -> None:
    """Predict a zoo column from the weights; Kendall tau and R^2 (or accuracy) on the test runs."""
    import sys

    from weightspace.runs import prepare_run_dir
    from weightspace.tasks.predict import plot_predictions, predict_property
    from weightspace.train import TrainConfig
    from weightspace.zoo.store import Zoo, ZooError

    try:
        if out is not None:  # every run directory refused or accepted before any training
            for m in model:
                prepare_run_dir(out / m, resume=resume, overwrite=overwrite, clear=False)
        elif resume or overwrite:
            raise ValueError("--resume and --overwrite need --out")
        zoo = Zoo.open(zoo_path, allow_incomplete=allow_incomplete)
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, **lightning(device), progress=progress)
        record = {"command": ["weightspace", *sys.argv[1:]]}
        results = [predict_property(zoo, m, target, config=config, out=None if out is None else out / m, resume=resume,
                                    overwrite=overwrite, record=record) for m in model]
    except (ValueError, KeyError, ZooError) as e:
        _fail(str(e))
    console.print(f"predicting {target} on the test runs of {zoo_path}:")
    n_test = results[0].n_test if results else 0
    if results and results[0].kind == "regression" and n_test < 30:
        # the spread of tau for unrelated rankings of n points: sqrt(2 (2n + 5) / (9 n (n - 1)))
        se = (2 * (2 * n_test + 5) / (9 * n_test * (n_test - 1))) ** 0.5 if n_test > 1 else float("inf")
        console.print(f"[yellow]warning:[/yellow] {n_test} test networks: Kendall tau varies by about +/-{se:.2f} "
                      "on so few points, and R2 as much; use a larger zoo before citing these", soft_wrap=True)
    for r in results:
        console.print("  " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.row().items()))
        if out is not None:
            figure = f", figure {plot_predictions(r, out / r.model_name / f'{target}.png')}" if r.kind == "regression" else ""
            console.print(f"  wrote {out / r.model_name}: model.safetensors, model.json, metrics.csv, run.json{figure}")


def import_classifiers(
    root: Path = typer.Argument(..., help="folder in a published layout"),
    out: Path = typer.Option(..., "--out", "-o", help="zoo directory to write (resumed if it exists)"),
    layout: str = typer.Option(..., help="small-cnn-zoo (Unterthiner et al.) | model-zoos (Schuerholt et al.)"),
    seed: int = typer.Option(0, help="seed of the split by run"),
    shard_size: int = typer.Option(1024),
) -> None:
    """Convert a published zoo of trained classifiers into a zoo."""
    from weightspace.zoo.import_classifier_zoos import import_model_zoo, import_small_cnn_zoo
    from weightspace.zoo.store import ZooError

    importers = {"small-cnn-zoo": import_small_cnn_zoo, "model-zoos": import_model_zoo}
    try:
        if layout not in importers:
            raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(importers)}")
        zoo = importers[layout](root, out, seed=seed, shard_size=shard_size, progress=True)
    except (ValueError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    console.print(f"imported {len(zoo)} checkpoints of {zoo.table['run'].nunique()} runs ({zoo.spec.describe()}) into {out}")


def register(app: typer.Typer, zoo_app: typer.Typer) -> None:
    """Add ``zoo train-classifiers``, ``zoo import-classifiers`` and ``predict`` to the main CLI."""
    zoo_app.command("train-classifiers")(train_classifiers)
    zoo_app.command("import-classifiers")(import_classifiers)
    app.command("predict")(predict)
