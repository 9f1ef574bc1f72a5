"""`weightspace functa …` and `weightspace hyperinr …`: signals as compact codes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from weightspace.cli_checks import fail as _fail
from weightspace.cli_checks import lightning, torch_device

functa_app = typer.Typer(no_args_is_help=True, help="Functa: meta-learned modulated SIRENs; datasets as latents.")
hyperinr_app = typer.Typer(no_args_is_help=True, help="Hypernetwork INRs: a code per signal -> full SIREN weights.")
console = Console()

_DATASET = "digits | mnist-subset | shapes | tones | a folder (see `zoo fit-inrs`)"


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        _fail(f"expected comma-separated sizes like 64,64,64, got {text!r}")
    if not sizes or min(sizes) < 1:
        _fail(f"sizes must be positive, got {text!r}")
    return sizes


def _load(dataset: str, seed: int, limit, per_class, resolution, field):
    from weightspace.signals.load import load_signals, source_record

    options = {"limit": limit, "per_class": per_class, "resolution": resolution, "field": field}
    return load_signals(dataset, seed=seed, **options), source_record(dataset, seed=seed, **options)


def _split_psnr(table) -> str:
    means = table.groupby("split")["psnr"].mean()
    return ", ".join(f"{k} {v:.2f} dB" for k, v in means.items())


# ---------------------------------------------------------------------------- functa
@functa_app.command("fit")
def functa_fit(
    out: Path = typer.Option(..., "--out", "-o", help="directory: functa.safetensors and functaset/"),
    dataset: str = typer.Option("digits", help=_DATASET),
    limit: int | None = typer.Option(None, help="images: at most this many per split"),
    per_class: int | None = typer.Option(None, help="shapes: signals per class"),
    resolution: int | None = typer.Option(None, help="shapes: grid points per axis"),
    field: str | None = typer.Option(None, help="shapes: sdf | udf | occupancy"),
    hidden: str = typer.Option("64,64,64", help="hidden widths of the shared SIREN"),
    latent_dim: int = typer.Option(64),
    omega: float = typer.Option(30.0),
    steps: int = typer.Option(500, help="outer (meta) steps"),
    inner_steps: int = typer.Option(3, help="inner steps on the latent, in training and encoding"),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(3e-4, help="outer Adam learning rate"),
    first_order: bool = typer.Option(False, help="first-order MAML (cheaper)"),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto"),
) -> None:
    """Meta-learn a modulated SIREN on the training split; write every signal's latent as a functaset."""
    from weightspace.inr.meta import MetaConfig
    from weightspace.tasks.functa import fit_functa
    from weightspace.zoo.store import ZooError

    try:
        data, record = _load(dataset, seed, limit, per_class, resolution, field)
        meta = MetaConfig(steps=steps, batch_size=batch_size, inner_steps=inner_steps, lr=lr, first_order=first_order,
                          seed=seed, progress=progress)
        res = fit_functa(data, out, hidden=_sizes(hidden), latent_dim=latent_dim, omega=omega, meta=meta, seed=seed,
                         provenance={"source": record}, device=torch_device(device))
    except (ValueError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    console.print(f"wrote {out / 'functa.safetensors'} and {len(res.functaset)} latents to {out / 'functaset'}; "
                  f"PSNR after {inner_steps} inner steps: {_split_psnr(res.functaset.table)}")


@functa_app.command("encode")
def functa_encode(
    model: Path = typer.Argument(..., help="functa.safetensors (from `functa fit`)"),
    out: Path = typer.Option(..., "--out", "-o", help="functaset directory to write"),
    dataset: str = typer.Option("digits", help=_DATASET),
    limit: int | None = typer.Option(None),
    per_class: int | None = typer.Option(None),
    resolution: int | None = typer.Option(None),
    field: str | None = typer.Option(None),
    inner_steps: int = typer.Option(3),
    seed: int = typer.Option(0, help="split seed of the dataset"),
    device: str = typer.Option("auto"),
) -> None:
    """Encode a dataset into a functaset (one latent per signal) with a meta-learned model."""
    from weightspace.inr.modulated import load_modulated
    from weightspace.tasks.functa import encode_functaset
    from weightspace.zoo.store import ZooError

    try:
        net = load_modulated(model).to(torch_device(device))
        data, record = _load(dataset, seed, limit, per_class, resolution, field)
        zoo = encode_functaset(net, data, out, steps=inner_steps, model_file=model, provenance={"source": record})
    except (ValueError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    console.print(f"wrote {len(zoo)} latents to {out}; PSNR {_split_psnr(zoo.table)}")


@functa_app.command("sample")
def functa_sample(
    functaset: Path = typer.Argument(..., help="functaset directory"),
    out: Path = typer.Option(..., "--out", "-o", help="figure to write (.png): samples over their nearest training signal"),
    count: int = typer.Option(8, "--count", "-n", help="samples to draw"),
    epochs: int = typer.Option(300, help="diffusion training epochs over the training latents"),
    model: Path | None = typer.Option(None, help="functa.safetensors (default: the one the functaset names)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
) -> None:
    """Train a small DDPM on the training latents, sample, decode, and plot beside nearest neighbours."""
    from weightspace.inr.meta import reconstruct
    from weightspace.inr.render import source_dataset
    from weightspace.tasks.functa import functaset_latents, model_of, sample_signals
    from weightspace.tasks.generate import plot_samples_with_neighbours
    from weightspace.train import TrainConfig
    from weightspace.zoo.store import Zoo, ZooError

    try:
        zoo = Zoo.open(functaset)
        if zoo.provenance.get("kind") != "functa":
            raise ValueError(f"{functaset}: not a functaset (kind {zoo.provenance.get('kind')!r})")
        net = model_of(zoo, model)
        train = functaset_latents(zoo, "train")
        data = source_dataset(zoo)
        shape = tuple(zoo.provenance["signal_shape"])
        if data is not None:
            coords, idx = data.coordinates(), zoo.table.loc[zoo.split("train"), "source_index"].to_numpy().copy()
            references, labels = data.targets()[idx], data.labels[idx].tolist()
        else:  # no source recorded: compare with the decoded training latents
            from weightspace.signals.base import grid_coordinates

            coords = grid_coordinates(shape[:-1])
            references, labels = reconstruct(net, train, coords), zoo.table.loc[zoo.split("train"), "label"].tolist()
        cfg = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, weight_decay=0.0, progress=False, seed=seed,
                          **lightning(device))
        samples = sample_signals(net, train, coords, count, seed=seed, config=cfg)
        _, _, dist = plot_samples_with_neighbours(samples.signals, references, shape, out, train_labels=labels)
    except (ValueError, KeyError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    console.print(f"wrote {out}: {count} samples, RMS distance to the nearest training signal "
                  f"{dist.min():.3f} .. {dist.max():.3f}")


@functa_app.command("infer")
def functa_infer(
    functaset: Path = typer.Argument(..., help="functaset of a shape dataset (from `functa fit --dataset shapes "
                                     "--field sdf` or `--field occupancy`)"),
    observe: list[str] = typer.Option(["view:+z", "random:0.1"], "--observe", help="what is seen of each shape: "
                                      "random:F (a fraction F of the grid points, with their values) or view:AXIS (what "
                                      "a depth camera looking along +x, -x, +y, -y, +z or -z sees: every ray up to its "
                                      "first point inside); repeat the option for several"),
    split: str = typer.Option("test", help="the split whose shapes are inferred"),
    count: int | None = typer.Option(None, "--count", "-n", help="at most this many shapes of the split (default: all)"),
    inner_steps: int | None = typer.Option(None, help="inner steps on the observed points (default: the functaset's)"),
    figure: Path | None = typer.Option(None, help="figure (.png): full shape, observed points, functa's inference and "
                                       "the nearest training shape, for the first --observe"),
    as_json: Path | None = typer.Option(None, "--json", help="also write the summary rows as JSON"),
    model: Path | None = typer.Option(None, help="functa.safetensors (default: the one the functaset names)"),
    seed: int = typer.Option(0, help="seed of the random observations"),
    device: str = typer.Option("auto"),
) -> None:
    """Infer whole 3D shapes from partial observations: functa's inner loop on the observed points
    only; IoU and Chamfer distance against the full shapes, beside the nearest training shape."""
    import json

    import numpy as np
    from rich.table import Table

    from weightspace.inr.render import source_dataset
    from weightspace.tasks.functa import model_of
    from weightspace.tasks.shape_inference import Observation, infer_shapes, plot_inference
    from weightspace.zoo.store import Zoo, ZooError

    try:
        observations = [Observation.parse(o) for o in observe]
        zoo = Zoo.open(functaset)
        if zoo.provenance.get("kind") != "functa":
            raise ValueError(f"{functaset}: not a functaset (kind {zoo.provenance.get('kind')!r})")
        net = model_of(zoo, model).to(torch_device(device))
        data = source_dataset(zoo)
        if data is None:
            raise ValueError(f"{functaset}: its source shapes cannot be loaded (the functaset records no source)")
        field = data.meta.get("field") if data.kind == "shape" else None
        if data.kind != "shape" or not data.grid:
            raise ValueError(f"{functaset}: shape inference needs shapes on a grid; these are {data.kind} signals")
        if field not in ("sdf", "occupancy"):
            raise ValueError(f"{functaset}: a {field} field has no inside; fit the functa on --field sdf or occupancy")
        splits = np.asarray(data.split)
        if not (splits == split).any():
            raise ValueError(f"{functaset}: no {split!r} shapes (splits: {', '.join(sorted(set(splits)))})")
        pick = np.flatnonzero(splits == split)[:count]
        values, train = data.targets()[pick], data.targets()[splits == "train"]
        steps = inner_steps or int(zoo.provenance.get("inner_steps", 3))
        resolution, level = data.signal_shape[0], float(data.meta.get("surface_level", 0.5))
        inside_high = field == "occupancy"
        rows, first = [], None
        for obs in observations:
            res = infer_shapes(net, data.coordinates(), values, train, obs, resolution=resolution, level=level,
                               inside_high=inside_high, steps=steps, seed=seed)
            rows.append(res.summary())
            first = first or res
        if figure is not None:
            names = [data.classes[int(lb)] for lb in data.labels[pick]]
            plot_inference(values, first, resolution, figure, level=level, inside_high=inside_high, labels=names)
        if as_json is not None:
            as_json.write_text(json.dumps(rows, indent=1) + "\n")
    except (ValueError, KeyError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    table = Table(title=f"{len(pick)} {split} shapes ({resolution}^3 {field}), functa with {steps} inner steps on the "
                        "observed points vs the nearest training shape")
    for col in ("observation", "seen", "functa IoU", "nearest IoU", "functa Chamfer", "nearest Chamfer"):
        table.add_column(col, justify="left" if col == "observation" else "right")
    for r in rows:
        table.add_row(str(r["observation"]), f"{r['observed']:.1%}", f"{r['functa_iou']:.3f}", f"{r['nearest_iou']:.3f}",
                      f"{r['functa_chamfer']:.4f}", f"{r['nearest_chamfer']:.4f}")
    console.print(table)
    console.print("IoU: volumetric, of the occupancies; Chamfer: between boundary voxels, in units of the [-1, 1] cube"
                  + (f"; wrote {figure}" if figure is not None else ""))


# ---------------------------------------------------------------------------- hyperinr
@hyperinr_app.command("fit")
def hyperinr_fit(
    out: Path = typer.Option(..., "--out", "-o", help="directory: hyperinr.safetensors, codes/, weights/"),
    dataset: str = typer.Option("digits", help=_DATASET),
    limit: int | None = typer.Option(None),
    per_class: int | None = typer.Option(None),
    resolution: int | None = typer.Option(None),
    field: str | None = typer.Option(None),
    code_dim: int = typer.Option(64),
    hidden: str = typer.Option("256,256", help="hypernetwork hidden widths"),
    inr_hidden: str = typer.Option("32,32", help="generated SIREN hidden widths"),
    recipe: str = typer.Option("dwsnets", help="decode path of the generated SIRENs: dwsnets | nfn"),
    steps: int = typer.Option(2000, help="joint (auto-decoding) steps"),
    batch_size: int = typer.Option(64),
    points: int | None = typer.Option(None, help="coordinates sampled per step (default: all)"),
    encode_steps: int = typer.Option(300, help="steps to encode each val/test signal"),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto"),
) -> None:
    """Jointly fit a hypernetwork and per-signal codes; write codes and generated weights as zoos."""
    from weightspace.inr.hyper import HyperINRConfig
    from weightspace.tasks.hyperinr import fit_dataset
    from weightspace.zoo.store import ZooError

    try:
        data, record = _load(dataset, seed, limit, per_class, resolution, field)
        cfg = HyperINRConfig(code_dim=code_dim, hidden=_sizes(hidden), inr_hidden=_sizes(inr_hidden), recipe=recipe,
                             steps=steps, batch_size=batch_size, points_per_step=points, encode_steps=encode_steps)
        res = fit_dataset(data, out, cfg, seed=seed, progress=progress, provenance={"source": record},
                          device=torch_device(device))
    except (ValueError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    console.print(f"wrote {out / 'hyperinr.safetensors'}, {len(res.codes_zoo)} codes ({out / 'codes'}) and "
                  f"generated INRs ({out / 'weights'}); PSNR {_split_psnr(res.codes_zoo.table)}")


@hyperinr_app.command("encode")
def hyperinr_encode(
    model: Path = typer.Argument(..., help="hyperinr.safetensors (from `hyperinr fit`)"),
    out: Path = typer.Option(..., "--out", "-o", help="directory to write codes/ and weights/ into"),
    dataset: str = typer.Option("digits", help=_DATASET),
    limit: int | None = typer.Option(None),
    per_class: int | None = typer.Option(None),
    resolution: int | None = typer.Option(None),
    field: str | None = typer.Option(None),
    steps: int | None = typer.Option(None, help="code optimisation steps (default: the model's)"),
    seed: int = typer.Option(0, help="split seed of the dataset"),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto"),
) -> None:
    """Encode signals as codes with the hypernetwork fixed; write codes and generated weights as zoos."""
    from weightspace.inr.hyper import load_hyperinr
    from weightspace.tasks.hyperinr import encode_dataset
    from weightspace.zoo.store import ZooError

    try:
        net, info = load_hyperinr(model)
        net.to(torch_device(device))
        fitted = info.get("source") or {}
        if str(fitted.get("dataset")) == dataset:  # the grid the hypernetwork was fitted on, unless told otherwise
            for name, given in (("resolution", resolution), ("field", field)):
                if name in fitted and given is None:
                    console.print(f"--{name} {fitted[name]}: the fit's (recorded in {model.name})")
                elif name in fitted and given != fitted[name]:
                    console.print(f"[yellow]warning:[/yellow] --{name} {given} differs from the fit's {fitted[name]}",
                                  soft_wrap=True)
            resolution = fitted.get("resolution") if resolution is None else resolution
            field = fitted.get("field") if field is None else field
        data, record = _load(dataset, seed, limit, per_class, resolution, field)
        res = encode_dataset(net, data, out, steps=steps, seed=seed, progress=progress,
                             provenance={"source": record, "model_file": str(model.resolve())})
    except (ValueError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    console.print(f"wrote {len(res.codes_zoo)} codes and generated INRs under {out}; PSNR {_split_psnr(res.codes_zoo.table)}")
