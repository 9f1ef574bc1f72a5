"""What verifying a zoo costs: `Zoo.open` with the structural checks only (``verify="cheap"``:
zoo.json, table, shard headers) against the default ``verify="full"`` (also every shard's
content hash and every value finite: one read of every tensor byte), on an existing zoo.

The first open of each kind is reported on its own (it may read from disk); the medians
of the repeats that follow read from the page cache. The data pass is also split into its
two parts: sha256 alone (run even on a zoo written before hashes were recorded, against a
dummy hash, so the figure is what such a zoo costs once hashed) and the NaN / inf scan alone.

    python benchmarks/zoo_verify.py --zoo zoos/mnist-dwsnets [--repeats 5] [--results-dir DIR]

With ``--results-dir`` only DIR/zoo_verify.json is written (BENCHMARKS.md is left alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, environment, write_result

from weightspace.zoo.shard_check import check_shard_data
from weightspace.zoo.store import Zoo, ZooWarning
from weightspace.zoo.verify import verify_zoo


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _data_pass(shards, threads: int, *, hashes: bool, values: bool) -> float:
    def run() -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda s: check_shard_data(s, hashes=hashes, values=values), shards))
    return _timed(run)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="zoos/mnist-dwsnets")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--results-dir", default=None, help="write zoo_verify.json here and leave BENCHMARKS.md alone")
    args = ap.parse_args()
    path = Path(args.zoo) if Path(args.zoo).is_absolute() else ROOT / args.zoo
    env = environment()
    warnings.simplefilter("ignore", ZooWarning)  # a zoo without hashes warns on every open

    report = verify_zoo(path)
    if not report.ok:
        raise SystemExit("the zoo does not verify:\n" + "\n".join(report.lines()))
    shards = list(report.shards.values())
    size = sum(s.path.stat().st_size for s in shards)
    threads = max(1, min(8, os.cpu_count() or 1, len(shards)))

    first_full = _timed(lambda: Zoo.open(path))  # the first open of this process (verify_zoo above read it once)
    first_cheap = _timed(lambda: Zoo.open(path, verify="cheap"))
    cheap = [_timed(lambda: Zoo.open(path, verify="cheap")) for _ in range(args.repeats)]
    full = [_timed(lambda: Zoo.open(path)) for _ in range(args.repeats)]
    dummy = [dataclasses.replace(s, sha256=s.sha256 or "0" * 64) for s in shards]
    hash_only = [_data_pass(dummy, threads, hashes=True, values=False) for _ in range(args.repeats)]
    hash_one_thread = [_data_pass(dummy, 1, hashes=True, values=False) for _ in range(args.repeats)]
    values_only = [_data_pass(shards, threads, hashes=False, values=True) for _ in range(args.repeats)]

    med = statistics.median
    figures = {
        "zoo": str(args.zoo),
        "networks": report.networks,
        "shards": len(shards),
        "shard_bytes": size,
        "hashes_recorded": report.hashes_checked,
        "threads": threads,
        "open_full_first_s": first_full,
        "open_cheap_first_s": first_cheap,
        "open_cheap_s": med(cheap),
        "open_full_s": med(full),
        "hash_pass_s": med(hash_only),
        "hash_pass_one_thread_s": med(hash_one_thread),
        "values_pass_s": med(values_only),
        "hash_mb_per_s": size / med(hash_only) / 1e6,
        "repeats": args.repeats,
    }
    md = f"""
`Zoo.open` on `{args.zoo}`: {report.networks:,} networks in {len(shards)} shards, {size / 1e6:,.1f} MB of shards,
{report.hashes_checked} of {len(shards)} shards with a recorded content hash. Medians of {args.repeats} opens
from the page cache; the data pass runs on {threads} threads.

| | seconds |
|---|---:|
| `Zoo.open(verify="cheap")` (zoo.json, table, headers, table ↔ shards, labels) | {med(cheap):.3f} |
| `Zoo.open()` = `verify="full"` (+ content hashes + NaN / inf scan) | {med(full):.3f} |
| of which: sha256 of every shard ({threads} threads / 1 thread) | {med(hash_only):.3f} / {med(hash_one_thread):.3f} ({figures['hash_mb_per_s']:,.0f} MB/s) |
| of which: NaN / inf scan | {med(values_only):.3f} |
| first full open of the process (after one verify) | {first_full:.3f} |
"""
    print(md)
    if args.results_dir:
        out = Path(args.results_dir) / "zoo_verify.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        env["load_average_at_end"] = os.getloadavg()
        out.write_text(json.dumps({"environment": env, "figures": figures}, indent=2, default=str))
        print(f"wrote {out}")
    else:
        print(f"wrote {write_result('zoo_verify', env, figures, md)}")


if __name__ == "__main__":
    main()
