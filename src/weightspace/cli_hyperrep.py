"""`weightspace hyperrep ...`: train a hyper-representation autoencoder on a zoo, probe its
embeddings for model properties, and sample new networks from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from weightspace.cli_checks import ALLOW_INCOMPLETE, COMMON_HELP, lightning
from weightspace.cli_checks import fail as _fail

# the model inside a `hyperrep fit --out` run directory: runs.HYPERREP_MODEL, spelt out so that
# --help need not import torch (tests/test_cli_hyperrep.py checks they agree)
MODEL_FILE = "hyperrep.safetensors"
app = typer.Typer(no_args_is_help=True, help="Hyper-representations: self-supervised embeddings of model zoos.")
console = Console()


def _open(zoo_path: Path, allow_incomplete: bool):
    from weightspace.zoo.store import Zoo, ZooError

    try:
        return Zoo.open(zoo_path, allow_incomplete=allow_incomplete)
    except ZooError as e:
        _fail(str(e))


def _load(model_path: Path):
    from weightspace.tasks.hyperrep import load_hyperrep

    try:  # a run directory (`hyperrep fit --out`) or the model file in it
        return load_hyperrep(model_path / MODEL_FILE if model_path.is_dir() else model_path)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))


# options shared by the training commands
Seed = Annotated[int, typer.Option(help=COMMON_HELP["seed"])]
Progress = Annotated[bool, typer.Option(help=COMMON_HELP["progress"])]
AllowIncomplete = Annotated[bool, typer.Option("--allow-incomplete", help=ALLOW_INCOMPLETE)]
Resume = Annotated[bool, typer.Option("--resume", help="continue the killed run in --out (same settings)")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="replace the run in --out")]
Device = Annotated[str, typer.Option(help=COMMON_HELP["device"])]


@app.command("fit")
def fit(
    zoo_path: Annotated[Path, typer.Argument(help="zoo directory (train / val / test splits)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="run directory to write: hyperrep.safetensors (the model), "
                                      "metrics.csv per epoch, run.json (command, seed, configuration, versions, "
                                      "results), checkpoints")],
    epochs: Annotated[int, typer.Option(help=COMMON_HELP["epochs"])] = 30,
    batch_size: Annotated[int, typer.Option(help=COMMON_HELP["batch_size"])] = 64,
    lr: Annotated[float, typer.Option(help=COMMON_HELP["lr"])] = 1e-3,
    d_model: Annotated[int, typer.Option(help="transformer width")] = 64,
    layers: Annotated[int, typer.Option(help="encoder layers (and as many decoder layers)")] = 2,
    latent_tokens: Annotated[int, typer.Option(help="K latent vectors; the embedding has K * latent-dim values. "
                                                     "0: one latent per neuron token (as in the benchmarks; `hyperrep "
                                                     "probe` then also probes its layer-pooled readout)")] = 4,
    latent_dim: Annotated[int, typer.Option(help=COMMON_HELP["latent_dim"])] = 16,
    contrastive_weight: Annotated[float, typer.Option(help="weight of the contrastive loss beside reconstruction")] = 0.1,
    noise: Annotated[float, typer.Option(help="relative std of the Gaussian noise of each view")] = 0.05,
    erase: Annotated[float, typer.Option(help="probability of erasing each weight in each view")] = 0.05,
    canonical: Annotated[bool, typer.Option(help="canonical neuron order: an exactly permutation-invariant encoder")] = True,
    seed: Seed = 0,
    progress: Progress = True,
    allow_incomplete: AllowIncomplete = False,
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
) -> None:
    """Train the autoencoder on the zoo's train split (no labels), keep the best val epoch."""
    import sys
    from dataclasses import asdict

    from weightspace import runs
    from weightspace.models.hyperrep import HyperRepConfig
    from weightspace.tasks.hyperrep import (
        HyperRepTask,
        fit_hyperrep,
        invariance_gap,
        reconstruction_error,
        save_hyperrep,
    )
    from weightspace.train import TrainConfig

    try:
        if out.suffix == ".safetensors":
            raise ValueError(f"--out {out}: --out takes a run directory; the model is written to "
                             f"{out.with_suffix('') / MODEL_FILE}")
        # refused before the zoo is opened; an --overwrite clears it only after
        runs.prepare_run_dir(out, resume=resume, overwrite=overwrite, clear=False)
    except ValueError as e:
        _fail(str(e))
    zoo = _open(zoo_path, allow_incomplete)
    try:
        train, val, test = (zoo.load(s)[0] for s in ("train", "val", "test"))
    except KeyError as e:
        _fail(str(e))
    mc = HyperRepConfig(d_model=d_model, num_heads=4, encoder_layers=layers, decoder_layers=layers,
                        latent_tokens=latent_tokens or None, latent_dim=latent_dim, canonical=canonical)
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress, **lightning(device))
    task = HyperRepTask(contrastive_weight=contrastive_weight, noise=noise, erase=erase, seed=seed)
    runs.prepare_run_dir(out, resume=resume, overwrite=overwrite)  # the zoo opened: now clear an --overwrite
    model_file = out / MODEL_FILE
    record = {"zoo": str(zoo_path), "model": "hyperrep", "model_options": asdict(mc), "target": None, "seed": seed,
                  "train_config": asdict(tc), "task": asdict(task), "augment": "permutation", "mixup": None,
                  "command": ["weightspace", *sys.argv[1:]], "model_file": str(model_file), "versions": runs.versions()}
    try:
        record = runs.start_run(out, record, resume=resume)
    except ValueError as e:
        _fail(str(e))
    result = fit_hyperrep(train, val, model_config=mc, config=tc, task=task, run_dir=out, resume=resume)
    recon = reconstruction_error(result.model, test)
    gap = invariance_gap(result.model, test)
    save_hyperrep(model_file, result.model, {"zoo": str(zoo_path), "epochs": epochs, "seed": seed,
                                             "test_reconstruction": recon})
    runs.finish_record(out, record, {"test": {"reconstruction": recon, "invariance_gap": gap["relative"]},
                                     "best_val": result.best_val_loss, "epochs_run": result.epochs_run,
                                     "train_seconds": result.seconds}, complete=result.epochs_run >= epochs)
    console.print(f"wrote {model_file}: embedding of {result.model.embedding_dim} values, best val loss {result.best_val_loss:.4f}, "
                  f"test reconstruction error {recon:.4f} (per-layer normalised MSE), "
                  f"invariance gap {gap['relative']:.2g}, {result.seconds:.0f} s")


# options shared by the probe commands
Targets = Annotated[str | None, typer.Option(help="comma-separated table columns (default: every known property)")]
Probes = Annotated[str, typer.Option(help="linear and / or mlp")]
AsJson = Annotated[Path | None, typer.Option("--json", help="write the results as JSON")]
EmbedDevice = Annotated[str, typer.Option(help="where to embed the networks: cpu, cuda, or auto (cuda when "
                                          "available); the probes run on the CPU (scikit-learn)")]


@app.command("probe")
def probe(
    zoo_path: Annotated[Path, typer.Argument(help="zoo directory")],
    model_path: Annotated[Path, typer.Argument(help="run directory of `hyperrep fit --out` (or the "
                                                    "hyperrep.safetensors in it)")],
    targets: Targets = None,
    probes: Probes = "linear,mlp",
    figure: Annotated[Path | None, typer.Option(help="write a 2D map of the test embeddings (PNG)")] = None,
    method: Annotated[str, typer.Option(help="pca | tsne (for --figure)")] = "pca",
    as_json: AsJson = None,
    seed: Annotated[int, typer.Option(help=COMMON_HELP["seed"])] = 0,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help=ALLOW_INCOMPLETE)] = False,
    device: EmbedDevice = "auto",
) -> None:
    """Probe the embeddings (train split -> test split) for test accuracy, epoch, gap and
    hyperparameters, beside StatNN's weight statistics: the flat embedding and, for models with
    one latent per neuron token, its layer-pooled readout (mean and std per layer)."""
    from weightspace.cli_checks import torch_device
    from weightspace.tasks.hyperrep_probe import PROBE_MAX_DIM, probe_table, probe_targets, run_probes, split_features

    zoo = _open(zoo_path, allow_incomplete)
    model, _ = _load(model_path)
    try:
        loaded = {s: zoo.load(s) for s in ("train", "test")}
        names = probe_targets(zoo.table, tuple(targets.split(",")) if targets else None)
    except KeyError as e:
        _fail(str(e).strip('"'))
    feats = split_features(model, {s: w for s, (w, _) in loaded.items()}, device=torch_device(device))
    tables = {s: t for s, (_, t) in loaded.items()}
    results = run_probes(feats, tables, names, probes=tuple(probes.split(",")), max_dim=PROBE_MAX_DIM, seed=seed)
    console.print(probe_table(results))
    if figure is not None:
        from weightspace.tasks.hyperrep_plots import embedding_map, plot_embedding_map

        colours = {c: tables["test"][c].to_numpy() for c in ("test_accuracy", "epoch") if c in tables["test"].columns}
        plot_embedding_map(embedding_map(feats["hyperrep"]["test"], method, seed=seed), colours, figure, title=method.upper())
        console.print(f"wrote {figure}")
    if as_json is not None:
        as_json.write_text(json.dumps([r.row() for r in results], indent=2))


@app.command("sample")
def sample(
    zoo_path: Annotated[Path, typer.Argument(help="zoo directory")],
    model_path: Annotated[Path, typer.Argument(help="run directory of `hyperrep fit --out` (or the "
                                                    "hyperrep.safetensors in it)")],
    n: Annotated[int, typer.Option("--num", "-n", "--count", help="networks to sample")] = 64,
    top: Annotated[float, typer.Option(help="fit the density to this top fraction of the train split by accuracy")] = 0.3,
    where: Annotated[str | None, typer.Option(help="a requested property instead of --top: fit the density to the "
                                                    "train-split models meeting it, e.g. 'test_accuracy>=0.9' or "
                                                    "'epoch==2' (comma: and)")] = None,
    dataset: Annotated[str | None, typer.Option(help="images to evaluate on (default: those the zoo records)")] = None,
    test_images: Annotated[int, typer.Option(help="test images (a seeded subset) when not a classifier zoo")] = 1000,
    finetune_steps: Annotated[int, typer.Option(help="also fine-tune samples and random inits for this many steps")] = 0,
    bandwidth: Annotated[str, typer.Option(help="KDE bandwidth in std units, 'select' (the widest whose samples match "
                                                "the zoo's models on its training images, never the test images) or "
                                                "'cv' (best held-out likelihood of the embeddings)")] = "select",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the sampled networks as a zoo here")] = None,
    figure: Annotated[Path | None, typer.Option(help="accuracy histogram of sampled vs zoo models (PNG)")] = None,
    seed: Annotated[int, typer.Option(help=COMMON_HELP["seed"])] = 0,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help=ALLOW_INCOMPLETE)] = False,
    device: Annotated[str, typer.Option(help=COMMON_HELP["device"])] = "auto",
) -> None:
    """Sample networks from a KDE over the embeddings of good models; report their accuracy."""
    from weightspace.cli_checks import torch_device
    from weightspace.tasks.hyperrep_sample import sample_from_zoo, zoo_images

    if bandwidth not in ("select", "cv"):
        try:
            bw: float | str = float(bandwidth)
        except ValueError:
            _fail(f"--bandwidth must be a number, 'select' or 'cv', got {bandwidth!r}")
        if not bw > 0:
            _fail(f"--bandwidth must be positive, got {bandwidth}")
    else:
        bw = bandwidth
    zoo = _open(zoo_path, allow_incomplete)
    model, _ = _load(model_path)
    try:
        train, test = zoo_images(zoo, dataset, test_limit=test_images, seed=seed)
        weights, table = zoo.load("train")
        # a malformed --where, or one no model meets, is refused (ValueError) before any sampling
        report = sample_from_zoo(model, weights, table, test, n=n, top_fraction=top, where=where, bandwidth=bw,
                                 select=train, finetune_steps=finetune_steps, train=train, seed=seed,
                                 device=torch_device(device))
    except (KeyError, ValueError, FileNotFoundError) as e:
        _fail(str(e).strip('"'))
    s = report.summary()
    console.print(f"{n} sampled networks ({s['activation'] or 'zoo spec'} activation, density over {s['num_good']} good models): "
                  f"mean test accuracy {s['sampled_mean']:.4f} without training; zoo (train split) {s['zoo_mean']:.4f} "
                  f"({100 * s['sampled_over_zoo_mean']:.0f}% of it), good models {s['good_mean']:.4f}, "
                  f"good models encoded+decoded {s['reconstructed_mean']:.4f}; bandwidth {s['bandwidth']:.3g} "
                  f"({s['bandwidth_rule']}), novelty median {s['novelty_median']:.2f}")
    if where is not None:
        q = lambda v: " / ".join(f"{x:.3f}" for x in v)  # noqa: E731
        hit = "; ".join(f"{k}: {100 * v:.0f}% of the samples" for k, v in s["achieved"].items())
        console.print(f"requested {where}: zoo models meeting it {q(s['good_quantiles'])}, samples "
                      f"{q(s['sampled_quantiles'])} (test accuracy, 10th / 50th / 90th percentile)"
                      + (f"; met by the samples: {hit}" if hit else ""))
    for group in ("sampled", "random_init"):
        if f"finetune_{group}" in s:
            curve = ", ".join(f"step {k}: {v:.4f}" for k, v in s[f"finetune_{group}"].items())
            console.print(f"fine-tuned {group}: {curve}")
    if figure is not None:
        from weightspace.tasks.hyperrep_plots import plot_accuracy_histograms

        plot_accuracy_histograms({"zoo": report.zoo.numpy(), "sampled": report.sampled.numpy()}, figure)
        console.print(f"wrote {figure}")
    if out is not None:
        from weightspace.zoo.store import ZooWriter

        writer = ZooWriter(out, report.samples.spec, shard_size=len(report.samples),
                           provenance={"kind": "hyperrep-samples", "source_zoo": str(zoo_path), "model": str(model_path),
                                       "seed": seed, "top_fraction": top})
        writer.write_shard(0, report.samples, {"test_accuracy": report.sampled.tolist(), "split": ["test"] * n,
                                               "activation": [s["activation"]] * n})
        writer.finalize()
        console.print(f"wrote {n} networks to {out}")


SANE_FILE = "sane.safetensors"


@app.command("sane-fit")
def sane_fit(
    zoo_paths: Annotated[list[Path], typer.Argument(help="one or more zoo directories, of any architectures (MLPs, "
                                                         "CNNs): one model learns them all")],
    out: Annotated[Path, typer.Option("--out", "-o", help="run directory to write: sane.safetensors (the model and "
                                      "each zoo's layer statistics), metrics.csv per epoch, run.json, checkpoints")],
    epochs: Annotated[int, typer.Option(help=COMMON_HELP["epochs"])] = 8,
    batch_size: Annotated[int, typer.Option(help="windows per batch")] = 64,
    lr: Annotated[float, typer.Option(help=COMMON_HELP["lr"])] = 3e-4,
    tokensize: Annotated[int, typer.Option(help="values per token (longer neuron rows are cut into several)")] = 64,
    window: Annotated[int, typer.Option(help="tokens per window")] = 32,
    d_model: Annotated[int, typer.Option(help="transformer width")] = 128,
    layers: Annotated[int, typer.Option(help="encoder layers (and as many decoder layers)")] = 2,
    latent_dim: Annotated[int, typer.Option(help="latent values per token, and of the embedding")] = 32,
    supersample: Annotated[int, typer.Option(help="random windows per network and epoch")] = 4,
    seed: Seed = 0,
    progress: Progress = True,
    allow_incomplete: AllowIncomplete = False,
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
) -> None:
    """Train SANE (windows of neuron tokens, Schürholt et al. 2024) on the train splits of all zoos."""
    import sys
    from dataclasses import asdict

    from weightspace import runs
    from weightspace.models.sane import SaneConfig
    from weightspace.tasks.sane import SaneTask, fit_sane, save_sane
    from weightspace.train import TrainConfig

    try:
        if out.suffix == ".safetensors":
            raise ValueError(f"--out {out}: --out takes a run directory; the model is written to "
                             f"{out.with_suffix('') / SANE_FILE}")
        mc = SaneConfig(tokensize=tokensize, d_model=d_model, heads=4, layers=layers, latent_dim=latent_dim,
                        window=window)
        runs.prepare_run_dir(out, resume=resume, overwrite=overwrite, clear=False)
    except ValueError as e:
        _fail(str(e))
    names = [str(p) for p in zoo_paths]
    if len(set(names)) != len(names):
        _fail("a zoo is named twice")
    zoos = {name: _open(p, allow_incomplete) for name, p in zip(names, zoo_paths)}
    try:
        train = {n: z.load("train")[0] for n, z in zoos.items()}
        val = {n: z.load("val")[0] for n, z in zoos.items()}
    except KeyError as e:
        _fail(str(e).strip('"'))
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=1e-6, warmup_steps=100, seed=seed,
                     progress=progress, **lightning(device))
    task = SaneTask(seed=seed)
    runs.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    model_file = out / SANE_FILE
    record = {"zoo": names, "model": "sane", "model_options": mc.to_dict(), "target": None, "seed": seed,
              "train_config": asdict(tc), "task": {"gamma": task.gamma, "temperature": task.temperature,
                                                   "noise": task.noise}, "augment": "permutation", "mixup": None,
              "supersample": supersample, "command": ["weightspace", *sys.argv[1:]], "model_file": str(model_file),
              "versions": runs.versions()}
    try:
        record = runs.start_run(out, record, resume=resume)
        result = fit_sane(train, val, config=mc, train_config=tc, task=task, supersample=supersample, run_dir=out,
                          resume=resume)
    except ValueError as e:
        _fail(str(e))
    save_sane(model_file, result, {"zoos": names, "epochs": epochs, "seed": seed})
    runs.finish_record(out, record, {"best_val": result.best_val_loss, "train_seconds": result.seconds},
                       complete=len(result.history) >= epochs)
    console.print(f"wrote {model_file}: embeddings of {mc.latent_dim} values for any of {len(names)} zoo(s)' "
                  f"architectures, best val loss {result.best_val_loss:.4f}, {result.seconds:.0f} s")


@app.command("sane-probe")
def sane_probe(
    zoo_path: Annotated[Path, typer.Argument(help="zoo directory (any architecture the model's position tables "
                                                  "cover; it need not be one SANE was trained on)")],
    model_path: Annotated[Path, typer.Argument(help="run directory of `hyperrep sane-fit --out` (or its "
                                                    "sane.safetensors)")],
    targets: Targets = None,
    probes: Probes = "linear,mlp",
    as_json: AsJson = None,
    seed: Annotated[int, typer.Option(help=COMMON_HELP["seed"])] = 0,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help=ALLOW_INCOMPLETE)] = False,
    device: EmbedDevice = "auto",
) -> None:
    """Probe SANE embeddings of a zoo (train split -> test split) beside StatNN's statistics. A
    zoo SANE was not trained on is standardised with its own train split's layer statistics."""
    from weightspace.cli_checks import torch_device
    from weightspace.tasks.hyperrep_probe import probe_table, probe_targets, run_probes, statnn_features
    from weightspace.tasks.sane import LayerStats, embed, load_sane

    if not set(probes.split(",")) <= {"linear", "mlp"}:
        _fail(f"--probes must be linear and / or mlp, got {probes!r}")
    zoo = _open(zoo_path, allow_incomplete)
    try:
        model, stats, _ = load_sane(model_path / SANE_FILE if model_path.is_dir() else model_path)
        model.to(torch_device(device))
        loaded = {s: zoo.load(s) for s in ("train", "test")}
        names = probe_targets(zoo.table, tuple(targets.split(",")) if targets else None)
        zoo_stats = stats.get(str(zoo_path)) or LayerStats.fit(loaded["train"][0], model.config.tokensize)
        feats = {"sane": {s: embed(model, w, zoo_stats).double().numpy() for s, (w, _) in loaded.items()},
                 "statnn": {s: statnn_features(w) for s, (w, _) in loaded.items()}}
    except (KeyError, ValueError, FileNotFoundError) as e:
        _fail(str(e).strip('"'))
    results = run_probes(feats, {s: t for s, (_, t) in loaded.items()}, names, probes=tuple(probes.split(",")),
                         max_dim=None, seed=seed)
    console.print(probe_table(results))
    if as_json is not None:
        as_json.write_text(json.dumps([r.row() for r in results], indent=2))
