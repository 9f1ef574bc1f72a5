"""`weightspace` command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from weightspace import cli_hyperrep
from weightspace.cli_checks import ALLOW_INCOMPLETE, guard, lightning, set_quiet, torch_device
from weightspace.cli_checks import fail as _fail
from weightspace.cli_checks import main as run_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Neural networks as data.")
zoo_app = typer.Typer(no_args_is_help=True, help="Build and inspect zoos (datasets of networks).")
app.add_typer(zoo_app, name="zoo")
app.add_typer(cli_hyperrep.app, name="hyperrep")
console = Console()


@app.callback()
def _root(quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars (scripts, logs); results and "
                                     "errors still print")) -> None:
    """Neural networks as data."""
    if quiet:
        set_quiet()


@zoo_app.command("info")
def zoo_info(
    path: Path = typer.Argument(..., help="zoo directory"),
    as_json: bool = typer.Option(False, "--json"),
    allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help="open a zoo holding NaN / inf weights"),
) -> None:
    """Print a zoo's spec, counts, splits, columns and provenance (after verifying it)."""
    from weightspace.zoo.store import Zoo, ZooError

    try:
        info = Zoo.open(path, allow_nonfinite=allow_nonfinite, allow_incomplete=True).info()
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


@zoo_app.command("verify")
def zoo_verify(
    path: Path = typer.Argument(..., help="zoo directory"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    hashes: bool = typer.Option(True, help="recompute every shard's content hash (reads every byte)"),
    allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help="do not count NaN / inf weights as problems"),
) -> None:
    """Check a zoo (structure, table against shards, labels, content hashes, finite values);
    exit 0 when clean, 2 with one line per problem otherwise."""
    import sys

    from weightspace.zoo.verify import verify_zoo

    report = verify_zoo(path, hashes=hashes, values=True, allow_nonfinite=allow_nonfinite)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:  # plain print: rich would wrap long lines and read [..] as markup
        for line in report.warnings:
            print(f"warning: {line}", file=sys.stderr)
        for line in report.lines():
            print(line)
        if report.ok:
            print(f"{path}: ok, {report.networks} networks in {len(report.shards)} shards "
                  f"({report.hashes_checked} content hashes checked, values {'checked' if report.values_checked else 'not checked'})")
    if not report.ok:
        raise typer.Exit(2)


@zoo_app.command("fit-inrs")
def zoo_fit_inrs(
    out: Path = typer.Option(..., "--out", "-o", help="zoo directory to write (resumed if it exists)"),
    dataset: str = typer.Option(
        "digits", help="digits | mnist-subset | shapes | tones | a folder: MNIST IDX files, CIFAR binary files, "
        "or <class>/<files> of images, .wav clips or meshes"),
    kind: str | None = typer.Option(None, help="read a folder as image | shape | audio (default: by its files)"),
    recipe: str = typer.Option("dwsnets", help="dwsnets | nfn"),
    steps: int | None = typer.Option(None, help="override the recipe's step count (recorded in the recipe name)"),
    limit: int | None = typer.Option(None, help="images: at most this many per split; mesh / WAV folders: per class"),
    per_class: int | None = typer.Option(None, help="shapes / tones: signals per class"),
    resolution: int | None = typer.Option(None, help="shapes / meshes: grid points per axis"),
    field: str | None = typer.Option(None, help="shapes / meshes: sdf | udf | occupancy"),
    length: int | None = typer.Option(None, help="audio: samples per clip (WAVs are cropped / zero-padded)"),
    inrs_per_train_image: int = typer.Option(1, help="INRs per training signal, from different seeds (NFN: 10)"),
    seed: int = typer.Option(0),
    shard_size: int = typer.Option(256),
    device: str = typer.Option("cpu"),  # cpu by default: the native kernel is the fastest fitter here
    backend: str = typer.Option("local", help="local | ray (shards as Ray tasks)"),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)"),
) -> None:
    """Fit SIRENs to signals (images, 3D shapes, audio) into a zoo, many networks at once."""
    from weightspace.inr.siren import get_recipe
    from weightspace.signals.load import load_signals, source_record
    from weightspace.zoo.build import build_inr_zoo
    from weightspace.zoo.store import ZooError

    options = {"limit": limit, "per_class": per_class, "resolution": resolution, "field": field, "length": length}
    try:
        rec = get_recipe(recipe, **({"steps": steps} if steps is not None else {}))
        data = load_signals(dataset, kind=kind, seed=seed, **options)
        zoo = build_inr_zoo(
            data, out, rec, seed=seed, shard_size=shard_size, device=torch_device(device),
            inrs_per_train_image=inrs_per_train_image,
            backend=backend, ray_address=ray_address,
            extra_provenance={"source": source_record(dataset, kind=kind, seed=seed, **options)},
        )
    except (ValueError, FileNotFoundError, ImportError, ZooError) as e:
        _fail(str(e))
    console.print(f"wrote {len(zoo)} INRs to {out}; mean PSNR {zoo.table['psnr'].mean():.2f} dB")


@zoo_app.command("render")
def zoo_render(
    path: Path = typer.Argument(..., help="zoo directory"),
    out: Path = typer.Option(..., "--out", "-o", help="figure to write (.png)"),
    index: str | None = typer.Option(None, help="network ids, comma-separated (e.g. 0,5,9)"),
    split: str | None = typer.Option(None, help="render the first --count networks of this split"),
    count: int = typer.Option(8, "--count", "-n", help="networks to render when no --index is given"),
    mesh: Path | None = typer.Option(None, help="shapes: also write marching-cubes meshes: a folder (one "
                                     "<id>-<class>.obj per network) or, for one network, a .obj / .ply file"),
    resolution: int | None = typer.Option(None, help="shapes: decode on this many grid points per axis"),
    originals: bool = typer.Option(True, help="load the zoo's source signals (if recorded) to show and compare"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=ALLOW_INCOMPLETE),
    device: str = typer.Option("auto"),
) -> None:
    """Decode INRs of a zoo back to signals; write a figure of reconstructions with their PSNR."""
    from weightspace.inr.render import render_zoo, select_positions, source_dataset
    from weightspace.zoo.store import Zoo, ZooError

    try:
        zoo = Zoo.open(path, allow_incomplete=allow_incomplete)
        ids = [int(i) for i in index.split(",") if i.strip()] if index else None
        pos = select_positions(zoo, indices=ids, split=split, count=count)
        data = source_dataset(zoo) if originals else None
        rec, written = render_zoo(zoo, out, pos, dataset=data, resolution=resolution, mesh=mesh,
                                  device=torch_device(device))
    except (ValueError, KeyError, FileNotFoundError, ImportError, ZooError) as e:
        _fail(str(e).strip('"'))
    for i, p, t, lb in zip(zoo.table["id"].to_numpy()[rec.positions], rec.psnr, rec.table_psnr, rec.labels):
        again = f" (decoded: {p:.2f} dB)" if data is not None else ""
        console.print(f"network {int(i)}: label {lb}, PSNR {t:.2f} dB{again}")
    console.print("wrote " + ", ".join(str(w) for w in written))


@zoo_app.command("import")
def zoo_import(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="dwsnets | nfn | hf (a `zoo export --format hf` folder "
                              "or parquet file)"),
    root: Path = typer.Argument(..., help="the dataset's folder (hf: or one .parquet file)"),
    out: Path = typer.Option(..., "--out", "-o", help="zoo directory to write"),
    splits: Path | None = typer.Option(None, help="dwsnets: the splits JSON (default: ROOT/splits.json)"),
    swap_xy: bool = typer.Option(True, help="dwsnets: adapt its (column, row) inputs to the zoo's (row, column)"),
    prefix: str = typer.Option("randinit_smaller", help="nfn: folder prefix"),
    shard_size: int = typer.Option(256),
) -> None:
    """Convert a published INR dataset (DWSNets or NFN layout) or an exported zoo (hf) into a zoo."""
    from weightspace.zoo.importers import import_dwsnets, import_nfn
    from weightspace.zoo.store import ZooError

    try:
        if fmt == "dwsnets":
            zoo = import_dwsnets(root, out, splits=splits, swap_xy=swap_xy, shard_size=shard_size, progress=True)
        elif fmt == "nfn":
            zoo = import_nfn(root, out, prefix=prefix, shard_size=shard_size, progress=True)
        elif fmt == "hf":
            from weightspace.zoo.export import import_hf

            zoo = import_hf(root, out, shard_size=shard_size)
        else:
            raise ValueError(f"unknown format {fmt!r}; expected dwsnets, nfn or hf")
    except (ValueError, FileNotFoundError, ZooError) as e:
        _fail(str(e))
    splits_count = zoo.info()["splits"]
    console.print(f"imported {len(zoo)} INRs ({zoo.spec.describe()}) into {out}: "
                  + ", ".join(f"{k} {v}" for k, v in splits_count.items()))


@zoo_app.command("export")
def zoo_export(
    path: Path = typer.Argument(..., help="zoo directory"),
    fmt: str = typer.Option(..., "--format", help="hf: a Hugging Face parquet dataset folder (data/<split>-*.parquet); "
                            "numpy: one .npz of [N, ...] arrays per tensor and column"),
    out: Path = typer.Option(..., "--out", "-o", help="hf: folder to write; numpy: .npz file to write"),
    split: str | None = typer.Option(None, help="only this split (default: all; hf writes one file per split)"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=ALLOW_INCOMPLETE),
) -> None:
    """Write a zoo's networks and table in a format other tools read (see weightspace.zoo.export)."""
    from weightspace.zoo.export import export_hf, export_numpy
    from weightspace.zoo.store import Zoo, ZooError

    try:
        if fmt not in ("hf", "numpy"):
            raise ValueError(f"unknown format {fmt!r}; expected hf or numpy")
        if fmt == "numpy" and (out.suffix != ".npz" or out.is_dir()):
            raise ValueError(f"--out: {out}: the numpy export is one .npz file")
        if fmt == "hf" and out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} is a file; the hf export is a folder")
        zoo = Zoo.open(path, allow_incomplete=allow_incomplete)
        if fmt == "hf":
            written = export_hf(zoo, out, split=split, allow_incomplete=allow_incomplete)
        else:
            written = [export_numpy(zoo, out, split=split, allow_incomplete=allow_incomplete)]
    except (ValueError, KeyError, ZooError) as e:
        _fail(str(e).strip('"'))
    console.print(f"wrote {len(zoo) if split is None else len(zoo.split(split))} networks to "
                  + ", ".join(str(w) for w in written))


@app.command("train")
def train(
    zoo_path: Path = typer.Argument(..., help="zoo directory"),
    model: str = typer.Option("dws", help="registry model or preset name (see `weightspace models`); a preset "
                              "brings the published model options, training recipe and augmentation"),
    target: str = typer.Option("label", help="table column to predict"),
    epochs: int | None = typer.Option(None, help="training epochs (default: the preset's, else 40)"),
    batch_size: int | None = typer.Option(None, help="training batch size (default: the preset's, else 32)"),
    lr: float | None = typer.Option(None, help="learning rate (default: the preset's, else 1e-3)"),
    seed: int = typer.Option(0, help="seeds the model's initialisation, the data order and the augmentation"),
    augment: str | None = typer.Option(None, help="training-batch augmentations joined by '+' (or ','): permutation, sign, scale "
                                       "(random symmetries), affine (rotate/scale/shift an image INR's domain), noise, "
                                       "dropout; '' for none (default: the preset's, else none)"),
    mixup: float | None = typer.Option(None, help="weight-space mixup of aligned pairs with Beta(a, a) weights"),
    weight_decay: float | None = typer.Option(None, help="weight decay (default: the preset's, else 1e-4)"),
    model_config: str = typer.Option("", help="model options, e.g. 'hidden_channels=32,num_layers=4' (override a preset's)"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the training steps (fuses the equivariant layers' elementwise ops; see README)"),
    max_minutes: float | None = typer.Option(None, help="stop training after this many minutes (best epoch kept)"),
    progress: bool = typer.Option(True),
    out: Path | None = typer.Option(None, "--out", "-o", help="run directory to write: best model (safetensors + "
                                    "model.json), metrics.csv, run.json, a checkpoint each epoch"),
    resume: bool = typer.Option(False, "--resume", help="continue the killed run in --out (same settings)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run in --out"),
    device: str = typer.Option("auto"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=ALLOW_INCOMPLETE),
) -> None:
    """Train an invariant model to classify the networks of a zoo; report test accuracy."""
    import sys

    from weightspace.core.transforms import parse_augmentation
    from weightspace.models.registry import parse_model_config
    from weightspace.runs import prepare_run_dir
    from weightspace.tasks.classify import classify_zoo, recipe
    from weightspace.zoo.store import Zoo, ZooError

    try:
        if out is not None:  # refuse a bad --out before opening (and verifying) the zoo
            prepare_run_dir(out, resume=resume, overwrite=overwrite, clear=False)
        elif resume or overwrite:
            raise ValueError("--resume and --overwrite need --out")
        zoo = Zoo.open(zoo_path, allow_incomplete=allow_incomplete)
        config, aug_text = recipe(model, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                  seed=seed, progress=progress, compile=compile, max_minutes=max_minutes, augment=augment,
                                  **lightning(device))
        try:
            aug = parse_augmentation(aug_text)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--augment") from e
        try:
            options = parse_model_config(model_config)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--model-config") from e
        res = classify_zoo(zoo, model, target=target, augment=aug, mixup=mixup, model_config=options, config=config,
                           out=out, resume=resume, overwrite=overwrite,
                           record={"command": ["weightspace", *sys.argv[1:]], "augment": aug_text})
    except (ValueError, KeyError, ZooError) as e:
        _fail(str(e).strip('"'))
    stopped = f", stopped by --max-minutes after {res.epochs_run} epochs" if res.epochs_run < config.epochs else ""
    console.print(
        f"{model}: test accuracy {100 * res.test_acc:.2f}% (best val {100 * res.val_acc:.2f}%), "
        f"{res.num_params:,} parameters, {res.examples_per_second:.0f} examples/s{stopped}"
    )
    if out is not None:
        console.print(f"wrote {out}: model.safetensors, model.json, metrics.csv, run.json")


@app.command("evaluate")
def evaluate(
    run_dir: Path = typer.Argument(..., help="run directory (from `weightspace train --out`)"),
    zoo_path: Path = typer.Argument(..., help="zoo directory with the run's target column"),
    split: str = typer.Option("test", help="split of the zoo to score"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=ALLOW_INCOMPLETE),
    device: str = typer.Option("auto"),
) -> None:
    """Score a trained run's model on a split of a zoo: accuracy and loss (a classifier), Kendall
    tau, R^2 and MSE (a regressor from `predict --out`)."""
    from weightspace.runs import evaluate_run
    from weightspace.zoo.store import Zoo, ZooError

    try:
        res = evaluate_run(run_dir, Zoo.open(zoo_path, allow_incomplete=allow_incomplete), split,
                           device=torch_device(device))
    except (ValueError, KeyError, ZooError) as e:
        _fail(str(e).strip('"'))
    if "r2" in res:
        scores = f"kendall_tau {res['kendall_tau']:.4f}, r2 {res['r2']:.4f}, mse {res['mse']:.4g}"
    elif "identity_mse" in res:
        scores = f"MSE {res['mse']:.5f} against the dilated images (no edit: {res['identity_mse']:.5f})"
    else:
        scores = f"accuracy {100 * res['acc']:.2f}%, loss {res['loss']:.4f}"
    console.print(f"{run_dir} on {zoo_path} ({split}, {int(res['networks'])} networks): {scores}")


@app.command("apply")
def apply(
    run_dir: Path = typer.Argument(..., help="run directory (from `weightspace train --out`)"),
    networks: Path = typer.Argument(..., help="a zoo directory, a .safetensors of stacked weights in the zoo shard "
                                    "layout (layers.<i>.weight [N, ...]), or one network's state dict (.safetensors)"),
    split: str | None = typer.Option(None, help="zoo: only this split (default: every network)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV to write (default: print the CSV); an edit run: "
                                    "the .safetensors of the edited networks"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=ALLOW_INCOMPLETE),
    device: str = typer.Option("auto"),
) -> None:
    """Apply a trained run's model to networks: id, the prediction and (classifiers) the class
    probabilities, as CSV; an edit run (`edit --out`) writes the edited networks instead."""
    from weightspace.runs import apply_edits, apply_run, load_run
    from weightspace.zoo.store import ZooError

    try:
        if load_run(run_dir)[1].task == "edit":
            if out is None or out.suffix != ".safetensors":
                raise ValueError("an edit run writes networks: give -o EDITED.safetensors")
            n = apply_edits(run_dir, networks, out, split=split, allow_incomplete=allow_incomplete,
                            device=torch_device(device))
            console.print(f"wrote {out}: {n} edited networks (layers.<i>.weight [N, ...], layers.<i>.bias)")
            return
        table = apply_run(run_dir, networks, split=split, allow_incomplete=allow_incomplete, device=torch_device(device))
    except (ValueError, KeyError, ZooError) as e:
        _fail(str(e).strip('"'))
    if out is None:
        print(table.to_csv(index=False), end="")
        return
    table.to_csv(out, index=False)
    console.print(f"wrote {out}: predictions for {len(table)} networks")


@app.command("edit")
def edit(
    zoo_path: Path = typer.Argument(..., help="image INR zoo"),
    model: str = typer.Option("dws_eq", help="equivariant registry model (see `weightspace models`)"),
    epochs: int = typer.Option(20),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    figure: Path | None = typer.Option(None, "--figure", help="write input / target / edited images here"),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=ALLOW_INCOMPLETE),
    out: Path | None = typer.Option(None, "--out", "-o", help="run directory to write: the model (for `evaluate` and "
                                    "`apply`), metrics.csv, run.json, a checkpoint each epoch"),
    resume: bool = typer.Option(False, "--resume", help="continue the killed run in --out (same settings)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run in --out"),
) -> None:
    """Train a weight-to-weight model to dilate the zoo's INRs; report test MSE."""
    import sys

    from weightspace.runs import prepare_run_dir
    from weightspace.tasks.edit import edit_zoo, plot_edits
    from weightspace.train import TrainConfig
    from weightspace.zoo.store import Zoo, ZooError

    try:
        if out is not None:  # refused before the zoo is opened
            prepare_run_dir(out, resume=resume, overwrite=overwrite, clear=False)
        elif resume or overwrite:
            raise ValueError("--resume and --overwrite need --out")
        zoo = Zoo.open(zoo_path, allow_incomplete=allow_incomplete)
        res = edit_zoo(zoo, model, config=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                                                     **lightning(device)),
                       out=out, resume=resume, overwrite=overwrite, record={"command": ["weightspace", *sys.argv[1:]]})
    except (ValueError, KeyError, ZooError) as e:
        _fail(str(e))
    console.print(f"{model}: test MSE {res.test_mse:.5f} (no edit: {res.identity_mse:.5f}), {res.num_params:,} parameters")
    if out is not None:
        console.print(f"wrote {out}: model.safetensors, model.json, metrics.csv, run.json")
    if figure:
        console.print(f"figure: {plot_edits(zoo, [res], figure)}")


@app.command("models")
def models() -> None:
    """List registered weight-space models and the published configurations (presets)."""
    from weightspace.models.registry import get_preset, list_models, list_presets, model_info

    for name in list_models():
        info = model_info(name)
        console.print(f"{name:12s} {info.output:12s} {'MLP+CNN' if info.supports_conv else 'MLP':8s} {info.summary}")
    console.print("\npresets (use as --model; the published options, training recipe and figures):")
    for name in list_presets():
        p = get_preset(name)
        figures = ", ".join(f"{k} {v}%" for k, v in p.published.items()) or "no published figure"
        console.print(f"{name:22s} {p.model:10s} {figures}")


@app.command("quickstart")
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", "-o"),
    epochs: int = typer.Option(40),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto", help="where the models train: cpu, cuda, or auto (cuda when available); "
                               "the zoo is fitted on the CPU, the fastest fitter here"),
) -> None:
    """Fit an INR zoo on embedded data, train the flat MLP and DWS models, print accuracies,
    and write a figure of originals vs reconstructions. The zoo is cached in OUT."""
    from weightspace.tasks.quickstart import QuickstartConfig, run_quickstart

    run_quickstart(out, QuickstartConfig(epochs=epochs, seed=seed, **lightning(device)), progress=progress)


# ---------------------------------------------------------------------------- nern
nern_app = typer.Typer(no_args_is_help=True, help="NeRN: store a trained CNN as a predictor of its kernels.")
app.add_typer(nern_app, name="nern")


@nern_app.command("train-reference")
def nern_train_reference(
    out: Path = typer.Option(..., "--out", "-o", help="model file to write (safetensors)"),
    arch: str = typer.Option("resnet20", help="resnet20 (any resnet{6n+2}) | smallcnn"),
    dataset: str = typer.Option("mnist-subset", help="mnist-subset | digits | an IDX folder | a CIFAR binary folder"),
    width: int = typer.Option(16, help="channels of the first stage (ResNet) / of every layer (smallcnn)"),
    epochs: int = typer.Option(15),
    lr: float = typer.Option(2e-3),
    batch_size: int = typer.Option(64),
    seed: int = typer.Option(0, help="seeds the split, the initialisation and the data order"),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto"),
) -> None:
    """Train a reference CNN and write it with its architecture as safetensors metadata."""
    from weightspace.train import TrainConfig
    from weightspace.zoo.reference_cnns import CNNConfig, save_cnn
    from weightspace.zoo.train_cnn import load_classification_data, train_cnn

    try:
        data = load_classification_data(dataset, seed=seed)
        config = CNNConfig(arch, data.shape[2], len(data.classes), width)
        res = train_cnn(config, data, TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                                  progress=progress, **lightning(device)), seed=seed)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    save_cnn(out, res.model, config, {"dataset": dataset, "data_seed": seed, "test_accuracy": res.test_acc,
                                      "val_accuracy": res.val_acc})
    console.print(f"wrote {out}: {arch} on {dataset}, test accuracy {100 * res.test_acc:.2f}% "
                  f"({res.seconds:.0f} s)")


def _nern_data(dataset: str | None, meta: dict, seed: int | None):
    from weightspace.zoo.train_cnn import load_classification_data

    name = dataset or meta.get("dataset")
    if not name:
        _fail("the model file names no dataset; pass --dataset")
    return load_classification_data(name, seed=int(meta.get("data_seed", 0) if seed is None else seed))


@nern_app.command("fit")
def nern_fit(
    model: Path = typer.Argument(..., help="reference CNN file (from `nern train-reference`)"),
    out: Path = typer.Option(..., "--out", "-o", help="predictor file to write (safetensors)"),
    dataset: str | None = typer.Option(None, help="images for distillation and evaluation (default: the model's)"),
    data_seed: int | None = typer.Option(None, help="split seed (default: the model's)"),
    hidden: int = typer.Option(128, help="predictor width"),
    depth: int = typer.Option(4, help="predictor hidden layers"),
    frequencies: int = typer.Option(8, help="positional-encoding frequencies per coordinate"),
    reorder: bool = typer.Option(True, help="function-preserving kernel reordering for smoothness"),
    kd_weight: float = typer.Option(1.0, help="logit distillation weight (0 = off)"),
    feature_weight: float = typer.Option(1.0, help="feature-map distillation weight (0 = off)"),
    kernels_per_step: int = typer.Option(8192, help="kernels sampled (by magnitude) per step"),
    warmup_epochs: int = typer.Option(20, help="reconstruction-only epochs first (cheap steps)"),
    epochs: int = typer.Option(10, help="then epochs with all losses (one step per batch of training images)"),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-2),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto"),
) -> None:
    """Fit a NeRN predictor to a trained CNN; report original vs reconstructed accuracy."""
    from weightspace.tasks.nern import NeRNConfig, fit_nern, reconstruct, save_nern
    from weightspace.tasks.nern_predictor import PredictorConfig
    from weightspace.zoo.reference_cnns import load_cnn
    from weightspace.zoo.train_cnn import accuracy

    try:
        net, cnn, meta = load_cnn(model)
        data = _nern_data(dataset, meta, data_seed)
        config = NeRNConfig(PredictorConfig(hidden, depth, frequencies), reorder=reorder, kd_weight=kd_weight,
                            feature_weight=feature_weight, kernels_per_step=kernels_per_step, epochs=epochs,
                            warmup_epochs=warmup_epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                            accelerator=lightning(device)["accelerator"])
        nern = fit_nern(net, cnn, data, config)
        test = data.select_split("test")
        original, rebuilt = accuracy(net, test), accuracy(reconstruct(nern), test)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    nern.info["reference"] = meta | {"file": model.name}
    nern.info["test_accuracy"] = {"original": original, "reconstructed": rebuilt}
    save_nern(out, nern)
    sizes = nern.sizes()
    smooth = nern.info["reorder"]
    console.print(f"kernel smoothness (mean distance of neighbours, cross-filter / in-filter): "
                  f"{smooth['before']['cross_filter']:.3f} / {smooth['before']['in_filter']:.3f} -> "
                  f"{smooth['after']['cross_filter']:.3f} / {smooth['after']['in_filter']:.3f}")
    console.print(f"wrote {out}: predictor {sizes['predictor']:,} parameters for {sizes['kernels']:,} kernel "
                  f"weights ({sizes['predictor'] / sizes['kernels']:.2f}x; network {sizes['network']:,})")
    console.print(f"test accuracy: original {100 * original:.2f}%, reconstructed {100 * rebuilt:.2f}%")


@nern_app.command("reconstruct")
def nern_reconstruct(
    predictor: Path = typer.Argument(..., help="predictor file (from `nern fit`)"),
    out: Path = typer.Option(..., "--out", "-o", help="model file to write (safetensors)"),
    dataset: str | None = typer.Option(None, help="evaluate on this dataset's test split (default: the model's)"),
    original_order: bool = typer.Option(True, help="undo the reordering (same function either way)"),
    device: str = typer.Option("auto"),
) -> None:
    """Rebuild the CNN from a predictor, write it as safetensors and report its accuracy."""
    from weightspace.tasks.nern import load_nern, reconstruct
    from weightspace.zoo.reference_cnns import save_cnn
    from weightspace.zoo.train_cnn import accuracy

    try:
        nern = load_nern(predictor)
        nern.predictor.to(torch_device(device))
        model = reconstruct(nern, original_order=original_order, device=torch_device(device))
        ref = nern.info.get("reference", {})
        data = _nern_data(dataset, ref, None)
        acc = accuracy(model, data.select_split("test"))
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    save_cnn(out, model, nern.cnn, {"dataset": dataset or ref.get("dataset"), "data_seed": ref.get("data_seed", 0),
                                    "test_accuracy": acc, "reconstructed_from": predictor.name})
    original = ref.get("test_accuracy")
    console.print(f"wrote {out}: {nern.cnn.architecture}, test accuracy {100 * acc:.2f}%"
                  + (f" (original {100 * original:.2f}%)" if isinstance(original, float) else ""))


__import__("weightspace.cli_classifiers").cli_classifiers.register(app, zoo_app)  # zoo train-classifiers, predict

app.add_typer(__import__("weightspace.cli_functa").cli_functa.functa_app, name="functa")
app.add_typer(__import__("weightspace.cli_functa").cli_functa.hyperinr_app, name="hyperinr")
app.add_typer(__import__("weightspace.cli_gasp").cli_gasp.app, name="gasp")
app.add_typer(__import__("weightspace.cli_nerf").cli_nerf.app, name="nerf")

app.add_typer(__import__("weightspace.cli_compress").cli_compress.app)  # compress, decompress, compress-base


guard(app)  # every command's arguments checked before it runs (weightspace.cli_checks)


def main() -> None:
    """Console entry point: `app` with mid-run OS errors (a full disk) as one line."""
    run_app(app)


if __name__ == "__main__":
    main()
