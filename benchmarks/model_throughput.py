"""Training-step throughput of every weight-space model in its published configuration (the
presets), beside the flat MLP and the library defaults, in one run.

    python benchmarks/model_throughput.py [--batches 32,512] [--rounds 2] [--steps 10] [--budget 8] [--threads 2]

On the MNIST-INR spec (SIREN 2->32->32->1), random standardised weights and labels: forward,
cross-entropy, backward and the preset's optimiser step, timed after warm-up; rounds interleave
the models so that drifts in machine load hit all alike; the median round is reported. All
models share batch and threads here, so their ratios compare cost per example at equal batch;
they differ in size (the parameter column), which is the published configurations' own doing.
The like-with-like ratio against an original implementation (same model, same size) is
`benchmarks/dwsnets_reference.py`.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import budgeted_rate, environment, write_result

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.registry import create_model, get_preset, list_presets
from weightspace.tasks.classify import recipe

SPEC = NetworkSpec.siren(2, [32, 32], 1)
BASELINES = ["mlp", "statnn", "transformer", "probe", "dws", "dws_light"]


def one_round(name: str, batch: int, steps: int, budget: float, g: torch.Generator) -> tuple[float, int]:
    """(examples/s, steps timed): one warm-up step (timed, to size the measurement), then up to
    ``steps`` steps within about ``budget`` seconds (at least one)."""
    config, _ = recipe(name)
    torch.manual_seed(0)
    model = create_model(name, SPEC, out_features=10).train()
    make = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    opt = make(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.amsgrad)
    w = Weights.unflatten(SPEC, torch.randn(batch, 1, SPEC.num_params, generator=g))
    y = torch.randint(0, 10, (batch,), generator=g)
    return budgeted_rate(model, w, y, opt, steps=steps, budget=budget)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="32,512")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement at most")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds per measurement (at least one step is timed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="NAME@BATCH pairs not to measure, e.g. 'ng-t-mnist-inr@512' (recorded as skipped)")
    ap.add_argument("--skip-reason", default="", help="why the --skip pairs were skipped (shown in the table)")
    ap.add_argument("--models", default=None, help="comma-separated names (default: every preset and the baselines)")
    ap.add_argument("--name", default="model_throughput",
                    help="result name: a subset measured later gets its own section instead of replacing the full table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    env = environment()
    names = args.models.split(",") if args.models else list_presets() + BASELINES
    g = torch.Generator().manual_seed(0)
    rows = {}
    for name in names:
        model = create_model(name, SPEC, out_features=10)
        rows[name] = {"params": sum(p.numel() for p in model.parameters()), "rates": {}}
    skip = {tuple(p.rsplit("@", 1)) for p in args.skip.split(",") if p}
    for batch in map(int, args.batches.split(",")):
        rounds: dict[str, list[float]] = {n: [] for n in names}
        timed: dict[str, list[int]] = {n: [] for n in names}
        for _ in range(args.rounds):
            for name in names:
                if (name, str(batch)) in skip:
                    continue
                rate, n = one_round(name, batch, args.steps, args.budget, g)
                rounds[name].append(rate)
                timed[name].append(n)
                print(f"batch {batch} {name}: {rate:,.1f} examples/s ({n} steps)", flush=True)
        for name in names:
            if rounds[name]:
                rows[name]["rates"][str(batch)] = {"median": statistics.median(rounds[name]), "rounds": rounds[name],
                                                   "steps": timed[name]}
            else:
                rows[name]["rates"][str(batch)] = {"skipped": args.skip_reason or "skipped"}
    figures = {"skip_reason": args.skip_reason, "rows": rows, "batches": args.batches, "rounds": args.rounds, "steps": args.steps, "budget": args.budget,
               "threads": args.threads}
    write_result(args.name, env, figures, markdown(figures))
    print(markdown(figures))


def markdown(f: dict) -> str:
    batches = f["batches"].split(",")
    mlp = f["rows"].get("mlp")
    head = " | ".join(f"batch {b} examples/s | ×mlp" for b in batches)
    lines = [f"| model | preset of | parameters | {head} |", "|---|---|---:|" + "---:|---:|" * len(batches)]
    for name, r in f["rows"].items():
        try:
            of = get_preset(name).model
        except ValueError:
            of = "–"
        cells = []
        for b in batches:
            if "skipped" in r["rates"][b]:
                cells.append("not measured¹ | –")
                continue
            rate = r["rates"][b]["median"]
            ratio = rate / mlp["rates"][b]["median"] if mlp else float("nan")
            cells.append(f"{rate:,.1f} | {ratio:.4f}")
        lines.append(f"| {name} | {of} | {r['params']:,} | {' | '.join(cells)} |")
    return (f"MNIST-INR spec, random weights, {f['threads']} threads, median of {f['rounds']} interleaved rounds, each of "
            f"up to {f['steps']} steps in about {f['budget']:g} s (at least one) after one warm-up step; each model with its "
            "preset's optimiser. Every row at equal batch "
            "and threads; sizes differ (published configurations). ×mlp: examples/s relative to the flat MLP.\n\n"
            + "\n".join(lines)
            + (f"\n\n¹ {f['skip_reason']}" if f.get("skip_reason") else ""))


if __name__ == "__main__":
    main()
