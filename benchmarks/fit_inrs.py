"""INR fitting speed: the reference scripts' per-network loop vs weightspace's stacked fitter,
against a cost model of this machine measured in the same run.

    python benchmarks/fit_inrs.py [--steps 100] [--threads 2] [--no-ray]

All on 28×28 MNIST-subset images with the DWSNets recipe (SIREN 2→32→32→1), early
stopping off so every network does the same work:

- loop: one `nn.Module` + `torch.optim.Adam` per network, networks one after another
  (how the reference repositories fit their datasets);
- weightspace: `fit_inrs` on N = 1, 64 and 1,024 networks (the zoo builder's batching:
  chunks of `auto_batch_size` networks), with the native kernel of
  `weightspace.zoo.siren_native` (each network's forward and backward pass tile by tile in
  L1, polynomial sin/cos; on these grid images the first layer by the angle-sum identity),
  and at N = 1,024 also with the compiled PyTorch step of `weightspace.zoo.siren_grad`
  (``WEIGHTSPACE_NATIVE=0``), with a dense first layer, and through autograd (the earliest
  path) to show what each buys; and a sweep of networks per batch;
- weightspace's Ray backend at N = 1,024: two 1-thread worker processes (`--no-ray` skips).

Cost model of one INR-step (forward + backward + optimiser) on this machine: its matmul
FLOPs at the GFLOP/s of a large float32 matmul, plus its sin and cos evaluations at their
measured per-element cost. The "limit" is the INR-steps/s that cost allows; the fraction
of it reached says how much of a step is overhead beyond those essentials. Two limits are
given: with torch.sin + torch.cos, and with the fused sin/cos that weightspace uses (the
stricter one; fractions are against it). A third, stricter still, counts only the work of
weightspace's grid path (fewer sines, no first-layer matmuls).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from unittest import mock

import torch
from _common import environment, report_from, write_result
from torch import nn

from weightspace._malloc import keep_freed_memory
from weightspace.inr.siren import get_recipe
from weightspace.signals import load_mnist_subset
from weightspace.zoo import siren_grad, siren_native
from weightspace.zoo.backends import FitJob, RayBackend, ShardTask
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


def sincos_ns(n: int = 2_000_000, reps: int = 20) -> float:
    """Per element, sine and cosine together, by the fused kernel fitting uses (on a tensor
    the size of one batch's activations: larger outputs pay for malloc's page faults)."""
    x = torch.rand(n) * 200 - 100
    siren_grad.sincos(x)  # compiles
    t = time.perf_counter()
    for _ in range(reps):
        siren_grad.sincos(x)
    return (time.perf_counter() - t) / (n * reps) * 1e9


def step_breakdown(coords, targets, recipe, steps: int = 20) -> dict:
    """Where one step of the stacked fitter spends its time, at the zoo builder's batch size:
    the loss-and-gradient (the native kernel as one call; on the compiled path split into
    profiler self-times of matmuls, the fused elementwise loops and other ops), the optimiser,
    and the rest of the wall time (Python, dispatch, allocation)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from weightspace.zoo.fit_inr import _StackedAdam

    n = auto_batch_size(coords.shape[0], max(recipe.hidden))
    spec = recipe.spec(2, 1)
    params = [t[:, 0].clone() for t in recipe.init(spec, list(range(n))).tensors()]
    y = recipe.encode_targets(targets[:n]) - recipe.output_offset
    grad, opt = siren_grad.SirenMSEGrad(spec, coords, n), _StackedAdam(params, recipe.lr)
    for _ in range(3):
        grad(opt.params, y)
        opt.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            with record_function("loss_and_grad"):
                grad(opt.params, y)
            with record_function("optimiser"):
                opt.step()
        wall = time.perf_counter() - t
    events = {e.key: e for e in prof.key_averages()}
    if grad.native:
        parts = {"native_kernel": events["loss_and_grad"].cpu_time_total, "optimiser": events["optimiser"].cpu_time_total}
    else:
        parts = {"matmul": 0.0, "fused_elementwise": 0.0, "optimiser": 0.0, "other_ops": 0.0}
        for e in events.values():
            us = e.self_cpu_time_total
            if e.key == "optimiser":
                parts["optimiser"] += e.cpu_time_total
            elif any(k in e.key for k in ("bmm", "matmul", "aten::mm")):
                parts["matmul"] += us
            elif "CompiledFxGraph" in e.key or e.key in ("aten::sin", "aten::cos"):
                # the compiled step's own loops: sin/cos with bias and omega, products with cos, sums
                parts["fused_elementwise"] += us
            elif e.key.startswith("aten::"):
                parts["other_ops"] += us
        # the optimiser's own (elementwise) aten ops were also counted in other_ops
        parts["other_ops"] = max(parts["other_ops"] - parts["optimiser"], 0.0)
    total = wall * 1e6
    out = {k: v / total for k, v in parts.items()}
    out["python_and_rest"] = max(1.0 - sum(out.values()), 0.0)
    out["batch"] = n
    out["us_per_inr_step"] = total / (steps * n)
    return out


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


def loop_rate_fresh(threads: int, networks: int, steps: int) -> float:
    """`loop_rate` in a fresh Python process, as the reference scripts run: glibc's default
    malloc (this process has weightspace's thresholds) and none of this process's heap history
    (timed inside this process, the loop ran at 0.75-1.39k INR-steps/s across rounds: see
    `_LOOP_NOTE`). The child warms up on two networks first (its first steps run ~3x slower)."""
    cmd = [sys.executable, __file__, "--loop-child", "--threads", str(threads), "--loop-networks", str(networks),
           "--steps", str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "WEIGHTSPACE_MALLOPT": "0"})
    return float(json.loads(out.stdout.strip().splitlines()[-1])["loop"])


def _loop_child(args) -> None:
    recipe = get_recipe("dwsnets", steps=args.steps, early_stop_psnr=None)
    data = load_mnist_subset()
    coords, targets = data.coordinates(), data.targets()
    loop_rate(coords, targets[:2], recipe, args.steps)  # warm-up
    print(json.dumps({"loop": loop_rate(coords, targets[: args.loop_networks], recipe, args.steps)}))


def stacked_rate(coords, targets, recipe, n: int, use_autograd: bool = False, grid_identity: bool = True,
                 batch: int | None = None, native: bool = True) -> float:
    """INR-steps/s of `fit_inrs` on ``n`` networks in chunks of ``batch`` (default: the zoo
    builder's); ``grid_identity=False`` runs the dense first layer (``WEIGHTSPACE_GRID_IDENTITY=0``),
    ``native=False`` the compiled PyTorch step (``WEIGHTSPACE_NATIVE=0``)."""
    batch = batch or auto_batch_size(coords.shape[0], max(recipe.hidden))
    env = {"WEIGHTSPACE_GRID_IDENTITY": "1" if grid_identity else "0", "WEIGHTSPACE_NATIVE": "1" if native else "0"}
    with mock.patch.dict(os.environ, env):
        t = time.perf_counter()
        for lo in range(0, n, batch):
            hi = min(n, lo + batch)
            fit_inrs(coords, targets[lo:hi], recipe, list(range(lo, hi)), use_autograd=use_autograd)
        return n * recipe.steps / (time.perf_counter() - t)


def batch_sweep(coords, targets, recipe, sizes: tuple[int, ...], rounds: int = 3) -> dict[str, float]:
    """Median INR-steps/s per networks-per-batch, sizes interleaved in each round."""
    rates: dict[int, list[float]] = {b: [] for b in sizes}
    for _ in range(rounds):
        for b in sizes:
            rates[b].append(stacked_rate(coords, targets, recipe, max(384, 2 * b) // b * b, batch=b))
    return {str(b): statistics.median(v) for b, v in rates.items()}


def ray_rate(coords, targets, recipe, n: int, workers: int) -> float:
    """Shards of `batch` networks as Ray tasks on ``workers`` 1-thread processes; Ray's start
    and each worker's first (compiling) task are outside the timing."""
    import ray

    from weightspace.zoo.backends import _loopback_node

    with _loopback_node(ray):  # loopback only (plain _node_ip_address is not enough)
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=workers)
    try:
        batch = auto_batch_size(coords.shape[0], max(recipe.hidden))
        job = FitJob(coords, recipe, batch)
        backend = RayBackend()
        warm = [ShardTask(i, targets[i : i + 1], (i,)) for i in range(2 * workers)]
        list(backend.run(job, warm))
        tasks = [ShardTask(k, targets[lo : min(n, lo + batch)], tuple(range(lo, min(n, lo + batch))))
                 for k, lo in enumerate(range(0, n, batch))]
        t = time.perf_counter()
        list(backend.run(job, tasks))
        return n * recipe.steps / (time.perf_counter() - t)
    finally:
        ray.shutdown()


def _rounds(f: dict) -> str:
    if len(f.get("rounds", [])) < 2:
        return ""
    each = "; ".join(f"loop {r['loop']:,.0f}, N = 1024 {r['stacked_n1024']:,.0f} ({r['vs_loop']:.1f}×, "
                     f"{r['of_limit']:.0%} of {r['limit_steps_per_s']:,.0f}, dense first layer "
                     f"{r['stacked_n1024_dense']:,.0f}"
                     + (f", compiled PyTorch step {r['stacked_n1024_compiled']:,.0f}" if "stacked_n1024_compiled" in r
                        else "") + ")" for r in f["rounds"])
    loops = [r["loop"] for r in f["rounds"]]
    ratios = [r["vs_loop"] for r in f["rounds"]]
    fractions = [r["of_limit"] for r in f["rounds"]]
    return (f"The cost model, the loop and N = 1024 were measured in {len(f['rounds'])} interleaved rounds "
            f"(this VM's speed drifts); the table shows their medians (ratios: median of the per-round "
            f"ratios {f['vs_loop']:.1f}× and {f['of_limit']:.0%}). Rounds: {each}. Across rounds the loop ran at "
            f"{min(loops):,.0f}–{max(loops):,.0f} INR-steps/s ({_LOOP_NOTE}), so the ratio to the loop spans "
            f"{min(ratios):.1f}–{max(ratios):.1f}×; "
            f"against the fastest loop round ({max(loops):,.0f}) weightspace's median rate is "
            f"{f['stacked_n1024'] / max(loops):.1f}×, against the slowest {f['stacked_n1024'] / min(loops):.1f}×, "
            f"while the fraction of the limit spans {min(fractions):.0%}–{max(fractions):.0%}. The grid identity's "
            f"gain, median of the per-round ratios to the dense first layer: {f['grid_vs_dense']:.2f}×"
            + (f"; the native kernel's over the compiled PyTorch step: {f['native_vs_compiled']:.2f}×"
               if "native_vs_compiled" in f else "") + ".\n\n")


_LOOP_NOTE = ("each round in a fresh process with glibc's default malloc, after a warm-up, as the reference scripts "
              "run; until 2026-11-28 it was timed inside this process, where it ran at 747–1,386 across the rounds of "
              "one run and the slow rounds flattered weightspace: benchmarks/results/fit_inrs.json at commit 49048e9")


def _verdict(f: dict) -> str:
    rounds = f.get("rounds") or [f]
    fast = sum(r["vs_loop"] >= 10 for r in rounds)
    half = sum(r["of_limit"] >= 0.5 for r in rounds)
    return (f"Targets (issue 3): at least 10× the loop — {'met' if f['vs_loop'] >= 10 else 'NOT met'} by the median "
            f"({f['vs_loop']:.1f}×; {fast} of {len(rounds)} rounds reach 10×); at least 50% of the limit — "
            f"{'met' if f['of_limit'] >= 0.5 else 'NOT met'} by the median ({f['of_limit']:.0%}; {half} of "
            f"{len(rounds)} rounds reach 50%); against the grid path's own, smaller work its median is "
            f"{f['of_grid_limit']:.0%} of that stricter limit.{_near_limit(f)}\n\n")


def _near_limit(f: dict) -> str:
    if f["of_limit"] < 0.9:
        return ""
    return (" The standard limit prices every matmul FLOP at a large matmul's rate; the native kernel's "
            "small per-tile matmuls run from L1 at about that rate and it skips the grid path's share of the "
            "work, so it can reach or pass that limit: the grid path's limit is the informative one.")


def _grid_model(f: dict) -> str:
    return (f" On a grid (these images) weightspace's step does less: the first layer's sin/cos "
            f"come from the axis values by the angle-sum identity and its matmuls are gone "
            f"(`weightspace.zoo.siren_native`, `weightspace.zoo.siren_grad`), {f['flops_per_step_grid'] / 1e6:.2f} MFLOP and "
            f"{f['trig_per_step_grid']:,} sin/cos pairs, for which the same costs allow at most "
            f"{f['limit_grid_steps_per_s']:,.0f} INR-steps/s (the stricter fraction, in the verdict).")


def _sweep(f: dict) -> str:
    cells = ", ".join(f"{b}: {v:,.0f}" + (" (the default)" if int(b) == f["batch_default"] else "")
                      for b, v in f["batch_sweep"].items())
    return (f"Networks per batch (medians of 3 interleaved rounds, INR-steps/s; `auto_batch_size` picks "
            f"{f['batch_default']}): {cells}.\n\n")


def markdown(f: dict) -> str:
    lim = f["limit_steps_per_s"]

    def row(name: str, v: float) -> str:
        return f"| {name} | {v:,.0f} | {v / f['loop']:.1f}× | {v / lim:.0%} |"

    rows = [row("per-network loop (nn.Module + Adam)", f["loop"])]
    rows += [row(f"weightspace, N = {n}", f[f"stacked_n{n}"]) for n in f["ns"]]
    rows.append(row("weightspace, dense first layer (`WEIGHTSPACE_GRID_IDENTITY=0`), N = 1024",
                    f["stacked_n1024_dense"]))
    if "stacked_n1024_compiled" in f:
        rows.append(row("weightspace, compiled PyTorch step instead of the native kernel (`WEIGHTSPACE_NATIVE=0`), "
                        "N = 1024", f["stacked_n1024_compiled"]))
    rows.append(row("weightspace through autograd (earlier path), N = 1024", f["autograd_n1024"]))
    if f.get("ray_n1024"):
        rows.append(row(f"weightspace, Ray backend, {f['ray_workers']} workers × 1 thread, N = 1024", f["ray_n1024"]))
    best = max(v for k, v in f.items() if k.startswith(("stacked_n", "ray_n")))
    b = f["breakdown"]
    keys = (("native_kernel",) if "native_kernel" in b else
            ("matmul", "fused_elementwise" if "fused_elementwise" in b else "sin_cos", "other_ops")) + (
        "optimiser", "python_and_rest")
    split = ", ".join(f"{k.replace('_', ' ')} {b[k]:.0%}" for k in keys)
    return f"""
28×28 images, SIREN 2→32→32→1, DWSNets recipe without early stopping, {f['steps']} steps per
network, {f['threads']} torch threads (Ray workers: 1 each). glibc's malloc thresholds: {f.get('malloc', 'defaults')}.
Cost model measured in the same run:
float32 matmul {f['gflops']:.1f} GFLOP/s; torch.sin {f['sin_ns']:.2f} ns/element, torch.cos {f['cos_ns']:.2f}
ns/element, the fused sin+cos {f['sincos_ns']:.2f} ns/element (both values; the fitter's path:
{f['sincos_path']}). One INR-step needs {f['flops_per_step'] / 1e6:.2f} MFLOP of matmuls and
{f['trig_per_step']:,} sines plus as many cosines, so this machine allows at most
{f['limit_torch_trig']:,.0f} INR-steps/s with torch's sin/cos and **{lim:,.0f} INR-steps/s** with the
fused kernel (the limit used below).{_grid_model(f)}

| fitter | INR-steps/s | vs loop | of the limit |
|---|---:|---:|---:|
{chr(10).join(rows)}

{_verdict(f)}{_rounds(f)}{_sweep(f)}Where a step's time goes (profiler, N = {b['batch']} networks per batch, {b['us_per_inr_step']:.0f} µs per
INR-step): {split}.

Extrapolated time for 70,000 MNIST INRs × 1,000 steps at the best rate ({best:,.0f} INR-steps/s):
{70_000 * 1000 / best / 3600:.1f} h on this machine (the lent H100 did it in 141 s; see mnist_inr_zoo).
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loop-networks", type=int, default=8)
    ap.add_argument("--report", default=None)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--loop-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5,
                    help="interleaved rounds of cost model, loop and N = 1024 (medians are reported)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.loop_child:
        _loop_child(args)
        return
    if args.report:
        report_from(args.report, "fit_inrs", markdown)
        return
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
    # the grid path's own work: no first-layer matmuls (forward and weight gradient), and the
    # first layer's sin/cos on the 28 + 28 axis values per unit, not on the 784 pixels
    flops_grid = flops - 4 * p * sizes[0] * sizes[1]
    trig_grid = p * sum(h[1:]) + sum(a.numel() for a in siren_grad.grid_axes(coords)) * h[0]
    # compile the fused sin/cos for the batch sizes used (1 is specialised separately)
    for n in (1, 2, auto_batch_size(coords.shape[0], max(recipe.hidden))):
        fit_inrs(coords, targets[:n], get_recipe("dwsnets", steps=2), list(range(n)))
    stacked_rate(coords, targets, get_recipe("dwsnets", steps=2), 2, grid_identity=False)
    for n in (1, 2, auto_batch_size(coords.shape[0], max(recipe.hidden))):  # compiles the PyTorch step
        stacked_rate(coords, targets, get_recipe("dwsnets", steps=2), n, native=False)
    # This VM's speed drifts by tens of percent from minute to minute, so the headline
    # comparison (cost model, loop, N = 1024) runs in interleaved rounds; medians are used.
    rounds: list[dict] = []
    for r in range(args.repeats):
        g, s_ns, c_ns, sc_ns = matmul_gflops(), elementwise_ns(torch.sin), elementwise_ns(torch.cos), sincos_ns()
        rnd = {
            "gflops": g, "sin_ns": s_ns, "cos_ns": c_ns, "sincos_ns": sc_ns,
            "limit_torch_trig": 1.0 / (flops / (g * 1e9) + trig * (s_ns + c_ns) * 1e-9),
            "limit_steps_per_s": 1.0 / (flops / (g * 1e9) + trig * sc_ns * 1e-9),
            "limit_grid_steps_per_s": 1.0 / (flops_grid / (g * 1e9) + trig_grid * sc_ns * 1e-9),
            "loop": loop_rate_fresh(args.threads, args.loop_networks, args.steps),
            "stacked_n1024": stacked_rate(coords, targets, recipe, 1024),
            "stacked_n1024_dense": stacked_rate(coords, targets, recipe, 1024, grid_identity=False),
            "stacked_n1024_compiled": stacked_rate(coords, targets, recipe, 1024, native=False),
        }
        rnd["vs_loop"] = rnd["stacked_n1024"] / rnd["loop"]
        rnd["of_limit"] = rnd["stacked_n1024"] / rnd["limit_steps_per_s"]
        rnd["of_grid_limit"] = rnd["stacked_n1024"] / rnd["limit_grid_steps_per_s"]
        rnd["grid_vs_dense"] = rnd["stacked_n1024"] / rnd["stacked_n1024_dense"]
        rnd["native_vs_compiled"] = rnd["stacked_n1024"] / rnd["stacked_n1024_compiled"]
        rounds.append(rnd)
        print(f"round {r}: " + ", ".join(f"{k} {v:,.2f}" for k, v in rnd.items()), flush=True)
    figures = {k: statistics.median(rnd[k] for rnd in rounds) for k in rounds[0]}
    figures.update({
        "rounds": rounds,
        "steps": args.steps,
        "threads": args.threads,
        "sincos_path": ("native kernel (`siren_native`), polynomial sin/cos" if siren_native.available()
                        else "eager step, torch.sin/cos (compile failed)" if False in siren_grad._steps.values()
                        else "whole step compiled, polynomial sin/cos"),
        "flops_per_step": flops,
        "trig_per_step": trig,
        "flops_per_step_grid": flops_grid,
        "trig_per_step_grid": trig_grid,
        "ns": [1, 64, 1024],
        "malloc": ("kept freed memory (`weightspace._malloc.keep_freed_memory`, set by the first fit, for the whole "
                   "process: the cost model runs under it too; the loop runs in a fresh process with glibc's "
                   "defaults)") if keep_freed_memory() else "defaults",
    })
    for n in (1, 64):
        figures[f"stacked_n{n}"] = stacked_rate(coords, targets, recipe, n)
        print(f"N = {n}: {figures[f'stacked_n{n}']:,.0f} INR-steps/s", flush=True)
    figures["batch_default"] = auto_batch_size(coords.shape[0], max(recipe.hidden))
    figures["batch_sweep"] = batch_sweep(coords, targets, recipe, (16, 32, figures["batch_default"], 64, 83, 128))
    print(f"batch sweep: {figures['batch_sweep']}", flush=True)
    figures["breakdown"] = step_breakdown(coords, targets, recipe)
    figures["autograd_n1024"] = stacked_rate(coords, targets, recipe, 1024, use_autograd=True)
    print(f"autograd, N = 1024: {figures['autograd_n1024']:,.0f} INR-steps/s", flush=True)
    if not args.no_ray:
        figures["ray_workers"] = args.threads
        figures["ray_n1024"] = ray_rate(coords, targets, recipe, 1024, args.threads)
        print(f"Ray, N = 1024: {figures['ray_n1024']:,.0f} INR-steps/s", flush=True)
    best = max(v for k, v in figures.items() if k.startswith(("stacked_n", "ray_n")) and isinstance(v, float))
    figures["hours_70k"] = 70_000 * 1000 / best / 3600
    print(markdown(figures))
    write_result("fit_inrs", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
