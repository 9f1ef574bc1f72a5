"""weightspace's `dws` against the DWSNets reference code, at equal configuration.

    python benchmarks/dwsnets_reference.py --dwsnets-repo PATH [--rounds 3] [--steps 20] [--budget 10]

PATH is a checkout of AvivNavon/DWSNets (its ``nn`` package is imported from there; nothing of
it ships with weightspace). For the MNIST-INR configuration (5 layers x 32 channels, max
summaries, SAB or DeepSets set layers, batch norm), the script

1. builds both models, copies the reference's parameters into ours
   (`weightspace.models.dws_reference.load_dwsnets_state_dict`) and reports the largest logit
   difference on the same random weights in float64, in training and evaluation mode;
2. times training steps (forward, cross-entropy, backward, AdamW) of both side by side in one
   process — same model, same batch, same threads, rounds interleaved — at batch 32 and 512,
   and reports the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from _common import budgeted_rate, environment, write_result

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.dws_reference import load_dwsnets_state_dict
from weightspace.models.registry import create_model

SPEC = NetworkSpec.siren(2, [32, 32], 1)  # the DWSNets MNIST INR


def reference_model(repo: Path, set_layer: str):
    sys.path.insert(0, str(repo))
    try:
        from nn.models import DWSModelForClassification  # the reference's own package name
    finally:
        sys.path.pop(0)
    shapes = tuple((layer.in_features, layer.out_features) for layer in SPEC.layers)
    biases = tuple((layer.out_features,) for layer in SPEC.layers)
    return DWSModelForClassification(shapes, biases, input_features=1, hidden_dim=32, n_hidden=4, reduction="max",
                                     n_fc_layers=1, set_layer=set_layer, n_out_fc=1, dropout_rate=0.0, bn=True)


def reference_input(w: Weights) -> tuple:
    """Our [B, 1, out, in] / [B, 1, out] -> the reference's (B, in, out, 1) / (B, out, 1)."""
    return (tuple(t[:, 0].transpose(1, 2).unsqueeze(-1) for t in w.weights),
            tuple(b[:, 0].unsqueeze(-1) for b in w.biases))


def step_rate(model, x, y, steps: int, budget: float) -> float:
    """Examples/s of training steps with AdamW (amsgrad), as the reference trains."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, amsgrad=True)
    return budgeted_rate(model, x, y, opt, steps=steps, budget=budget)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dwsnets-repo", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement at most")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per measurement (at least one step)")
    ap.add_argument("--batches", default="32,512")
    args = ap.parse_args()
    if not (args.dwsnets_repo / "nn" / "models.py").exists():
        ap.error(f"{args.dwsnets_repo} is not a DWSNets checkout (no nn/models.py)")
    env = environment()
    g = torch.Generator().manual_seed(0)
    equality, speed = {}, {}
    for set_layer in ("sab", "ds"):
        torch.manual_seed(0)
        ref = reference_model(args.dwsnets_repo, set_layer)
        ours = create_model("dwsnets-mnist-inr", SPEC, out_features=10, set_layer=set_layer)
        load_dwsnets_state_dict(ours, ref.state_dict())
        ref64, ours64 = ref.double(), ours.double()
        w = Weights.unflatten(SPEC, torch.randn(64, 1, SPEC.num_params, generator=g, dtype=torch.float64))
        for mode in (True, False):
            ref64.train(mode), ours64.train(mode)
            with torch.no_grad():
                a, b = ref64(reference_input(w)), ours64(w)
            equality[f"{set_layer}-{'train' if mode else 'eval'}"] = {
                "max_abs_diff": float((a - b).abs().max()), "max_abs_logit": float(a.abs().max())}
        ref, ours = ref.float(), ours.float()
        params = sum(p.numel() for p in ours.parameters())
        assert params == sum(p.numel() for p in ref.parameters())
        for batch in map(int, args.batches.split(",")):
            w = Weights.unflatten(SPEC, torch.randn(batch, 1, SPEC.num_params, generator=g))
            y = torch.randint(0, 10, (batch,), generator=g)
            rates: dict[str, list[float]] = {"reference": [], "weightspace": []}
            for _ in range(args.rounds):  # interleaved, so drifts in machine load hit both
                rates["reference"].append(step_rate(ref, reference_input(w), y, args.steps, args.budget))
                rates["weightspace"].append(step_rate(ours, w, y, args.steps, args.budget))
            med = {k: statistics.median(v) for k, v in rates.items()}
            speed[f"{set_layer}-{batch}"] = {"params": params, "examples_per_s": med, "rounds": rates,
                                             "ratio": med["weightspace"] / med["reference"]}
            print(f"{set_layer} batch {batch}: reference {med['reference']:.0f}/s, weightspace {med['weightspace']:.0f}/s")
    figures = {"equality": equality, "speed": speed, "rounds": args.rounds, "steps": args.steps, "budget": args.budget}
    write_result("dwsnets_reference", env, figures, markdown(figures))
    print(markdown(figures))


def markdown(f: dict) -> str:
    rows = "\n".join(f"| {k} | {v['max_abs_diff']:.1e} | {v['max_abs_logit']:.3f} |" for k, v in f["equality"].items())
    speed = "\n".join(
        f"| {k.split('-')[0]} | {k.split('-')[1]} | {v['params']:,} | {v['examples_per_s']['reference']:,.0f} | "
        f"{v['examples_per_s']['weightspace']:,.0f} | {v['ratio']:.2f}× |" for k, v in f["speed"].items())
    return f"""
The DWSNets MNIST-INR classifier (5 layers × 32 channels, max summaries, batch norm; SAB as published,
DeepSets as the reference's other option), built by the reference code and by weightspace, with the
reference's parameters copied into ours (`load_dwsnets_state_dict`). Same random SIREN weights, float64:

| set layer, mode | largest logit difference | largest logit |
|---|---:|---:|
{rows}

Training steps (forward, cross-entropy, backward, AdamW amsgrad) side by side in one process at equal
configuration (the same model, batch and threads; rounds interleaved; median of {f['rounds']} rounds, each up to
{f['steps']} steps in about {f.get('budget', 0):g} s after one warm-up step), float32:

| set layer | batch | parameters | reference examples/s | weightspace examples/s | ratio |
|---|---:|---:|---:|---:|---:|
{speed}
"""


if __name__ == "__main__":
    main()
