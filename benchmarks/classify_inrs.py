"""INR classification: test accuracy (mean ± std over seeds), training throughput and peak
memory for registry models on an INR zoo, side by side in one run.

    python benchmarks/classify_inrs.py --zoo zoos/mnist-dwsnets --models mlp,dws --seeds 0,1,2 \\
        [--epochs 40] [--batch-size 32] [--augment dws=sign] [--report JSON]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from _common import environment, report_from, write_result
from weightspace.core.transforms import RandomSymmetry
from weightspace.tasks.classify import classify_zoo
from weightspace.train import TrainConfig
from weightspace.zoo.store import Zoo


def markdown(f: dict) -> str:
    where = "Run on the lent GPU machine (not the 2-core development machine). " if f["device"] != "cpu" else ""
    rows = []
    for name, r in f["models"].items():
        accs = np.array(r["test_acc"]) * 100
        rows.append(
            f"| {name} | {r['augment'] or '–'} | {accs.mean():.2f} ± {accs.std():.2f} | {r['params']:,} | "
            f"{np.mean(r['examples_per_s']):,.0f} | {np.mean(r['train_s']):.0f} s | {r['peak_memory_mb']:.0f} MB |"
        )
    return where + f"""
Zoo `{f['zoo']}` ({f['networks']}), device {f['device']}, {f['epochs']} epochs at batch {f['batch_size']},
lr {f['lr']}, seeds {f['seeds']}; best epoch by validation accuracy. Throughput counts training
examples per second of training wall time (validation included).

| model | augmentation | test accuracy % (mean ± std) | parameters | examples/s | train time per seed | peak memory |
|---|---|---:|---:|---:|---:|---:|
""" + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="zoos/mnist-dwsnets")
    ap.add_argument("--models", default="mlp,dws")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--augment", default="dws=sign", help="model=kind[+kind],... e.g. dws=sign,mlp=permutation+sign")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--report", default=None)
    args = ap.parse_args()
    if args.report:
        report_from(args.report, "classify_inrs", markdown)
        return
    env = environment()
    zoo = Zoo.open(args.zoo)
    augment = dict(a.split("=") for a in args.augment.split(",") if a)
    cuda = torch.cuda.is_available()
    figures = {
        "zoo": args.zoo,
        "networks": zoo.info()["splits"],
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seeds": args.seeds,
        "models": {},
    }
    for name in args.models.split(","):
        kinds = tuple(augment[name].split("+")) if name in augment else None
        r = {"augment": "+".join(kinds) if kinds else None, "test_acc": [], "val_acc": [], "examples_per_s": [], "train_s": []}
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for seed in map(int, args.seeds.split(",")):
            t = time.perf_counter()
            res = classify_zoo(
                zoo,
                name,
                config=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False),
                augment=RandomSymmetry(kinds) if kinds else None,
            )
            for k in ("test_acc", "val_acc", "examples_per_s"):
                r[k].append(getattr(res, k if k != "examples_per_s" else "examples_per_second"))
            r["train_s"].append(res.train_seconds)
            r["params"] = res.num_params
            print(f"{name} seed {seed}: test {100 * res.test_acc:.2f}% ({time.perf_counter() - t:.0f}s)", flush=True)
        # CPU: the process's peak resident set so far (covers everything run before it too)
        r["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures["models"][name] = r
    print(markdown(figures))
    write_result("classify_inrs", env, figures, markdown(figures), args.results_dir)


if __name__ == "__main__":
    main()
