"""INR editing (dilation): test MSE per equivariant model, side by side in one run, with a
figure of input, target and edited output.

    python benchmarks/edit_inrs.py [--zoo zoos/digits-dwsnets] [--epochs 20] [--models ...]

Without an existing --zoo, a digits zoo is built there with the DWSNets recipe (~30 s).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import ROOT, environment, report_from, write_result

from weightspace.inr.siren import DWSNETS
from weightspace.signals import load_digits
from weightspace.tasks.edit import edit_zoo, plot_edits
from weightspace.train import TrainConfig
from weightspace.zoo.build import build_inr_zoo
from weightspace.zoo.store import Zoo


def markdown(f: dict) -> str:
    rows = "\n".join(
        f"| {m} | {r['test_mse']:.4f} | {r['num_params']:,} | {r['examples_per_second']:,.0f} | {r['train_seconds']:.0f} s |"
        for m, r in f["models"].items()
    )
    return f"""
Zoo `{f['zoo']}` ({f['networks']}); target: 3×3 dilation of each INR's rendering; loss and MSE on the
networks' outputs at every pixel, in the recipe's target range [0, 1] (the NFN figures in
ANCHORS.md use [-1, 1], i.e. 4× these units). {f['epochs']} epochs, batch {f['batch_size']}, lr {f['lr']},
seed {f['seed']}. Not editing at all scores {f['identity_mse']:.4f}.

| model | test MSE | parameters | examples/s | train time |
|---|---:|---:|---:|---:|
{rows}

Figure: `benchmarks/results/edit_inrs.png` (rows: input, target, each model's edit).
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="zoos/digits-dwsnets")
    ap.add_argument("--models", default="mlp_eq,nfn_np_eq,nfn_hnp_eq,dws_eq")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", default=None)
    args = ap.parse_args()
    if args.report:
        report_from(args.report, "edit_inrs", markdown)
        return
    torch.set_num_threads(2)
    env = environment()
    path = Path(args.zoo)
    zoo = Zoo.open(path) if (path / "zoo.json").exists() else build_inr_zoo(load_digits(), path, DWSNETS)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=False)
    results = []
    for name in args.models.split(","):
        r = edit_zoo(zoo, name, config=cfg)
        print(r.row(), flush=True)
        results.append(r)
    fig = plot_edits(zoo, results, ROOT / "benchmarks" / "results" / "edit_inrs.png")
    figures = {
        "zoo": args.zoo,
        "networks": zoo.info()["splits"],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "identity_mse": results[0].identity_mse,
        "models": {r.model_name: r.row() for r in results},
        "figure": str(fig.relative_to(ROOT)),
    }
    print(markdown(figures))
    write_result("edit_inrs", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
