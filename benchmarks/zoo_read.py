"""Reading networks in random order: a weightspace zoo vs one torch.save file per network.

The per-network-file layout is how the reference repositories store INR datasets
(one pickle per network, `torch.load` per item). Both sides hold the same 10,000 SIRENs
(2->32->32->1) and are read in the same random order, one network at a time (the access
pattern of a shuffled data loader) and in random batches of 32, in one run.
Files are freshly written, so both sides read from the page cache.

    python benchmarks/zoo_read.py [--n 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, write_result

from weightspace import NetworkSpec, Weights
from weightspace.zoo.store import Zoo, ZooWriter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = environment()
    spec = NetworkSpec.siren(2, [32, 32], 1)
    g = torch.Generator().manual_seed(0)
    weights = Weights.unflatten(spec, torch.randn(args.n, spec.num_params, generator=g))
    order = np.random.default_rng(0).permutation(args.n)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        writer = ZooWriter(tmp / "zoo", spec, shard_size=args.shard_size)
        for k, start in enumerate(range(0, args.n, args.shard_size)):
            sl = slice(start, start + args.shard_size)
            writer.write_shard(k, weights[sl], {"label": [0] * len(weights[sl])})
        zoo = writer.finalize()
        write_zoo = time.perf_counter() - t0

        t0 = time.perf_counter()
        (tmp / "files").mkdir()
        for i in range(args.n):
            torch.save(weights.to_state_dict(i), tmp / "files" / f"{i}.pth")
        write_files = time.perf_counter() - t0

        zoo = Zoo.open(tmp / "zoo")
        t0 = time.perf_counter()
        for i in order:
            zoo.weights([i])
        zoo_single = time.perf_counter() - t0

        t0 = time.perf_counter()
        for i in order:
            Weights.from_state_dicts([torch.load(tmp / "files" / f"{i}.pth", weights_only=True)], spec)
        files_single = time.perf_counter() - t0

        batches = [order[s : s + args.batch] for s in range(0, args.n, args.batch)]
        t0 = time.perf_counter()
        for b in batches:
            zoo.weights(b)
        zoo_batch = time.perf_counter() - t0
        t0 = time.perf_counter()
        for b in batches:
            Weights.from_state_dicts([torch.load(tmp / "files" / f"{i}.pth", weights_only=True) for i in b], spec)
        files_batch = time.perf_counter() - t0

        # the two layouts hold the same numbers
        probe = order[:5]
        ref = Weights.from_state_dicts([torch.load(tmp / "files" / f"{i}.pth", weights_only=True) for i in probe], spec)
        assert all(torch.equal(a, b) for a, b in zip(zoo.weights(probe).tensors(), ref.tensors()))

    n = args.n
    figures = {
        "networks": n,
        "params_per_network": spec.num_params,
        "zoo_single_nets_per_s": n / zoo_single,
        "files_single_nets_per_s": n / files_single,
        "single_speedup": files_single / zoo_single,
        "zoo_batch_nets_per_s": n / zoo_batch,
        "files_batch_nets_per_s": n / files_batch,
        "batch_speedup": files_batch / zoo_batch,
        "write_zoo_s": write_zoo,
        "write_files_s": write_files,
    }
    md = f"""
{n:,} SIRENs 2→32→32→1 ({spec.num_params} parameters each), read in one random order; both layouts on
the page cache (freshly written). 1 torch thread.

| access | zoo (networks/s) | one `torch.save` file per network (networks/s) | zoo speed-up |
|---|---:|---:|---:|
| one network at a time | {figures['zoo_single_nets_per_s']:,.0f} | {figures['files_single_nets_per_s']:,.0f} | {figures['single_speedup']:.1f}× |
| random batches of {args.batch} | {figures['zoo_batch_nets_per_s']:,.0f} | {figures['files_batch_nets_per_s']:,.0f} | {figures['batch_speedup']:.1f}× |

Writing: zoo {write_zoo:.2f} s, per-network files {write_files:.2f} s.
"""
    print(md)
    write_result("zoo_read", env, figures, md)


if __name__ == "__main__":
    main()
