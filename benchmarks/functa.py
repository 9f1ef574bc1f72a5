"""Functa and hypernetwork INRs on the same signals, 2D (MNIST) and 3D (procedural shapes):

- functa: reconstruction PSNR of held-out signals vs inner steps (and of the network before
  meta-learning, for reference);
- one classification table: functa latents (MLP), HyperINR codes (MLP), HyperINR generated
  weights and independently fitted INR weights (registry model ``probe``, the best model of
  `classify_inrs` on CPU), on the same images / shapes and the same seeded splits;
- generation: a DDPM over the functa training latents, samples decoded beside their nearest
  training signal (figures in benchmarks/results/).

Sized for a shared 2-core CPU (whole run ~15 min at one thread); sizes are in the output.

    python benchmarks/functa.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass

import numpy as np
import torch
from _common import ROOT, environment, write_result

from weightspace.inr.hyper import HyperINRConfig
from weightspace.inr.meta import MetaConfig
from weightspace.inr.modulated import ModulatedSiren
from weightspace.inr.siren import get_recipe
from weightspace.signals.images import load_mnist_subset
from weightspace.signals.shapes import load_shapes
from weightspace.tasks.classify import classify_zoo
from weightspace.tasks.functa import fit_functa, functaset_latents, psnr_vs_inner_steps, sample_signals
from weightspace.tasks.generate import plot_samples_with_neighbours
from weightspace.tasks.hyperinr import fit_dataset
from weightspace.train import TrainConfig
from weightspace.zoo.build import build_inr_zoo

RUNS = ROOT / "runs" / "functa_bench"
RESULTS = ROOT / "benchmarks" / "results"
INNER_STEPS = [0, 1, 2, 3, 5, 10]
CURVE_SIGNALS = 400  # test signals in the PSNR-vs-steps curve (the first of the seeded test split)


@dataclass(frozen=True)
class Domain:
    name: str
    functa_hidden: tuple[int, ...]
    latent_dim: int
    meta_steps: int
    meta_batch: int
    hyper_steps: int
    hyper_batch: int
    hyper_encode_steps: int
    inr_steps: int
    classify_epochs: int
    diffusion_epochs: int


def _timed(log: dict, key: str, fn):
    start = time.perf_counter()
    out = fn()
    log[key] = round(time.perf_counter() - start, 1)
    print(f"  {key}: {log[key]} s", flush=True)
    return out


def run_domain(ds, d: Domain, seed: int = 0) -> dict:
    out = RUNS / d.name
    shutil.rmtree(out, ignore_errors=True)
    seconds: dict[str, float] = {}
    counts = {s: int(sum(x == s for x in ds.split)) for s in ("train", "val", "test")}
    print(f"{d.name}: {counts}", flush=True)
    test = ds.select_split("test")
    train = ds.select_split("train")
    cls_cfg = TrainConfig(epochs=d.classify_epochs, batch_size=64, lr=1e-3, progress=False, seed=seed)

    # ---- functa
    meta = MetaConfig(steps=d.meta_steps, batch_size=d.meta_batch, inner_steps=3, lr=1e-3, seed=seed, progress=True)
    res = _timed(seconds, "functa_meta_learn_and_encode",
                 lambda: fit_functa(ds, out / "functa", hidden=d.functa_hidden, latent_dim=d.latent_dim, meta=meta, seed=seed))
    curve_signals = test.targets()[:CURVE_SIGNALS]
    curve = _timed(seconds, "functa_psnr_curve",
                   lambda: psnr_vs_inner_steps(res.model, test.coordinates(), curve_signals, INNER_STEPS))
    initial = psnr_vs_inner_steps(ModulatedSiren(res.model.config), test.coordinates(), curve_signals, [0, 3])
    acc_functa = _timed(seconds, "functa_classify", lambda: classify_zoo(res.functaset, "mlp", config=cls_cfg))

    # ---- hypernetwork INRs
    hcfg = HyperINRConfig(code_dim=d.latent_dim, steps=d.hyper_steps, batch_size=d.hyper_batch, encode_steps=d.hyper_encode_steps)
    hres = _timed(seconds, "hyperinr_fit_and_encode", lambda: fit_dataset(ds, out / "hyperinr", hcfg, seed=seed, progress=True))
    acc_codes = _timed(seconds, "hyperinr_codes_classify", lambda: classify_zoo(hres.codes_zoo, "mlp", config=cls_cfg))
    acc_gen = _timed(seconds, "hyperinr_weights_classify", lambda: classify_zoo(hres.weights_zoo, "probe", config=cls_cfg))

    # ---- independently fitted INRs (same architecture as the generated ones)
    recipe = get_recipe("dwsnets", steps=d.inr_steps)
    zoo = _timed(seconds, "inr_fit", lambda: build_inr_zoo(ds, out / "inrs", recipe, seed=seed, progress=True))
    acc_inr = _timed(seconds, "inr_classify", lambda: classify_zoo(zoo, "probe", config=cls_cfg))

    # ---- generation from functa latents
    gen_cfg = TrainConfig(epochs=d.diffusion_epochs, batch_size=128, lr=1e-3, weight_decay=0.0, progress=False)
    samples = _timed(seconds, "diffusion_train_and_sample", lambda: sample_signals(
        res.model, functaset_latents(res.functaset, "train"), ds.coordinates(), 10,
        val_latents=functaset_latents(res.functaset, "val"), seed=seed, config=gen_cfg))
    figure, nn_idx, nn_dist = plot_samples_with_neighbours(
        samples.signals, train.targets(), ds.signal_shape, RESULTS / f"functa_samples_{d.name}.png",
        train_labels=[ds.classes[int(c)] for c in train.labels])
    # for scale: RMS distance of a training signal to its nearest other training signal
    ref = train.targets()[:500].flatten(1).double()
    pair = torch.cdist(ref, ref).fill_diagonal_(float("inf"))
    train_nn = (pair.min(dim=1).values / ref.shape[1] ** 0.5).float()

    def split_psnr(table):
        return {k: round(float(v), 2) for k, v in table.groupby("split")["psnr"].mean().items()}

    return {
        "signals": counts,
        "signal_shape": list(ds.signal_shape),
        "dataset": ds.name,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.__dict__.items()},
        "functa_psnr_vs_inner_steps_test": {str(k): round(v, 2) for k, v in curve.items()},
        "functa_initial_network_psnr_test": {str(k): round(v, 2) for k, v in initial.items()},
        "functa_meta_psnr_last_50_steps": round(float(np.mean(res.history.psnr[-50:])), 2),
        "psnr_by_split": {
            "functa (3 inner steps)": split_psnr(res.functaset.table),
            f"hyperinr (train: joint; val/test: {d.hyper_encode_steps} code steps)": split_psnr(hres.codes_zoo.table),
            f"fitted INR ({d.inr_steps} Adam steps)": split_psnr(zoo.table),
        },
        "sizes": {
            "functa latent": d.latent_dim,
            "hyperinr code": d.latent_dim,
            "INR weights": zoo.spec.num_params,
            "functa shared network params": sum(p.numel() for p in res.model.parameters()),
            "hypernetwork params": sum(p.numel() for p in hres.model.parameters()),
        },
        "accuracy": {
            "functa latents (mlp)": acc_functa.test_acc,
            "hyperinr codes (mlp)": acc_codes.test_acc,
            "hyperinr generated weights (probe)": acc_gen.test_acc,
            "fitted INR weights (probe)": acc_inr.test_acc,
        },
        "generation": {
            "figure": str(figure.relative_to(ROOT)),
            "sample_nn_rms": [round(float(x), 4) for x in nn_dist],
            "train_to_train_nn_rms_median": round(float(train_nn.median()), 4),
            "sample_nn_labels": [ds.classes[int(train.labels[int(i)])] for i in nn_idx],
            "diffusion_best_val_loss": samples.diffusion.best_val_loss,
        },
        "seconds": seconds,
    }


def markdown(f: dict) -> str:
    out = [
        "Functa (modulated SIREN, Meta-SGD inner loop on the latent, MAML outer loop: `inr/meta.py`), "
        "HyperINR (hypernetwork code -> SIREN 32-32 weights, auto-decoded) and independently fitted SIRENs "
        "(DWSNets recipe, fewer steps) on the same signals and seeded splits. "
        "Classifiers train through `weightspace.train.fit` (`classify_zoo`), best epoch by validation accuracy; "
        "held-out signals are encoded with the shared networks fixed. Small sizes for a 2-core CPU: "
        + "; ".join(f"{k}: {v['dataset']} {v['signals']}" for k, v in f["domains"].items()) + ".",
        "",
        f"Reconstruction PSNR (dB) vs functa inner steps, on the first {CURVE_SIGNALS} test signals of each domain:",
        "",
        "| domain | network | " + " | ".join(f"k={k}" for k in INNER_STEPS) + " |",
        "|---|---|" + "---:|" * len(INNER_STEPS),
    ]
    for name, d in f["domains"].items():
        c, i = d["functa_psnr_vs_inner_steps_test"], d["functa_initial_network_psnr_test"]
        out.append(f"| {name} | meta-learned | " + " | ".join(f"{c[str(k)]:.2f}" for k in INNER_STEPS) + " |")
        out.append(f"| {name} | before meta-learning | " + " | ".join(f"{i[str(k)]:.2f}" if str(k) in i else "–" for k in INNER_STEPS) + " |")
    out += ["", "Mean PSNR (dB) per split of each representation:", "", "| domain | representation | train | val | test |", "|---|---|---:|---:|---:|"]
    for name, d in f["domains"].items():
        for rep, s in d["psnr_by_split"].items():
            out.append(f"| {name} | {rep} | {s.get('train', float('nan')):.2f} | {s.get('val', float('nan')):.2f} | {s.get('test', float('nan')):.2f} |")
    out += ["", "Classification test accuracy (%):", "", "| representation | size | " + " | ".join(f["domains"]) + " |",
            "|---|---:|" + "---:|" * len(f["domains"])]
    first = next(iter(f["domains"].values()))
    sizes = {"functa latents (mlp)": "functa latent", "hyperinr codes (mlp)": "hyperinr code",
             "hyperinr generated weights (probe)": "INR weights", "fitted INR weights (probe)": "INR weights"}
    for rep in first["accuracy"]:
        cells = " | ".join(f"{100 * d['accuracy'][rep]:.1f}" for d in f["domains"].values())
        out.append(f"| {rep} | {first['sizes'][sizes[rep]]} | {cells} |")
    out += ["", "Generation (DDPM over the functa training latents; figures show samples over their nearest training signal):", ""]
    for name, d in f["domains"].items():
        g = d["generation"]
        out.append(f"- {name}: `{g['figure']}`; RMS distance of each sample to its nearest training signal "
                   f"{min(g['sample_nn_rms']):.3f}–{max(g['sample_nn_rms']):.3f} (median nearest-neighbour distance between "
                   f"training signals: {g['train_to_train_nn_rms_median']}).")
    out += ["", "Stage wall times (s): " + "; ".join(f"{n}: " + ", ".join(f"{k} {v}" for k, v in d["seconds"].items())
                                                    for n, d in f["domains"].items()) + "."]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run; results not written to BENCHMARKS.md)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = environment()
    q = args.quick
    mnist = Domain("mnist", (64, 64, 64), 64, 20 if q else 400, 32, 50 if q else 2000, 32, 10 if q else 100,
                   10 if q else 300, 2 if q else 60, 2 if q else 200)
    shapes = Domain("shapes", (64, 64, 64), 64, 10 if q else 150, 16, 50 if q else 1500, 16, 10 if q else 100,
                    10 if q else 300, 2 if q else 60, 2 if q else 300)
    domains = {
        "mnist": run_domain(load_mnist_subset(seed=0, limit=30 if q else 800), mnist),
        "shapes": run_domain(load_shapes(4 if q else 20, resolution=8 if q else 12, field="udf", seed=0), shapes),
    }
    figures = {"domains": domains, "inner_steps": INNER_STEPS, "threads": 1}
    if q:
        print(markdown(figures))
        return
    write_result("functa", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
