"""Predicting a small CNN's test accuracy from its weights, with every invariant model.

On a zoo of small CNNs built here (`weightspace zoo train-classifiers`, see --zoo), each
registry model is trained on the checkpoints of the train runs (the epoch chosen on the
val runs) to regress test accuracy (or another column: the generalisation gap, the epoch;
text columns such as the optimiser are classified); Kendall's tau and R^2 (or accuracy) on
the checkpoints of the test runs. Splits are by run.

    python benchmarks/predict_accuracy.py [--zoo zoos/cnn-mnist] [--models mlp,statnn,...] [--targets test_accuracy]
    python benchmarks/predict_accuracy.py --name predict_properties --targets gap,epoch,optimizer --models statnn,probe
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import ROOT, effective_config, environment, write_result

from weightspace.tasks.predict import plot_predictions, predict_property
from weightspace.train import TrainConfig
from weightspace.zoo.store import Zoo

# Model sizes for a CPU: the equivariant trunks run on every one of the 4,970 weights, so
# they get fewer channels and epochs than the per-network-vector models.
MODEL_CONFIG = {
    "dws": {"hidden_channels": 8, "num_layers": 2},
    "nfn_np": {"hidden_channels": 8, "num_layers": 2},
    "nfn_hnp": {"hidden_channels": 8, "num_layers": 2},
    "graph": {"hidden": 16, "num_layers": 2},
    "probe": {"image_size": 16},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="zoos/cnn-mnist")
    ap.add_argument("--models", default="mlp,statnn,dws,nfn_np,nfn_hnp,graph,transformer,probe")
    ap.add_argument("--targets", default="test_accuracy", help="comma-separated zoo columns")
    ap.add_argument("--epochs", default="mlp=20,statnn=20", help="per model, name=epochs; others get --default-epochs")
    ap.add_argument("--default-epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-epoch", type=int, default=1, help="leave out checkpoints before this epoch (0: the inits)")
    ap.add_argument("--name", default="predict_accuracy", help="result name (JSON, BENCHMARKS.md section, figure)")
    ap.add_argument("--statnn-from", default=None, help="compare with StatNN's row in this earlier result (JSON name)")
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds; with several, rows give mean ± std")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = environment()
    zoo = Zoo.open(args.zoo)
    keep = np.flatnonzero(zoo.table["epoch"].to_numpy() >= args.min_epoch)
    epochs = {k: int(v) for k, v in (p.split("=") for p in args.epochs.split(",") if p)}

    seeds = [int(s) for s in args.seeds.split(",")]
    # each model's options, the defaults that have changed over time included, so the result names them
    model_configs = {m: effective_config(m, MODEL_CONFIG.get(m)) for m in args.models.split(",")}

    def config(model: str, seed: int) -> TrainConfig:
        return TrainConfig(epochs=epochs.get(model, args.default_epochs), batch_size=args.batch_size, lr=args.lr,
                           progress=False, accelerator="cpu", seed=seed)

    rows, runs, figures = [], [], []
    for target in args.targets.split(","):
        results = []
        for model in args.models.split(","):
            per_seed = []
            for seed in seeds:
                t0 = time.perf_counter()
                res = predict_property(zoo, model, target, config=config(model, seed),
                                       model_config=model_configs[model], rows=keep)
                per_seed.append({**res.row(), "seed": seed, "epochs": config(model, seed).epochs,
                                 "wall_s": time.perf_counter() - t0, "model_config": model_configs[model]})
                print(per_seed[-1], flush=True)
                if seed == seeds[0]:
                    results.append(res)  # the figure shows the first seed's predictions
            runs.extend(per_seed)
            rows.append(_mean_row(per_seed))
        if results[0].kind == "regression":
            figures.append(plot_predictions(results, ROOT / "benchmarks" / "results" / f"{args.name}_{target}.png"))

    t = zoo.table.iloc[keep]
    info = zoo.info()
    prov = zoo.provenance

    def pm(r: dict, key: str) -> str:
        return f"{r[key]:.3f}" + (f" ± {r[key + '_std']:.3f}" if len(seeds) > 1 else "")

    def score(r: dict) -> str:
        if "kendall_tau" in r:
            return f"{pm(r, 'kendall_tau')} | {pm(r, 'r2')}"
        return f"accuracy {pm(r, 'accuracy')} (chance {r['chance']:.3f}) | –"

    table = "\n".join(
        f"| {r['target']} | {r['model']} | {score(r)} | {r['params']:,} | {r['epochs']} | {r['train_s']:.0f} |" for r in rows
    )
    verdicts = []
    for target in args.targets.split(","):
        reg = [r for r in rows if r["target"] == target and "kendall_tau" in r]
        stat = next((r for r in reg if r["model"] == "statnn"), None)
        if stat is None and args.statnn_from:  # StatNN's row of an earlier run of this script
            old = json.loads((ROOT / "benchmarks" / "results" / f"{args.statnn_from}.json").read_text())["figures"]["rows"]
            stat = next((r for r in old if r["model"] == "statnn" and r["target"] == target), None)
        if not reg or stat is None:
            continue
        best = max([*reg, stat], key=lambda r: r["kendall_tau"])
        beats = best["model"] != "statnn" and best["kendall_tau"] > stat["kendall_tau"]
        source = "" if stat in reg else f" (from {args.statnn_from})"
        verdicts.append(f"{target}: best **{best['model']}** (tau {best['kendall_tau']:.3f}), StatNN tau "
                        f"{stat['kendall_tau']:.3f}{source}: "
                        + ("the best model beats StatNN." if beats else "no model beats StatNN."))
    md = f"""Zoo `{args.zoo}`: {t['run'].nunique():,} small CNNs ({zoo.spec.num_params:,} parameters, recipe
`{prov['recipe']['name']}`), checkpoints at epochs {sorted(t['epoch'].unique().tolist())} used ({len(t):,} networks;
epoch-0 initialisations left out with --min-epoch {args.min_epoch}), trained on {prov['n_train']} MNIST images
({prov['dataset']}), test accuracy on {prov['n_test']} test images. Runs split {info['splits']} (counts of all
checkpoints; checkpoints of one run stay in one split). Test accuracy in the zoo: median
{t['test_accuracy'].median():.3f}, range {t['test_accuracy'].min():.3f}..{t['test_accuracy'].max():.3f}.
Each model: AdamW lr {args.lr}, batch {args.batch_size}, cosine schedule, best epoch on the val runs, CPU, one
thread; {"training seed " + str(seeds[0]) if len(seeds) == 1 else f"mean ± std over training seeds {seeds} (same split; the seed sets the model's init and batch order; train s is per seed)"}; model options (sizes reduced for the CPU): {({m: c for m, c in model_configs.items() if c})}. Metrics on the checkpoints of the test runs.

| target | model | Kendall tau | R^2 | params | epochs | train s |
|---|---|---|---|---|---|---|
{table}

{chr(10).join("- " + v for v in verdicts)}

Reference (Small CNN Zoo, CIFAR10-GS, 30k runs of 86 epochs): StatNN 0.915, NFN-HNP 0.934 (ANCHORS.md); a
different and much larger zoo, so not comparable one to one. Figures: {", ".join(f"`{f.relative_to(ROOT)}`" for f in figures)}
(predicted vs true on the test runs, one panel per model).
"""
    write_result(args.name, env, {"rows": rows, "runs": runs, "zoo": info, "args": vars(args)}, md)
    print(md)


def _mean_row(per_seed: list[dict]) -> dict:
    """One row per model and target: every metric averaged over seeds, its std beside it."""
    row = dict(per_seed[0])
    row.pop("seed")
    for key in ("kendall_tau", "r2", "accuracy", "train_s", "wall_s"):
        if key in row:
            v = np.array([r[key] for r in per_seed], dtype=float)
            row[key], row[key + "_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
    row["seeds"] = [r["seed"] for r in per_seed]
    return row


if __name__ == "__main__":
    main()
