"""Memory of weight-space models on wide INRs: peak memory of one training step
(forward + backward) at hidden widths 32 to 512, and bytes per input weight.

    python benchmarks/weight_memory.py [--widths 32,128,256,512] [--batch 8]

Each (model, width) runs in a fresh subprocess on a batch of random SIREN 2→w→w→1 weights;
the figure is the rise of the process's peak resident memory over its resident memory just
before the step (model and input already built), so it counts the step's activations and
gradients, not the interpreter. Memory proportional to the weights shows as a flat
"bytes per input weight" column across widths.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch
from _common import effective_config, environment, recorded_configs, with_config, write_result

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.registry import create_model, list_models


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(name: str, width: int, batch: int) -> dict:
    torch.manual_seed(0)
    spec = NetworkSpec.siren(2, (width, width), 1, omega=30.0)
    w = _random(spec, batch)
    model = create_model(name, spec, out_features=10)
    y = torch.randint(0, 10, (batch,))
    before = rss_mb()
    out = model(w)
    torch.nn.functional.cross_entropy(out, y).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": name, "width": width, "batch": batch, "input_weights": spec.num_params * batch,
            "params": sum(p.numel() for p in model.parameters()), "step_mb": max(peak - before, 0.0)}


def _random(spec: NetworkSpec, batch: int) -> Weights:
    ws = tuple(torch.randn(batch, 1, *layer.weight_shape) * 0.1 for layer in spec.layers)
    bs = tuple(torch.randn(batch, 1, layer.out_features) * 0.1 for layer in spec.layers)
    return Weights(spec, ws, bs)


def markdown(f: dict) -> str:
    widths = f["widths"]
    head = "| model | " + " | ".join(f"w = {w}: step MB (bytes/weight)" for w in widths) + " |"
    rows, configs = [], recorded_configs(f, f["models"])
    for name in f["models"]:
        cells = []
        for w in widths:
            r = f["runs"].get(f"{name}/{w}")
            if r is None or "error" in r:
                cells.append(f"failed: {r['error'][:60] if r else 'not run'}")
            else:
                cells.append(f"{r['step_mb']:,.0f} ({r['step_mb'] * 2**20 / r['input_weights']:,.0f})")
        rows.append(f"| {with_config(name, configs.get(name))} | " + " | ".join(cells) + " |")
    return f"""
Peak memory of one training step (forward + backward, cross-entropy on 10 classes) on a batch of
{f['batch']} random SIREN 2→w→w→1 networks, CPU, default model configurations; in brackets the
step's bytes per input weight (constant across widths = memory proportional to the weights).
Input weights per network: {", ".join(f"w = {w}: {f['weights_per_net'][str(w)]:,}" for w in widths)}.

{head}
|---|{"---:|" * len(widths)}
""" + "\n".join(rows) + _summary(f)


def _summary(f: dict) -> str:
    w = max(f["widths"])
    ok = {r["model"]: r["step_mb"] for k, r in f["runs"].items() if k.endswith(f"/{w}") and "error" not in r}
    failed = [m for m in f["models"] if m not in ok]
    heavy = max(ok, key=ok.get) if ok else None
    text = f"\n\nAt w = {w}: {len(ok)} of {len(f['models'])} models trained a step"
    if heavy:
        text += f"; the heaviest, `{heavy}`, needed {ok[heavy] / 1024:.1f} GB for {f['batch']} networks"
    if failed:
        text += f"; failed: {', '.join(failed)}"
    return text + (". The reference implementations were not run here (not installable offline), so no "
                   "side-by-side figure for them.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="32,128,256,512")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--models", default=",".join(list_models("invariant")))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "model/width": child process
    args = ap.parse_args()
    if args.one:
        name, width = args.one.split("/")
        print(json.dumps(one(name, int(width), args.batch)))
        return
    env = environment()
    widths = [int(w) for w in args.widths.split(",")]
    models = args.models.split(",")
    runs = {}
    for name in models:
        for w in widths:
            proc = subprocess.run([sys.executable, __file__, "--one", f"{name}/{w}", "--batch", str(args.batch)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                runs[f"{name}/{w}"] = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                runs[f"{name}/{w}"] = {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
            print(name, w, runs[f"{name}/{w}"], flush=True)
    figures = {"widths": widths, "batch": args.batch, "models": models, "runs": runs,
               "effective_config": {m: effective_config(m, None) for m in models},
               "weights_per_net": {str(w): NetworkSpec.siren(2, (w, w), 1, omega=30.0).num_params for w in widths}}
    print(markdown(figures))
    write_result("weight_memory", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
