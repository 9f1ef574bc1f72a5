"""Hyper-representation embeddings beside StatNN on a realistic zoo: seeds and ablations.

    python benchmarks/hyperrep_probes.py [--zoo zoos/cnn-mnist-10k] [--epochs 10] [--seeds 0,1,2]

For every seed the autoencoder (`weightspace.tasks.hyperrep.fit_hyperrep`, one latent per
neuron token, canonical order, reconstruction + contrastive loss on noisy / erased views)
trains on the zoo's train runs; linear and MLP probes fit on the train runs' features and
score on the test runs (R² for test accuracy, epoch and generalisation gap; accuracy for
the activation, optimiser and initialisation). Feature sets: the flat embedding (what the
decoder takes; 128 principal components), its layer-pooled readout (per layer, mean and
std of the neuron tokens' latents) and StatNN's 56 weight statistics, whose probes use the
same probe seeds. Ablations (first seed only) retrain the autoencoder with one part
removed: the canonical neuron order, the contrastive loss, the augmentations (noise and
erasing), or with half the model size. Section ``hyperrep_probes`` of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, environment, report_from, write_result

from weightspace.models.hyperrep import HyperRepConfig
from weightspace.tasks.hyperrep import HyperRepTask, fit_hyperrep, num_parameters, reconstruction_error
from weightspace.tasks.hyperrep_probe import LABELS, PROBE_MAX_DIM, run_probes, split_features, statnn_features
from weightspace.train import TrainConfig
from weightspace.zoo.store import Zoo

TARGETS = ("test_accuracy", "epoch", "gap", "activation", "optimizer", "init")


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    canonical: bool = True
    contrastive_weight: float = 0.05
    noise: float = 0.05
    erase: float = 0.05
    d_model: int = 64
    latent_dim: int = 32


VARIANTS = (
    Variant("full", "the method as benchmarked"),
    Variant("no canonical order", "tokens in the networks' own neuron order (permutation augmentation only)", canonical=False),
    Variant("no contrastive loss", "reconstruction only", contrastive_weight=0.0),
    Variant("no augmentation", "views without noise or erasing", noise=0.0, erase=0.0),
    Variant("half size", "d_model 32, latent 16 per token", d_model=32, latent_dim=16),
)


def _fmt(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" + (f" ± {np.std(values):.3f}" if len(values) > 1 else "")


def markdown(f: dict) -> str:
    rows = f["rows"]
    full = [r for r in rows if r["variant"] == "full"]
    sets = [s for s in LABELS if any(r["features"] == s for r in full)]
    head = "| target | metric | probe | " + " | ".join(LABELS[s] for s in sets) + " | baseline |"
    lines = [head, "|---|---|---|" + "---:|" * len(sets) + "---:|"]
    wins = {s: 0 for s in sets if s != "statnn"}
    cells_total = 0
    for target in f["targets"]:
        for probe in ("linear", "mlp"):
            vals = {s: [r["value"] for r in full if (r["target"], r["probe"], r["features"]) == (target, probe, s)] for s in sets}
            ref = next(r for r in full if (r["target"], r["probe"]) == (target, probe))
            means = {s: np.mean(v) for s, v in vals.items() if v}
            best = max(means.values())
            cells = [f"**{_fmt(v)}**" if np.mean(v) == best else _fmt(v) for v in vals.values()]
            lines.append(f"| {target} | {ref['metric']} | {probe} | " + " | ".join(cells) + f" | {ref['baseline']:.3f} |")
            cells_total += 1
            for s in wins:
                wins[s] += means[s] > means["statnn"]
    ablation_targets = f["targets"]
    ab = ["| variant | what | recon | " + " | ".join(f"{t} (mlp)" for t in ablation_targets) + " | train s |",
          "|---|---|---:|" + "---:|" * len(ablation_targets) + "---:|"]
    for v in f["variants"]:
        got = {r["target"]: r["value"] for r in rows if r["variant"] == v["name"] and r["seed"] == f["seeds"][0]
               and r["probe"] == "mlp" and r["features"] == "hyperrep_pooled"}
        ab.append(f"| {v['name']} | {v['what']} | {v['test_reconstruction']:.3f} | "
                  + " | ".join(f"{got[t]:.3f}" for t in ablation_targets) + f" | {v['train_seconds']:.0f} |")
    stat_mlp = {t: np.mean([r["value"] for r in full if (r["target"], r["probe"], r["features"]) == (t, "mlp", "statnn")])
                for t in ablation_targets}
    ab.append("| StatNN | weight statistics, no training | – | " + " | ".join(f"{stat_mlp[t]:.3f}" for t in ablation_targets)
              + " | – |")
    won = "; ".join(f"{LABELS[s]} above StatNN in {n} of {cells_total} (target, probe) cells" for s, n in wins.items())
    return f"""
Zoo `{f['zoo']}`: {f['networks']:,} networks, splits by run {f['splits']} (every checkpoint of a run in one split).
Autoencoder per seed: {f['parameters']:,} parameters, one latent of {f['latent_dim']} values per neuron token
({f['embedding_dim']} values flat; the layer-pooled readout has {f['pooled_dim']}), {f['epochs']} epochs on the train runs,
batch {f['batch_size']}, lr {f['lr']}; reconstruction + {f['contrastive_weight']} × contrastive loss, views with noise
{f['noise']} and erasing {f['erase']}. Probes: ridge / logistic regression ("linear") and a 64-unit MLP (scikit-learn,
early stopping), features standardised on the train runs; the flat embedding projected on its 128 leading principal
components. Seeds {', '.join(map(str, f['seeds']))} (autoencoder and probe); mean ± std over seeds; the best of a row
in bold. StatNN's features do not depend on the seed, its MLP probe does.

{chr(10).join(lines)}

{won}.

Ablations (seed {f['seeds'][0]}, layer-pooled readout, MLP probe; test reconstruction error in per-layer normalised
MSE, 1.0 = predicting each tensor's mean):

{chr(10).join(ab)}

Total wall time {f['total_seconds'] / 60:.1f} min.
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="zoos/cnn-mnist-10k")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(v.name for v in VARIANTS),
                    help="comma-separated variant names (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="hyperrep_probes")
    ap.add_argument("--report", default=None, help="re-create the section from a result JSON")
    args = ap.parse_args()
    if args.report:
        report_from(args.report, args.name, markdown)
        return
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    known = {v.name: v for v in VARIANTS}
    wanted = [n.strip() for n in args.variants.split(",")]
    if unknown := [n for n in wanted if n not in known]:
        raise SystemExit(f"--variants: unknown {unknown}; known: {list(known)}")
    if "full" not in wanted:
        raise SystemExit("--variants must include 'full' (the seeds run on it)")
    torch.set_num_threads(args.threads)
    env = environment()
    start = time.perf_counter()
    zoo = Zoo.open(ROOT / args.zoo if not Path(args.zoo).is_absolute() else args.zoo)
    loaded = {s: zoo.load(s) for s in ("train", "val", "test")}
    weights = {s: w for s, (w, _) in loaded.items()}
    tables = {s: t for s, (_, t) in loaded.items()}
    targets = [t for t in TARGETS if t in tables["train"].columns and tables["train"][t].nunique() > 1]
    statnn = {s: statnn_features(weights[s]) for s in ("train", "test")}
    print(f"zoo {args.zoo}: {zoo.info()['splits']}; targets {targets}", flush=True)

    rows, variants, first = [], [], None
    runs = [(known["full"], s) for s in seeds] + [(known[n], seeds[0]) for n in wanted if n != "full"]
    for variant, seed in runs:
        mc = HyperRepConfig(d_model=variant.d_model, latent_tokens=None, latent_dim=variant.latent_dim,
                            canonical=variant.canonical)
        tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False)
        task = HyperRepTask(contrastive_weight=variant.contrastive_weight, noise=variant.noise, erase=variant.erase,
                            seed=seed)
        t0 = time.perf_counter()
        result = fit_hyperrep(weights["train"], weights["val"], model_config=mc, config=tc, task=task)
        model = result.model
        feats = split_features(model, {s: weights[s] for s in ("train", "test")})
        if variant.name != "full":  # the ablation table reads the layer-pooled readout only
            feats.pop("statnn")
            feats.pop("hyperrep")
        else:
            feats["statnn"] = statnn
        probes = run_probes(feats, tables, targets, max_dim=PROBE_MAX_DIM, seed=seed)
        recon = reconstruction_error(model, weights["test"])
        rows += [{**r.row(), "variant": variant.name, "seed": seed} for r in probes]
        if seed == seeds[0]:
            variants.append({"name": variant.name, "what": variant.what, "test_reconstruction": recon,
                             "train_seconds": result.seconds, "parameters": num_parameters(model)})
        if first is None:
            first = model
        print(f"{variant.name} seed {seed}: train {result.seconds:.0f} s, recon {recon:.3f}, total "
              f"{time.perf_counter() - t0:.0f} s; " + ", ".join(f"{r.features}/{r.probe}/{r.target} {r.value:.3f}"
                                                               for r in probes if r.probe == "mlp"), flush=True)
    full = known["full"]
    figures = {
        "zoo": args.zoo, "networks": len(zoo), "splits": zoo.info()["splits"], "targets": targets, "seeds": seeds,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "contrastive_weight": full.contrastive_weight, "noise": full.noise, "erase": full.erase,
        "latent_dim": full.latent_dim, "parameters": num_parameters(first), "embedding_dim": first.embedding_dim,
        "pooled_dim": first.pooled_dim, "variants": variants, "rows": rows,
        "total_seconds": time.perf_counter() - start,
    }
    md = markdown(figures)
    print(md)
    write_result(args.name, env, figures, md)


if __name__ == "__main__":
    main()
