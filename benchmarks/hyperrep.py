"""Hyper-representations on a CNN zoo: probe R² beside StatNN, sampled networks without
training vs the zoo, fine-tuned samples vs random init at equal steps, figures.

    python benchmarks/hyperrep.py [--zoo zoos/cnn-mnist] [--epochs 40] [--samples 100] ...

Without --zoo: zoos/cnn-mnist-10k if it is complete (built by `python benchmarks/cnn_mnist_zoo.py`),
else zoos/cnn-mnist-small (`weightspace zoo train-classifiers`, see README). The autoencoder trains on the zoo's train split, the
probes fit on the train split and score on the test split.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, environment, report_from, write_result

from weightspace.models.hyperrep import HyperRepConfig
from weightspace.tasks.hyperrep import (
    HyperRepTask,
    fit_hyperrep,
    invariance_gap,
    num_parameters,
    reconstruction_error,
    save_hyperrep,
)
from weightspace.tasks.hyperrep_plots import embedding_map, plot_accuracy_histograms, plot_embedding_map
from weightspace.tasks.hyperrep_probe import PROBE_MAX_DIM, probe_table, probe_targets, run_probes, split_features
from weightspace.tasks.hyperrep_sample import sample_from_zoo, zoo_images
from weightspace.train import TrainConfig
from weightspace.zoo.store import Zoo

RESULTS = ROOT / "benchmarks" / "results"


def default_zoo() -> str:
    big = ROOT / "zoos" / "cnn-mnist-10k"
    if (big / "zoo.json").exists() and Zoo.open(big).complete:
        return "zoos/cnn-mnist-10k"
    return "zoos/cnn-mnist-small"


def markdown(f: dict) -> str:
    s = f["sampling"]
    ft = lambda g: ", ".join(f"{k}: {v:.3f}" for k, v in s.get(f"finetune_{g}", {}).items())
    nc = f.get("noncanonical")
    nc_line = (
        f"The same autoencoder without the canonical order (the published, non-invariant design, trained with "
        f"permutation augmentation for {nc['epochs']} epochs) moves a network's embedding under a random hidden-neuron "
        f"permutation by {nc['invariance_gap']['relative']:.2f}× the mean distance between two different networks "
        f"(test reconstruction error {nc['test_reconstruction']:.3f}); its probe R² for test accuracy (linear / MLP): "
        f"{nc['probe_r2_accuracy'][0]:.3f} / {nc['probe_r2_accuracy'][1]:.3f}, for epoch: "
        f"{nc['probe_r2_epoch'][0]:.3f} / {nc['probe_r2_epoch'][1]:.3f}."
        if nc else "")
    pooled = (", the layer-pooled readout of " + str(f["pooled_dim"]) + " values whole") if f.get("pooled_dim") else ""
    selection = ", ".join(f"{k} → {v:.3f}" for k, v in s["selection"].items())
    reached = any(v >= s["selection_reference"] for v in s["selection"].values())
    rule = ("the widest bandwidth whose samples are as accurate there as" if reached else
            "the most accurate bandwidth, since none reached")
    sweep = "; ".join(f"{k} (bandwidth {v['bandwidth']:.3g}) → {v['sampled_mean']:.3f} "
                      f"({100 * v['sampled_mean'] / s['zoo_mean']:.0f}% of the zoo mean, novelty {v['novelty_median']:.2f})"
                      for k, v in f["bandwidth_sweep"].items())
    return f"""
Zoo `{f['zoo']}`: {f['networks']} networks ({f['spec']}); splits by run {f['splits']}. Autoencoder:
{f['model']['parameters']:,} parameters, embedding of {f['model']['embedding_dim']} values, canonical neuron order
(encoder invariant to hidden-neuron permutations by construction: measured gap {f['invariance_gap']['relative']:.1e}
of the mean distance between networks, largest change of one embedding {f['invariance_gap']['max_abs']:.1e}; the
canonical order is defined up to ties in its sort keys),
{f['epochs']} epochs on the train split ({f['train_seconds']:.0f} s), reconstruction + {f['contrastive_weight']} ×
contrastive loss, views with noise {f['noise']} and erasing {f['erase']}. Test reconstruction error (per-layer
normalised MSE; 1.0 = predicting each tensor's mean): {f['test_reconstruction']:.3f}.

Probes fitted on the train split's embeddings (the flat one projected on its {f['probe_max_dim']} leading principal
components{pooled}) or StatNN statistics ({f['statnn_dim']} values), scored on the test split (R² for continuous
targets, accuracy for categorical ones; baseline = predicting the mean / the majority class):

{f['probe_markdown']}

{nc_line}

Sampling (Gaussian KDE on per-dimension standardised embeddings of the top {int(100 * f['top_fraction'])}% of train-split
models by accuracy, restricted to their most common activation `{s['activation']}`: {s['num_good']} models). Bandwidth
{s['bandwidth']:.3g} std, chosen on the zoo's {f['train_images']} *training* images (never the test images): {rule}
the zoo's own `{s['activation']}` models ({s['selection_reference']:.3f}, 128 of them); per bandwidth: {selection} (mean
training-image accuracy of {f['samples']} decoded samples). {f['samples']} new samples decoded and evaluated on the zoo's own
{f['test_images']} test images of `{f['dataset']}`, no training:

| group | mean test accuracy |
|---|---:|
| zoo, train split, every checkpoint | {s['zoo_mean']:.3f} |
| good models (KDE support, table) | {s['good_mean']:.3f} |
| good models encoded + decoded | {s['reconstructed_mean']:.3f} |
| **sampled, no training** | **{s['sampled_mean']:.3f}** ({100 * s['sampled_over_zoo_mean']:.0f}% of the zoo mean; goal ≥ 90%) |
| zoo models re-measured here (check of the evaluation) | {s['zoo_measured_mean']:.3f} (table: {s['zoo_checked_table_mean']:.3f}) |

How new the samples are: a sample's embedding lies a median {s['novelty_median']:.2f} (least {s['novelty_min']:.2f}) times
the median distance between a good model and its nearest other good model from the nearest good model (0 would be a
copy of a zoo model).

Every bandwidth, for comparison (same seed, measured on the test images, so for reading only — choosing by this table
would be selection on the test set): {sweep}. "cv" is the bandwidth with the best 5-fold held-out likelihood of the
embeddings: the density that fits the embeddings best spreads samples into regions that decode to poor networks.

Fine-tuning {f['finetune_networks']} sampled networks vs {f['finetune_networks']} random (PyTorch default) inits,
Adam lr {f['finetune_lr']}, batch {f['finetune_batch']}, same batches; mean test accuracy after each step count:
sampled — {ft('sampled')}; random init — {ft('random_init')}.

Figures: `benchmarks/results/hyperrep_map.png` (PCA of all zoo embeddings coloured by accuracy and epoch),
`benchmarks/results/hyperrep_accuracy.png` (accuracy distribution sampled vs zoo). Total wall time
{f['total_seconds']:.0f} s.
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default=None)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--latent-tokens", type=int, default=0, help="K pooled latents; 0: one latent per neuron token")
    ap.add_argument("--latent-dim", type=int, default=32)
    ap.add_argument("--contrastive-weight", type=float, default=0.05)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--erase", type=float, default=0.05)
    ap.add_argument("--noncanonical-epochs", type=int, default=0, help="also train the non-invariant variant")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--top", type=float, default=0.3)
    ap.add_argument("--bandwidths", type=float, nargs="*", default=[1.0, 0.5, 0.25, 0.1],
                    help="also sample with these fixed KDE bandwidths (std units), no fine-tuning")
    ap.add_argument("--test-images", type=int, default=1000, help="when the zoo is not a classifier zoo")
    ap.add_argument("--finetune-steps", type=int, default=100)
    ap.add_argument("--finetune-networks", type=int, default=32)
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    ap.add_argument("--finetune-batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more than 1 is slower on a shared machine)")
    ap.add_argument("--report", default=None)
    args = ap.parse_args()
    if args.report:
        report_from(args.report, "hyperrep", markdown)
        return
    torch.set_num_threads(args.threads)
    env = environment()
    start = time.perf_counter()
    zoo_path = args.zoo or default_zoo()
    zoo = Zoo.open(ROOT / zoo_path if not Path(zoo_path).is_absolute() else zoo_path)
    splits = {s: zoo.load(s) for s in ("train", "val", "test")}
    weights = {s: w for s, (w, _) in splits.items()}
    tables = {s: t for s, (_, t) in splits.items()}
    print(f"zoo {zoo_path}: {zoo.info()['splits']}", flush=True)

    def train(canonical: bool, epochs: int):
        mc = HyperRepConfig(d_model=args.d_model, encoder_layers=args.layers, decoder_layers=args.layers,
                            latent_tokens=args.latent_tokens or None, latent_dim=args.latent_dim, canonical=canonical)
        tc = TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=False)
        task = HyperRepTask(contrastive_weight=args.contrastive_weight, noise=args.noise, erase=args.erase, seed=args.seed)
        return fit_hyperrep(weights["train"], weights["val"], model_config=mc, config=tc, task=task)

    result = train(True, args.epochs)
    model = result.model
    save_hyperrep(ROOT / "runs" / "hyperrep" / "model.safetensors", model,
                  {"zoo": zoo_path, "epochs": args.epochs, "train_seconds": result.seconds})
    recon = reconstruction_error(model, weights["test"])
    gap = invariance_gap(model, weights["test"], seed=args.seed)
    print(f"autoencoder: {result.seconds:.0f} s, test reconstruction {recon:.4f}, invariance gap {gap}", flush=True)

    targets = probe_targets(tables["train"])
    feats = split_features(model, {s: weights[s] for s in ("train", "test")})
    t0 = time.perf_counter()
    probes = run_probes(feats, tables, targets, max_dim=PROBE_MAX_DIM, seed=args.seed)
    print(probe_table(probes), f"\nprobes: {time.perf_counter() - t0:.0f} s", flush=True)

    everything = torch.cat([torch.as_tensor(feats["hyperrep"][s]) for s in ("train", "test")]).numpy()
    all_tables = {c: np.concatenate([tables[s][c].to_numpy() for s in ("train", "test")]) for c in ("test_accuracy", "epoch")}
    plot_embedding_map(embedding_map(everything, "pca", seed=args.seed), all_tables, RESULTS / "hyperrep_map.png",
                       title="PCA, train + test:")

    noncanonical = None
    if args.noncanonical_epochs > 0:
        nc = train(False, args.noncanonical_epochs)
        nc_feats = split_features(nc.model, {s: weights[s] for s in ("train", "test")})
        nc_probes = run_probes({"hyperrep": nc_feats["hyperrep"]}, tables, ["test_accuracy", "epoch"], seed=args.seed)
        by = {(r.target, r.probe): r.value for r in nc_probes}
        noncanonical = {
            "epochs": args.noncanonical_epochs,
            "train_seconds": nc.seconds,
            "invariance_gap": invariance_gap(nc.model, weights["test"], seed=args.seed),
            "test_reconstruction": reconstruction_error(nc.model, weights["test"]),
            "probe_r2_accuracy": [by[("test_accuracy", "linear")], by[("test_accuracy", "mlp")]],
            "probe_r2_epoch": [by[("epoch", "linear")], by[("epoch", "mlp")]],
        }
        print(f"non-canonical: {noncanonical}", flush=True)

    dataset = zoo.provenance.get("dataset", "?")
    train_images, test = zoo_images(zoo, test_limit=args.test_images, seed=args.seed)
    # The bandwidth is chosen on the zoo's training images (never the test images): the widest
    # of SELECT_GRID whose decoded samples match the zoo's own models there.
    report = sample_from_zoo(model, weights["train"], tables["train"], test, n=args.samples, top_fraction=args.top,
                             bandwidth="select", select=train_images,
                             finetune_steps=args.finetune_steps, finetune_networks=args.finetune_networks,
                             train=train_images, batch_size=args.finetune_batch, lr=args.finetune_lr,
                             seed=args.seed)
    summary = report.summary()
    print(summary, flush=True)
    sweep = {}
    for bw in ["cv", *args.bandwidths]:  # how far from the good models the samples go, and what that costs
        r = sample_from_zoo(model, weights["train"], tables["train"], test, n=args.samples, top_fraction=args.top,
                            bandwidth=bw, seed=args.seed)
        sweep["cv" if bw == "cv" else str(bw)] = {"bandwidth": r.bandwidth, "sampled_mean": float(r.sampled.mean()),
                                                   "novelty_median": float(r.novelty.median())}
    print(f"bandwidth sweep: {sweep}", flush=True)
    plot_accuracy_histograms({"zoo (train split)": report.zoo.numpy(), "good models": report.good.numpy(),
                              "sampled, no training": report.sampled.numpy()}, RESULTS / "hyperrep_accuracy.png")

    figures = {
        "zoo": zoo_path,
        "networks": len(zoo),
        "spec": zoo.spec.describe(),
        "splits": zoo.info()["splits"],
        "dataset": dataset,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "contrastive_weight": args.contrastive_weight,
        "noise": args.noise,
        "erase": args.erase,
        "model": {"parameters": num_parameters(model), "embedding_dim": model.embedding_dim,
                  "config": model.describe()["config"]},
        "train_seconds": result.seconds,
        "history_last": result.history[-1] if result.history else {},
        "test_reconstruction": recon,
        "invariance_gap": gap,
        "probes": [r.row() for r in probes],
        "probe_markdown": probe_table(probes),
        "probe_max_dim": 128,
        "statnn_dim": int(feats["statnn"]["train"].shape[1]),
        "pooled_dim": int(feats["hyperrep_pooled"]["train"].shape[1]) if "hyperrep_pooled" in feats else None,
        "noncanonical": noncanonical,
        "top_fraction": args.top,
        "samples": args.samples,
        "test_images": len(test[1]),
        "train_images": len(train_images[1]),
        "finetune_networks": args.finetune_networks,
        "finetune_lr": args.finetune_lr,
        "finetune_batch": args.finetune_batch,
        "sampling": summary,
        "sampled_accuracies": report.sampled.tolist(),
        "bandwidth_sweep": sweep,
        "seed": args.seed,
        "total_seconds": time.perf_counter() - start,
    }
    print(markdown(figures))
    write_result("hyperrep", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
