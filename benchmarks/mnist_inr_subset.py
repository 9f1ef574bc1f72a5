"""Build the 10k MNIST INR zoo the CPU benchmarks use (`zoos/mnist10k`): the first 7,500 /
500 / 2,000 train / val / test images of the full zoo's split (`load_mnist_idx` with 5,000
validation images, as `mnist_inr_zoo.py`), DWSNets recipe, on this machine; records wall time,
INR-steps/s and PSNR.

    python benchmarks/mnist_inr_subset.py [--mnist ../shared/data/mnist] [--out zoos/mnist10k] \\
        [--counts train=7500,val=500,test=2000]

Resumable like every zoo build: shards already on disk are kept (then the wall time covers only
the rest).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import environment, report_from, write_result
from mnist_inr_zoo import build_figures

from weightspace.inr.siren import DWSNETS
from weightspace.signals import load_mnist_idx
from weightspace.zoo.build import build_inr_zoo


def markdown(f: dict) -> str:
    return f"""
DWSNets recipe (SIREN 2→32→32→1, ω0 = 30, Adam 5e-4, 1,000 steps, early stop at 40 dB) on the first
{f['counts']} images of each split of MNIST ({f['mnist']}, the full zoo's split), device {f['device']},
{f['threads']} threads; fitter path: {f['fitter']}.

| networks | wall time | INR-steps/s | mean PSNR | 5th-percentile PSNR | stopped early |
|---:|---:|---:|---:|---:|---:|
| {f['networks']:,} | {f['wall_s']:.0f} s | {f['inr_steps_per_s']:,.0f} | {f['psnr_mean']:.2f} dB | {f['psnr_p5']:.2f} dB | {100 * f['early_stopped_fraction']:.1f}% |
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--out", default="zoos/mnist10k")
    ap.add_argument("--counts", default="train=7500,val=500,test=2000")
    ap.add_argument("--shard-size", type=int, default=2500)
    ap.add_argument("--report", default=None)
    args = ap.parse_args()
    if args.report:
        report_from(args.report, "mnist_inr_subset", markdown)
        return
    import torch

    from weightspace.zoo import siren_native

    env = environment()
    counts = {k: int(v) for k, v in (kv.split("=") for kv in args.counts.split(","))}
    data = load_mnist_idx(args.mnist, val_fraction=5000 / 60000)
    split = np.asarray(data.split, dtype=object)
    idx = np.concatenate([np.flatnonzero(split == s)[:n] for s, n in counts.items()])
    t0 = time.perf_counter()
    zoo = build_inr_zoo(data.subset(idx), args.out, DWSNETS, shard_size=args.shard_size, progress=False)
    wall = time.perf_counter() - t0
    figures = {
        "counts": counts, "mnist": args.mnist, "device": "cpu", "threads": torch.get_num_threads(),
        "fitter": "native kernel (siren_native)" if siren_native.available() else "compiled PyTorch step",
        **build_figures(zoo, wall),
    }
    print(markdown(figures))
    write_result("mnist_inr_subset", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
