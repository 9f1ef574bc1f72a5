"""INR fitting speed: the reference scripts' per-network loop vs weightspace's stacked fitter,
against a cost model of this machine measured in the same run.

    python benchmarks/fit_inrs.py [--steps 50] [--threads 2]

All on 28×28 MNIST-subset images with the DWSNets recipe (SIREN 2→32→32→1), early
stopping off so every network does the same work:

- loop: one `nn.Module` + `torch.optim.Adam` per network, networks one after another
  (how the reference repositories fit their datasets);
- weightspace: `fit_inrs` on N = 1, 64 and 1,024 networks (the zoo builder's batching:
  chunks of `auto_batch_size` networks).

Cost model of one INR-step (forward + backward + optimiser) on this machine: its matmul
FLOPs at the GFLOP/s of a large float32 matmul, plus its sin/cos evaluations at their
measured per-element cost. The "limit" is the INR-steps/s that cost allows; the fraction
of it reached says how much of a step is overhead beyond those essentials.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from _common import environment, report_from, write_result
from weightspace.inr.siren import get_recipe
from weightspace.signals import load_mnist_subset
from weightspace.zoo.fit_inr import auto_batch_size, fit_inrs


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def elementwise_ns(fn, n: int = 8_000_000, reps: int = 5) -> float:
    x = torch.rand(n) * 6 - 3
    out = torch.empty_like(x)
    fn(x, out=out)
    t = time.perf_counter()
    for _ in range(reps):
        fn(x, out=out)
    return (time.perf_counter() - t) / (n * reps) * 1e9


def loop_rate(coords, targets, recipe, steps: int) -> float:
    """INR-steps/s of the per-network loop."""
    y = recipe.encode_targets(targets) - recipe.output_offset
    spec = recipe.spec(2, 1)
    t = time.perf_counter()
    for i in range(len(targets)):
        module = recipe.init(spec, [i]).to_module(0)
        opt = torch.optim.Adam(module.parameters(), lr=recipe.lr)
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(module(coords), y[i]).backward()
            opt.step()
    return len(targets) * steps / (time.perf_counter() - t)


def stacked_rate(coords, targets, recipe, n: int) -> float:
    batch = auto_batch_size(coords.shape[0], max(recipe.hidden))
    t = time.perf_counter()
    for lo in range(0, n, batch):
        fit_inrs(coords, targets[lo : min(n, lo + batch)], recipe, list(range(lo, min(n, lo + batch))))
    return n * recipe.steps / (time.perf_counter() - t)


def markdown(f: dict) -> str:
    rows = "\n".join(
        f"| weightspace, N = {n} | {f[f'stacked_n{n}']:,.0f} | {f[f'stacked_n{n}'] / f['loop']:.1f}× | {f[f'stacked_n{n}'] / f['limit_steps_per_s']:.0%} |"
        for n in f["ns"]
    )
    return f"""
28×28 images, SIREN 2→32→32→1, DWSNets recipe without early stopping, {f['steps']} steps per
network, {f['threads']} torch threads. Cost model measured in the same run: float32 matmul
{f['gflops']:.1f} GFLOP/s, sin {f['sin_ns']:.2f} ns/element, cos {f['cos_ns']:.2f} ns/element; one INR-step
needs {f['flops_per_step'] / 1e6:.2f} MFLOP of matmuls and {f['trig_per_step']:,} sin/cos evaluations, so this
machine allows at most **{f['limit_steps_per_s']:,.0f} INR-steps/s**.

| fitter | INR-steps/s | vs loop | of the limit |
|---|---:|---:|---:|
| per-network loop (nn.Module + Adam) | {f['loop']:,.0f} | 1.0× | {f['loop'] / f['limit_steps_per_s']:.0%} |
{rows}

Extrapolated time for 70,000 MNIST INRs × 1,000 steps at the N = {max(f['ns'])} rate:
{f['hours_70k']:.1f} h on this machine (the lent H100 did it in 141 s; see mnist_inr_zoo).
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loop-networks", type=int, default=8)
    ap.add_argument("--report", default=None)
    args = ap.parse_args()
    if args.report:
        report_from(args.report, "fit_inrs", markdown)
        return
    torch.set_num_threads(args.threads)
    env = environment()
    recipe = get_recipe("dwsnets", steps=args.steps, early_stop_psnr=None)
    data = load_mnist_subset()
    coords, targets = data.coordinates(), data.targets()
    p, h = coords.shape[0], recipe.hidden
    sizes = [2, *h, 1]
    flops_fwd = 2 * p * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    # backward: gradients w.r.t. weights and inputs (none for the first layer's input)
    flops = flops_fwd + 2 * flops_fwd - 2 * p * sizes[0] * sizes[1]
    trig = p * sum(h)  # one sin forward, one cos backward per hidden unit and pixel
    g, s_ns, c_ns = matmul_gflops(), elementwise_ns(torch.sin), elementwise_ns(torch.cos)
    limit = 1.0 / (flops / (g * 1e9) + trig * (s_ns + c_ns) * 1e-9)
    figures = {
        "steps": args.steps,
        "threads": args.threads,
        "gflops": g,
        "sin_ns": s_ns,
        "cos_ns": c_ns,
        "flops_per_step": flops,
        "trig_per_step": trig,
        "limit_steps_per_s": limit,
        "loop": loop_rate(coords, targets[: args.loop_networks], recipe, args.steps),
        "ns": [1, 64, 1024],
    }
    for n in figures["ns"]:
        figures[f"stacked_n{n}"] = stacked_rate(coords, targets, recipe, n)
        print(f"N = {n}: {figures[f'stacked_n{n}']:,.0f} INR-steps/s", flush=True)
    figures["hours_70k"] = 70_000 * 1000 / figures["stacked_n1024"] / 3600
    print(markdown(figures))
    write_result("fit_inrs", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
