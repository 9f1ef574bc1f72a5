"""CUDA check and throughput of the INR fitter and DWS model (run where a GPU is present).

Checks that the functional forward and the INR fitter give the CPU's results on the GPU,
then measures INR-steps/s (DWSNets recipe, 28x28 MNIST-subset images) and DWS training
examples/s on both devices side by side in one run.

    python benchmarks/device_check.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _common import environment, training_rate, write_result
from tests.specs import SPECS, example_input

from weightspace import Weights, forward
from weightspace.inr.siren import get_recipe
from weightspace.models.registry import create_model
from weightspace.signals import load_mnist_subset
from weightspace.zoo.fit_inr import fit_inrs


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fit_rate(data, n, steps, device):
    recipe = get_recipe("dwsnets", steps=steps, early_stop_psnr=None)
    coords, targets = data.coordinates(), data.targets()[:n]
    fit_inrs(coords, targets[: min(n, 8)], get_recipe("dwsnets", steps=3), list(range(min(n, 8))), device=device)
    sync()
    t = time.perf_counter()
    res = fit_inrs(coords, targets, recipe, list(range(n)), device=device)
    sync()
    dt = time.perf_counter() - t
    return n * steps / dt, float(res.psnr.mean())


def dws_rate(spec, batch, device, iters=30):
    torch.manual_seed(0)
    model = create_model("dws", spec, out_features=10).to(device)
    w = Weights.unflatten(spec, torch.randn(batch, spec.num_params)).to(device)
    y = torch.randint(0, 10, (batch,), device=device)
    return training_rate(model, model.parameters(), w, y, iters=iters)


def report(res: dict) -> None:
    """Write the BENCHMARKS.md section (and results/device_check.json) from a run's JSON."""
    f = res["figures"]
    rows = "\n".join(f"| {k} | {v:,.0f} |" for k, v in f.items())
    checks = "\n".join(f"| {k} | {v:.2g} |" for k, v in res["checks"].items())
    md = f"""
Run on the lent GPU machine (16 CPU cores + one H100), not on the 2-core development machine.

Fit: DWSNets recipe without early stopping, 28×28 MNIST-subset images, all networks in one batch
(on the CPU the fitter's zoo builder would chunk batches to ~330 networks; this measures one
unchunked call). DWS: default `dws` model, AdamW step on random SIREN weights.

| figure | value |
|---|---:|
{rows}

CUDA vs CPU agreement (max abs difference, float32):

| check | value |
|---|---:|
{checks}
"""
    write_result("device_check", res["environment"], {**f, **res["checks"]}, md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--report", help="only write the BENCHMARKS.md section from this saved JSON")
    args = ap.parse_args()
    if args.report:
        report(json.loads(Path(args.report).read_text()))
        return
    env = environment()
    cuda = torch.cuda.is_available()
    res = {"environment": env, "cuda": cuda, "checks": {}, "figures": {}}
    dev = "cuda" if cuda else "cpu"
    if cuda:
        for name, spec in SPECS.items():
            w = Weights.from_modules([spec.build_module(seed=s) for s in range(3)])
            x = example_input(spec, generator=torch.Generator().manual_seed(0))
            err = float((forward(w.to(dev), x.to(dev)).cpu() - forward(w, x)).abs().max())
            res["checks"][f"forward_{name}_max_abs_err"] = err
        data = load_mnist_subset(limit=8)
        r = get_recipe("dwsnets", steps=20, early_stop_psnr=None)
        a = fit_inrs(data.coordinates(), data.targets()[:4], r, [0, 1, 2, 3], device="cpu")
        b = fit_inrs(data.coordinates(), data.targets()[:4], r, [0, 1, 2, 3], device=dev)
        res["checks"]["fit_cpu_vs_cuda_max_abs_err"] = max(float((x - y.cpu()).abs().max()) for x, y in zip(a.weights.tensors(), b.weights.tensors()))
    data = load_mnist_subset()
    for device in (["cpu", "cuda"] if cuda else ["cpu"]):
        for n in ([64, 1024] if device == "cpu" else [64, 1024, 5000]):
            steps = 50 if device == "cpu" else 200
            rate, psnr = fit_rate(data, n, steps, device)
            res["figures"][f"fit_{device}_n{n}_inr_steps_per_s"] = rate
            print(device, n, f"{rate:,.0f} INR-steps/s", flush=True)
        for batch in (32, 512):
            rate = dws_rate(SPECS["siren"].__class__.siren(2, [32, 32], 1), batch, device)
            res["figures"][f"dws_{device}_batch{batch}_examples_per_s"] = rate
            print(device, "dws batch", batch, f"{rate:,.0f} ex/s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
