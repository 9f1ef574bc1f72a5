"""`weightspace gasp …`: GASP, a generator of function weights trained adversarially on signals."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from weightspace.cli_checks import fail as _fail
from weightspace.cli_checks import torch_device

app = typer.Typer(no_args_is_help=True, help="GASP: a hypernetwork of function weights trained as a GAN on signals.")
console = Console()

GENERATOR = "gasp.safetensors"
SCALES = (1, 2, 4)


def _grid(shape: tuple[int, ...], scale: int):
    from weightspace.signals.base import grid_coordinates

    return grid_coordinates(tuple(scale * s for s in shape))


def _figure(generator, grid: tuple[int, ...], path: Path, n: int, seed: int, scales=SCALES) -> Path:
    """The same ``n`` samples rendered at each of ``scales`` times the training grid."""
    from weightspace.plots import plot_image_rows
    from weightspace.tasks.gasp import sample_signals
    from weightspace.tasks.generate import as_images

    c = generator.config.out_features
    rows = []
    for s in scales:
        shape = (*(s * g for g in grid), c)
        values = sample_signals(generator, n, _grid(grid, s), seed=seed)
        rows.append((f"{s}x: {'x'.join(str(v) for v in shape[:-1])}", as_images(values, shape)))
    return plot_image_rows(rows, path)


@app.command("fit")
def gasp_fit(
    out: Path = typer.Option(..., "--out", "-o", help="directory: gasp.safetensors (the generator), losses.csv, "
                             "samples.png (1x, 2x, 4x the training resolution), quality.json"),
    dataset: str = typer.Option("mnist-subset", help="digits | mnist-subset | shapes | a folder (see `zoo fit-inrs`)"),
    limit: int | None = typer.Option(None),
    per_class: int | None = typer.Option(None),
    resolution: int | None = typer.Option(None),
    field: str | None = typer.Option(None),
    preset: str = typer.Option("gasp-mnist-cpu", help="gasp-mnist | gasp-shapes (the paper's models) | "
                               "gasp-mnist-cpu | gasp-shapes-cpu (smaller, for a CPU)"),
    steps: int = typer.Option(2000, help="discriminator + generator updates"),
    batch_size: int = typer.Option(32),
    max_points: int | None = typer.Option(None, help="a random subset of each signal's points per step (default: all)"),
    samples: int = typer.Option(256, help="samples judged by a classifier of the real signals"),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto"),
) -> None:
    """Train GASP on a dataset's training split; write the generator, its losses, a figure of
    samples at 1x, 2x and 4x the training resolution, and how a classifier of the real signals
    judges the samples."""
    import csv
    import json

    import numpy as np

    from weightspace.cli_functa import _load
    from weightspace.inr.gasp import save_generator
    from weightspace.tasks.gasp import PRESETS, Judge, sample_signals, train_preset

    try:
        if preset not in PRESETS:
            raise ValueError(f"unknown --preset {preset!r}; expected one of {', '.join(PRESETS)}")
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"--out {out}: exists and is not empty")
        data, record = _load(dataset, seed, limit, per_class, resolution, field)
        if not getattr(data, "grid", True):
            raise ValueError(f"{dataset}: GASP renders signals on a grid; these are scattered points")
        dims = data.coordinates().shape[1]
        if dims not in (2, 3):
            raise ValueError(f"{dataset}: GASP here takes images (2D) or volumes (3D); these signals are {dims}D")
        if ("shapes" in preset) != (dims == 3):
            raise ValueError(f"--preset {preset} is for {'3D' if 'shapes' in preset else '2D'} signals; "
                             f"{dataset} has {dims}D coordinates")
        res, model, config = train_preset(preset, data, steps=steps, batch_size=batch_size, max_points=max_points,
                                          seed=seed, progress=progress, device=torch_device(device))
        out.mkdir(parents=True, exist_ok=True)
        save_generator(res.generator, out / GENERATOR, {"preset": preset, "source": record, "train": config.to_dict(),
                                                        "signal_shape": list(data.signal_shape), "seconds": res.seconds})
        with open(out / "losses.csv", "w", newline="") as f:
            w = csv.writer(f)
            keys = list(res.history)
            w.writerow(["step", *keys])
            for i, row in enumerate(zip(*(res.history[k] for k in keys))):
                w.writerow([i + 1, *(f"{v:.6g}" for v in row)])
        split = np.asarray(data.split)
        values, labels, coords = data.targets(), data.labels, data.coordinates()
        train, test = split == "train", split == "test"
        if not test.any():
            raise ValueError(f"{dataset}: no test signals to judge the samples against")
        judge = Judge.fit(values[train], labels[train], values[test], labels[test], seed=seed)
        quality = {"classifier_test_accuracy": judge.test_accuracy,
                   "gasp": judge.judge(sample_signals(res.generator, samples, coords, seed=seed)),
                   "real_test": judge.judge(values[test])}  # all of them: splits may be sorted by class
        (out / "quality.json").write_text(json.dumps(quality, indent=1) + "\n")
        _figure(res.generator, tuple(data.signal_shape[:-1]), out / "samples.png", 8, seed)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    g, r = quality["gasp"], quality["real_test"]
    console.print(f"wrote {out}: {GENERATOR}, losses.csv, samples.png, quality.json ({res.seconds:.0f} s)")
    console.print(f"classifier of the real signals ({100 * judge.test_accuracy:.1f}% on real test signals) on "
                  f"{samples} samples: confidence {g['confidence']:.3f} (real {r['confidence']:.3f}), class spread "
                  f"{g['class_spread']:.3f} (real {r['class_spread']:.3f}), {g['classes_present']} classes; "
                  f"RMS to the nearest training signal {g['nn_rms_median']:.3f} (real test {r['nn_rms_median']:.3f})")


@app.command("sample")
def gasp_sample(
    run: Path = typer.Argument(..., help="directory of `gasp fit` (or its gasp.safetensors)"),
    out: Path = typer.Option(..., "--out", "-o", help="figure to write (.png)"),
    count: int = typer.Option(8, "--count", "-n", help="samples to draw"),
    scale: int = typer.Option(4, help="render at 1x .. this many times the training resolution (one row each)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
) -> None:
    """Draw samples from a trained GASP generator and render them at 1x up to --scale times
    the training resolution (a sample is a function: any grid will do)."""
    from weightspace.inr.gasp import load_generator

    try:
        generator, info = load_generator(run / GENERATOR if run.is_dir() else run)
        shape = info.get("signal_shape")
        if not isinstance(shape, list) or len(shape) < 2:
            raise ValueError(f"{run}: the generator records no training grid")
        generator.to(torch_device(device))
        scales = [s for s in SCALES if s <= scale] + ([scale] if scale not in SCALES else [])
        _figure(generator, tuple(shape[:-1]), out, count, seed, scales=sorted(set(scales)))
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    console.print(f"wrote {out}: {count} samples at {', '.join(f'{s}x' for s in sorted(set(scales)))}")
