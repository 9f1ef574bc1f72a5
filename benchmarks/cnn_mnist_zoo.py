"""The zoo of small CNNs behind benchmarks/predict_accuracy.py: build it (timed) and describe it.

    python benchmarks/cnn_mnist_zoo.py [--out zoos/cnn-mnist]        # builds (or resumes) and times it

equals ``weightspace zoo train-classifiers --out zoos/cnn-mnist --dataset /work/shared/data/mnist
--recipe small-cnn --runs 2000 --epochs 6 --checkpoints 0,1,2,4,6 --n-train 500 --n-test 500
--runs-per-shard 64 --seed 0``. A zoo that was built by that command under ``time`` instead is
described with ``--measured "wall_s=...,cpu_s=..."`` (the numbers ``time`` printed).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _common import environment, write_result

from weightspace.zoo.search_space import get_zoo_recipe
from weightspace.zoo.store import Zoo
from weightspace.zoo.train_zoo import build_classifier_zoo

CLI = ("weightspace zoo train-classifiers --out {out} --dataset {dataset} --recipe small-cnn --runs {runs} --epochs 6 "
       "--checkpoints 0,1,2,4,6 --n-train 500 --n-test 500 --runs-per-shard 64 --seed 0")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="zoos/cnn-mnist")
    ap.add_argument("--dataset", default="/work/shared/data/mnist")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--measured", default=None, help="wall_s=..,cpu_s=..,load=.. measured by `time` around the CLI")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = environment()
    if args.measured:
        m = {k: float(v) for k, v in (p.split("=") for p in args.measured.split(","))}
        how = f"measured by `time` around `{CLI.format(**vars(args))}` (one thread)"
        zoo = Zoo.open(args.out)
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        zoo = build_classifier_zoo(args.dataset, args.out, get_zoo_recipe("small-cnn", epochs=6, checkpoints=(0, 1, 2, 4, 6)),
                                   num_runs=args.runs, seed=0, n_train=500, n_test=500, runs_per_shard=64)
        m = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "load": os.getloadavg()[0]}
        how = "measured by this script (resumed shards are not rebuilt, so time a fresh --out)"
    t = zoo.table
    last = t[t["epoch"] == t["epoch"].max()]
    by_epoch = t.groupby("epoch")["test_accuracy"].median()
    figures = {**m, "networks": len(zoo), "runs": int(t["run"].nunique()), "zoo": zoo.info(),
               "median_test_accuracy_by_epoch": {int(k): float(v) for k, v in by_epoch.items()},
               "diverged_runs": int(last["diverged"].sum())}
    md = f"""`{args.out}`: {figures['runs']:,} runs x 5 checkpoints (epochs 0, 1, 2, 4, 6) = {len(zoo):,} small CNNs
(Unterthiner et al.'s 3 x conv 3x3/2 x 16 + global average pooling + dense 10, {zoo.spec.num_params:,} parameters),
trained on MNIST (`{args.dataset}`, the full IDX files): {zoo.provenance['n_train']} training images (each run a seeded
subset of `train_fraction` of them), test metrics on {zoo.provenance['n_test']} test images, batch 32, one epoch =
16 steps. Hyperparameters from the default search space (lr 5e-4..5e-2 log, L2 1e-8..1e-2 log, dropout 0..0.5,
5 inits, relu/tanh/gelu, adam/sgd/rmsprop, train fraction 0.1..1). Choices sized so the build fits ~25 min on the
shared 2-core machine: 500 training images and 6 epochs (measured first on a 200-run zoo).

Build: wall {m['wall_s'] / 60:.1f} min, CPU {m['cpu_s'] / 60:.1f} min ({how}); the difference is the shared
machine (load average around {m.get('load', float('nan')):.1f} on 2 cores). Median test accuracy by epoch:
{", ".join(f"{k}: {v:.3f}" for k, v in figures['median_test_accuracy_by_epoch'].items())}; final test accuracy
range {last['test_accuracy'].min():.3f}..{last['test_accuracy'].max():.3f}; diverged runs {figures['diverged_runs']}.
"""
    write_result("cnn_mnist_zoo", env, figures, md)
    print(md)


if __name__ == "__main__":
    main()
