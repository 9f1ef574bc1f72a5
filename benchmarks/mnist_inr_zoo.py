"""Build the full MNIST INR zoo with the DWSNets recipe (70,000 INRs, 55k / 5k / 10k split)
and record wall time and PSNR statistics.

    python benchmarks/mnist_inr_zoo.py --mnist ../shared/data/mnist --out zoos/mnist-dwsnets \\
        [--device cuda] [--batch-size 5000] [--export DIR --export-n 10000]

`--export` also writes a smaller zoo (first train / val / test networks) that fits in the
files a lent GPU machine sends back; `--report JSON` rewrites the BENCHMARKS.md section
from a result file made elsewhere.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, report_from, write_result

from weightspace.inr.siren import DWSNETS
from weightspace.signals import load_mnist_idx
from weightspace.zoo.build import build_inr_zoo
from weightspace.zoo.store import Zoo, ZooWriter


def markdown(f: dict) -> str:
    where = "Run on the lent GPU machine (not the 2-core development machine). " if f["device"] != "cpu" else ""
    return where + f"""
DWSNets recipe (SIREN 2→32→32→1, ω0 = 30, Adam 5e-4, 1,000 steps, early stop at 40 dB) on
MNIST {f['split_counts']}, device {f['device']}, batches of {f['batch_size']} networks.

| networks | wall time | INR-steps/s | mean PSNR | 5th-percentile PSNR | stopped early |
|---:|---:|---:|---:|---:|---:|
| {f['networks']:,} | {f['wall_s']:.0f} s | {f['inr_steps_per_s']:,.0f} | {f['psnr_mean']:.2f} dB | {f['psnr_p5']:.2f} dB | {100 * f['early_stopped_fraction']:.1f}% |
"""


def build_figures(zoo: Zoo, wall: float) -> dict:
    """Size, wall time, INR-steps/s and PSNR statistics of a freshly built DWSNets-recipe zoo."""
    psnr, steps = zoo.table["psnr"].to_numpy(), zoo.table["steps"].to_numpy()
    return {
        "networks": len(zoo),
        "wall_s": wall,
        "inr_steps_per_s": float(steps.sum()) / wall,
        "psnr_mean": float(psnr.mean()),
        "psnr_p5": float(np.percentile(psnr, 5)),
        "psnr_median": float(np.median(psnr)),
        "early_stopped_fraction": float((steps < DWSNETS.steps).mean()),
    }


def export_subset(zoo: Zoo, out: Path, counts: dict[str, int], shard_size: int) -> None:
    pos = np.concatenate([zoo.split(s)[:n] for s, n in counts.items()])
    w, table = zoo.weights(pos), zoo.table.iloc[pos].reset_index(drop=True)
    writer = ZooWriter(out, zoo.spec, shard_size=shard_size, provenance={**zoo.provenance, "subset_of": str(zoo.path), "subset": counts})
    cols = [c for c in table.columns if c not in ("id", "shard", "row")]
    for k, start in enumerate(range(0, len(pos), shard_size)):
        sl = slice(start, start + shard_size)
        writer.write_shard(k, w[sl], {c: table[c].iloc[sl].tolist() for c in cols})
    writer.finalize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--out", default="zoos/mnist-dwsnets")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--shard-size", type=int, default=5000)
    ap.add_argument("--limit", type=int, default=None, help="images per split (smoke runs)")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--export", default=None)
    ap.add_argument("--export-n", type=int, default=10_000)
    ap.add_argument("--report", default=None)
    args = ap.parse_args()
    if args.report:
        report_from(args.report, "mnist_inr_zoo", markdown)
        return
    env = environment()
    data = load_mnist_idx(args.mnist, val_fraction=5000 / 60000, limit=args.limit)
    batch = args.batch_size or (args.shard_size if args.device != "cpu" else None)
    t0 = time.perf_counter()
    zoo = build_inr_zoo(data, args.out, DWSNETS, shard_size=args.shard_size, batch_size=batch, device=args.device)
    wall = time.perf_counter() - t0
    figures = {
        "split_counts": zoo.info()["splits"],
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "batch_size": batch or "auto",
        **build_figures(zoo, wall),
    }
    print(markdown(figures))
    write_result("mnist_inr_zoo", env, figures, markdown(figures), args.results_dir)
    if args.export:
        n = args.export_n
        export_subset(zoo, Path(args.export), {"train": int(n * 0.75), "val": int(n * 0.05), "test": n - int(n * 0.75) - int(n * 0.05)}, n // 4)


if __name__ == "__main__":
    main()
