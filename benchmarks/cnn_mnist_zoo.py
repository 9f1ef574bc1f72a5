"""The zoos of small CNNs behind benchmarks/hyperrep.py and benchmarks/predict_accuracy.py:
build one (timed) and describe it.

    python benchmarks/cnn_mnist_zoo.py --preset cnn-mnist-10k     # builds (or resumes) and times it
    python benchmarks/cnn_mnist_zoo.py --preset cnn-mnist-10k --measured wall_s=..,cpu_s=..,load=..

Presets (each equals one ``weightspace zoo train-classifiers`` command, printed in its section):

- ``cnn-mnist-10k`` (the default zoo of the hyper-representation benchmark): the Model Zoos
  protocol (Schürholt et al. 2022: small CNNs on MNIST, the published hyperparameter spread,
  checkpoints through training) scaled to this CPU: 1,000 runs on 10,000 training images for
  8 epochs, checkpoints at epochs 0-4, 6 and 8, test metrics on 2,000 test images.
- ``cnn-mnist`` (the earlier zoo, kept reproducible): 2,000 runs on 500 images for 6 epochs.

A zoo that was built by the printed command under ``time`` is described with ``--measured
"wall_s=...,cpu_s=...,load=..."`` (the numbers ``time`` printed; load = the load average).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import torch
from _common import environment, write_result

from weightspace.zoo.search_space import get_zoo_recipe
from weightspace.zoo.store import Zoo
from weightspace.zoo.train_zoo import build_classifier_zoo


@dataclass(frozen=True)
class Preset:
    section: str
    runs: int
    epochs: int
    checkpoints: tuple[int, ...]
    n_train: int
    n_test: int
    why: str

    def command(self, out: str, dataset: str) -> str:
        return (f"weightspace zoo train-classifiers --out {out} --dataset {dataset} --recipe small-cnn "
                f"--runs {self.runs} --epochs {self.epochs} --checkpoints {','.join(map(str, self.checkpoints))} "
                f"--n-train {self.n_train} --n-test {self.n_test} --runs-per-shard 64 --seed 0")


PRESETS = {
    "cnn-mnist-10k": Preset(
        "cnn_mnist_10k_zoo", 1000, 8, (0, 1, 2, 3, 4, 6, 8), 10_000, 2_000,
        "Sized from a measured build rate: `weightspace zoo train-classifiers --out /tmp/ztest --dataset "
        "/work/shared/data/mnist --runs 64 --epochs 1 --checkpoints 0,1 --n-train 10000 --n-test 2000 "
        "--runs-per-shard 64` took 52 s under `time` at 2 threads (16 s of it start-up), which put 1,000 runs x 8 "
        "epochs at about an hour; the build of this section shared the machine with one-thread autoencoder "
        "trials for about 20 of its minutes. The Model Zoos protocol trains 50 epochs on all 60,000 images with "
        "checkpoints at every epoch; here 8 epochs on 10,000 images (313 x 8 = 2,504 optimiser steps per run)."),
    "cnn-mnist": Preset(
        "cnn_mnist_zoo", 2000, 6, (0, 1, 2, 4, 6), 500, 500,
        "Choices sized so the build fits ~25 min on the shared 2-core machine: 500 training images and 6 epochs "
        "(measured first on a 200-run zoo)."),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cnn-mnist-10k")
    ap.add_argument("--out", default=None, help="zoo folder (default zoos/<preset>)")
    ap.add_argument("--dataset", default="/work/shared/data/mnist")
    ap.add_argument("--measured", default=None, help="wall_s=..,cpu_s=..,load=.. measured by `time` around the CLI")
    args = ap.parse_args()
    p = PRESETS[args.preset]
    out = args.out or f"zoos/{args.preset}"
    cli = p.command(out, args.dataset)
    if args.measured:
        try:
            m = {k: float(v) for k, v in (part.split("=") for part in args.measured.split(","))}
        except ValueError:
            raise SystemExit(f"--measured: expected wall_s=..,cpu_s=..,load=.., got {args.measured!r}") from None
        env = environment()
        how = f"measured by `time` around `{cli}`"
        zoo = Zoo.open(out)
    else:
        env = environment()
        t0, c0 = time.perf_counter(), time.process_time()
        recipe = get_zoo_recipe("small-cnn", epochs=p.epochs, checkpoints=p.checkpoints)
        zoo = build_classifier_zoo(args.dataset, out, recipe, num_runs=p.runs, seed=0, n_train=p.n_train,
                                   n_test=p.n_test, runs_per_shard=64)
        m = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "load": os.getloadavg()[0]}
        how = f"measured by this script, which runs the equivalent of `{cli}` (resumed shards are not rebuilt, so time a fresh --out)"
    t = zoo.table
    last = t[t["epoch"] == t["epoch"].max()]
    by_epoch = t.groupby("epoch")["test_accuracy"].median()
    q = last["test_accuracy"].quantile([0.1, 0.5, 0.9])
    figures = {**m, "preset": args.preset, "command_built": cli, "networks": len(zoo), "runs": int(t["run"].nunique()),
               "zoo": zoo.info(), "median_test_accuracy_by_epoch": {int(k): float(v) for k, v in by_epoch.items()},
               "final_test_accuracy": {"min": float(last["test_accuracy"].min()), "max": float(last["test_accuracy"].max()),
                                       "p10": float(q[0.1]), "median": float(q[0.5]), "p90": float(q[0.9]),
                                       "runs_at_least_0.95": int((last["test_accuracy"] >= 0.95).sum()),
                                       "runs_at_least_0.9": int((last["test_accuracy"] >= 0.9).sum())},
               "diverged_runs": int(last["diverged"].sum())}
    steps = -(-zoo.provenance["n_train"] // 32)
    f = figures["final_test_accuracy"]
    md = f"""`{out}`: {figures['runs']:,} runs x {len(p.checkpoints)} checkpoints (epochs {', '.join(map(str, p.checkpoints))}) = {len(zoo):,} small CNNs
(Unterthiner et al.'s 3 x conv 3x3/2 x 16 + global average pooling + dense 10, {zoo.spec.num_params:,} parameters),
trained on MNIST (`{args.dataset}`, the full IDX files): {zoo.provenance['n_train']:,} training images (each run a seeded
subset of `train_fraction` of them), test metrics on {zoo.provenance['n_test']:,} test images, batch 32, one epoch =
{steps} steps. Hyperparameters from the default search space (lr 5e-4..5e-2 log, L2 1e-8..1e-2 log, dropout 0..0.5,
5 inits, relu/tanh/gelu, adam/sgd/rmsprop, train fraction 0.1..1). {p.why}

Build: wall {m['wall_s'] / 60:.1f} min, CPU {m['cpu_s'] / 60:.1f} min ({how}); load average around
{m.get('load', float('nan')):.1f} on 2 cores. Median test accuracy by epoch:
{", ".join(f"{k}: {v:.3f}" for k, v in figures['median_test_accuracy_by_epoch'].items())}. Final test accuracy (epoch
{p.epochs}): range {f['min']:.3f}..{f['max']:.3f}, 10th / 50th / 90th percentile {f['p10']:.3f} / {f['median']:.3f} /
{f['p90']:.3f}; {f['runs_at_least_0.9']} runs reach 0.90 and {f['runs_at_least_0.95']} reach 0.95; diverged runs
{figures['diverged_runs']}.
"""
    write_result(p.section, env, figures, md)
    print(md)


if __name__ == "__main__":
    main()
