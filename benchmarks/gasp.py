"""GASP (`inr/gasp.py`, `tasks/gasp.py`) beside the functa DDPM on the same signals.

For MNIST (the 5,000 bundled images: 3,500 train / 500 val / 1,000 test) and/or the
procedural 3D shapes as 12^3 grids (occupancy by default, or a truncated SDF), this trains the CPU-sized
GASP preset and the functa latent DDPM on the training split, draws 256 samples from each,
and judges them with one classifier of the real signals (logistic regression on the values,
fitted on the training split): its confidence on the samples, how evenly they spread over
the classes, and each sample's RMS distance to its nearest training signal — beside the
same numbers for real test signals. Figures: GASP samples at 1x, 2x and 4x the training
resolution, functa DDPM samples at the same scales (both are functions).

    python benchmarks/gasp.py [--steps 2000] [--shape-steps 1500] [--threads 1] [--quick]
    python benchmarks/gasp.py --domains shapes --name gasp_shapes      # one domain, its own section
    python benchmarks/gasp.py --rerender [--name gasp]                 # a section again from its JSON
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import numpy as np
import torch
from _common import ROOT, environment, write_result

from weightspace.inr.gasp import save_generator
from weightspace.inr.meta import MetaConfig, reconstruct
from weightspace.plots import plot_image_rows
from weightspace.signals.base import grid_coordinates
from weightspace.signals.images import load_mnist_subset
from weightspace.signals.shapes import load_shapes
from weightspace.tasks.functa import fit_functa, functaset_latents, sample_signals as functa_samples
from weightspace.tasks.gasp import Judge, sample_signals, train_preset
from weightspace.tasks.generate import as_images
from weightspace.train import TrainConfig

RUNS = ROOT / "runs" / "gasp_bench"
RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = 256
SCALES = (1, 2, 4)


def run_domain(name: str, data, preset: str, steps: int, meta_steps: int, diffusion_epochs: int, q: bool,
               max_points: int | None = None) -> dict:
    split = np.asarray(data.split)
    coords, values, labels = data.coordinates(), data.targets(), data.labels
    train, test = split == "train", split == "test"
    grid = tuple(data.signal_shape[:-1])
    seconds = {}
    counts = {str(k): int(v) for k, v in zip(*np.unique(split, return_counts=True))}
    print(f"{name}: {counts}", flush=True)
    shutil.rmtree(RUNS / name, ignore_errors=True)  # a run's own outputs: an earlier (e.g. --quick) run's go
    start = time.perf_counter()  # functa first: the short stage fails early, not after the long one
    meta = MetaConfig(steps=meta_steps, batch_size=32, inner_steps=3, lr=1e-3, seed=0, progress=True)
    fitted = fit_functa(data, RUNS / name / "functa", hidden=(64, 64, 64), latent_dim=64, meta=meta, seed=0)
    latents = functaset_latents(fitted.functaset, "train")
    cfg = TrainConfig(epochs=diffusion_epochs, batch_size=128, lr=1e-3, weight_decay=0.0, progress=False, seed=0)
    ddpm = functa_samples(fitted.model, latents, coords, SAMPLES, seed=0, config=cfg)
    seconds["functa_meta_learn_encode_ddpm"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    gasp, model, config = train_preset(preset, data, steps=steps, batch_size=32, max_points=max_points, seed=0,
                                       progress=True)
    seconds["gasp_train"] = round(time.perf_counter() - start, 1)
    save_generator(gasp.generator, RUNS / name / "gasp.safetensors", {"preset": preset, "steps": steps})
    judge = Judge.fit(values[train], labels[train], values[test], labels[test])
    rows = {f"real test signals (all {int(test.sum())})": judge.judge(values[test]),  # the split is class-sorted
            f"GASP ({preset}, {steps} steps)": judge.judge(sample_signals(gasp.generator, SAMPLES, coords, seed=0)),
            f"functa DDPM ({meta_steps} meta steps, {diffusion_epochs} epochs)": judge.judge(ddpm.signals)}
    figures = {}
    if not q:
        c = values.shape[2]
        picture_rows = []
        for s in SCALES:
            fine = grid_coordinates(tuple(s * g for g in grid))
            shape = (*(s * g for g in grid), c)
            picture_rows.append((f"GASP {s}x", as_images(sample_signals(gasp.generator, 8, fine, seed=1), shape)))
        for s in SCALES:
            fine = grid_coordinates(tuple(s * g for g in grid))
            shape = (*(s * g for g in grid), c)
            picture_rows.append((f"functa {s}x", as_images(reconstruct(fitted.model, ddpm.latents[:8], fine), shape)))
        path = RESULTS / f"gasp_samples_{name}.png"
        plot_image_rows(picture_rows, path)
        figures["samples"] = str(path.relative_to(ROOT))
    n_params = sum(p.numel() for p in gasp.generator.parameters())
    return {"counts": counts, "grid": list(grid), "max_points": max_points,
            "preset": preset, "steps": steps, "generator_parameters": n_params,
            "discriminator_parameters": sum(p.numel() for p in gasp.discriminator.parameters()),
            "classifier_test_accuracy": judge.test_accuracy, "rows": rows, "seconds": seconds,
            "gasp_seconds_per_step": gasp.seconds / max(steps, 1),
            "final_losses": {k: float(np.mean(v[-50:])) for k, v in gasp.history.items()}, "figures": figures}


def markdown(f: dict) -> str:
    out = ["GASP (hypernetwork -> Fourier-feature MLP weights, PointConv discriminator, BCE + R1; `inr/gasp.py`) "
           "and the functa latent DDPM (`tasks/functa.py`), trained on the same training split; 256 samples of "
           "each judged by one logistic-regression classifier of the real signals (fitted on the training split): "
           "its mean confidence on the samples, the class spread (entropy of the predicted-class histogram over "
           "log K: 1 uniform, 0 one class), classes present, and the RMS distance of each sample to its nearest "
           "training signal (median; a copy would be 0), beside real test signals. CPU-sized GASP presets (not "
           "the paper's sizes; `tasks/gasp.py` PRESETS) and short schedules: these are not the paper's samples.", ""]
    for name, d in f["domains"].items():
        out += [f"**{name}** ({'x'.join(map(str, d['grid']))} grid; splits {d['counts']}; classifier "
                f"{100 * d['classifier_test_accuracy']:.1f}% on real test signals; GASP generator "
                f"{d['generator_parameters']:,} parameters, discriminator {d['discriminator_parameters']:,}, "
                f"{d['gasp_seconds_per_step']:.2f} s per step"
                + (f", shapes given as {'a truncated SDF' if d['field'] == 'sdf' else 'occupancy'}"
                   if d.get("field") else "")
                + (f", {d['max_points']} random points of each signal per step" if d.get("max_points") else "")
                + "):", "",
                "| signals | confidence | class spread | classes present | nearest-train RMS (median) | (min) |",
                "|---|---:|---:|---:|---:|---:|"]
        for row, v in d["rows"].items():
            out.append(f"| {row} | {v['confidence']:.3f} | {v['class_spread']:.3f} | {v['classes_present']} | "
                       f"{v['nn_rms_median']:.3f} | {v['nn_rms_min']:.3f} |")
        loss = d["final_losses"]
        out += ["", f"GASP losses over the last 50 steps: generator {loss['generator']:.3f}, discriminator "
                f"{loss['discriminator']:.3f}, D(real) {loss['d_real']:.3f}, D(fake) {loss['d_fake']:.3f}. "
                f"Wall times (s): " + ", ".join(f"{k} {v}" for k, v in d["seconds"].items()) + "."
                + (f" Figure: `{d['figures']['samples']}` (rows: GASP and functa samples at 1x, 2x, 4x the training "
                   "resolution)." if d["figures"] else ""), ""]
    out.append("The same from the CLI: `weightspace gasp fit --dataset mnist-subset --steps 2000 -o runs/gasp`, then "
               "`weightspace gasp sample runs/gasp -n 8 --scale 4 -o gasp-samples.png`; for the shapes `weightspace gasp "
               "fit --dataset shapes --per-class 20 --resolution 12 --field occupancy --preset gasp-shapes-cpu --steps "
               "1500 --max-points 512 -o runs/gasp-shapes`.")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", default="mnist,shapes", help="comma-separated: mnist, shapes")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--shape-steps", type=int, default=1500)
    ap.add_argument("--shape-points", type=int, default=512, help="random points of each shape per GASP step")
    ap.add_argument("--shape-field", default="occupancy", choices=("occupancy", "sdf"),
                    help="how the 3D shapes are given (occupancy: the paper's voxels)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="gasp", help="section / results name (another for a partial run)")
    ap.add_argument("--rerender", action="store_true", help="rewrite the section from its results JSON (no training)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run; results not written)")
    args = ap.parse_args()
    domains_wanted = [d.strip() for d in args.domains.split(",") if d.strip()]
    unknown = set(domains_wanted) - {"mnist", "shapes"}
    if unknown or not domains_wanted:
        ap.error(f"--domains: expected mnist and/or shapes, got {args.domains!r}")
    name = args.name
    if args.rerender:
        stored = json.loads((RESULTS / f"{name}.json").read_text())
        write_result(name, stored["environment"], stored["figures"], markdown(stored["figures"]))
        return
    torch.set_num_threads(args.threads)
    env = environment()
    q = args.quick
    domains = {}
    if "mnist" in domains_wanted:
        domains["mnist"] = run_domain("mnist", load_mnist_subset(seed=0, limit=40 if q else None), "gasp-mnist-cpu",
                                      3 if q else args.steps, 3 if q else 400, 2 if q else 300, q)
    if "shapes" in domains_wanted:
        shapes = load_shapes(3 if q else 20, resolution=12, field=args.shape_field, seed=0)
        domains["shapes"] = run_domain("shapes", shapes, "gasp-shapes-cpu", 2 if q else args.shape_steps,
                                       3 if q else 300, 2 if q else 300, q, max_points=args.shape_points)
        domains["shapes"]["field"] = args.shape_field
    figures = {"domains": domains, "threads": args.threads}
    if q:
        print(markdown(figures))
        return
    write_result(name, env, figures, markdown(figures))


if __name__ == "__main__":
    main()
