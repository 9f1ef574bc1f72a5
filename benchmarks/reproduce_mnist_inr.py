"""Reproduction table on the full MNIST-INR zoo (DWSNets recipe, 55k / 5k / 10k): every
weight-space model in its published configuration, beside the published figure.

One command per row and seed (long runs: in the background, one at a time, with a time guard):

    python benchmarks/reproduce_mnist_inr.py --row dws --seed 0 [--epochs N] [--max-minutes M]
    python benchmarks/reproduce_mnist_inr.py --report          # rebuild the section from all runs

Each run writes ``benchmarks/results/reproduce_mnist_inr/ROW-sSEED.json`` (its command, the
recipe it ran, epochs run of those planned, load average, history, test accuracy), and the
section ``reproduce_mnist_inr`` of BENCHMARKS.md is rebuilt from every run file. A row whose
schedule was cut (``--epochs`` or the time guard) says so: it is not a reproduction of the
published schedule, only of the configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, environment, write_result

from weightspace.core.transforms import parse_augmentation
from weightspace.models.registry import resolve
from weightspace.tasks.classify import classify_zoo, recipe
from weightspace.zoo.store import Zoo

RUNS = ROOT / "benchmarks" / "results" / "reproduce_mnist_inr"

# The DWSNets MNIST trainer (experiments/mnist/trainer.py): the recipe behind its baselines' figures
DWSNETS_TRAINER = dict(optimizer="adamw", amsgrad=True, lr=5e-3, weight_decay=5e-4, batch_size=512, epochs=100,
                       schedule="constant", grad_clip=None)


@dataclass(frozen=True)
class Row:
    model: str  # registry model or preset
    published: float | None  # test accuracy %, MNIST-INR
    source: str  # where the published figure comes from
    train: dict = field(default_factory=dict)  # recipe for a row without a preset
    augment: str | None = None  # None: the preset's


ROWS: dict[str, Row] = {
    "mlp": Row("mlp", 17.6, "DWSNets Table 1 (MLP on flat weights), trained by the DWSNets trainer", DWSNETS_TRAINER, ""),
    "statnn": Row("statnn", None, "no MNIST-INR figure published; DWSNets trainer recipe", DWSNETS_TRAINER, ""),
    "transformer": Row("transformer", 26.6, "DWSNets Table 1 (transformer on weights)", DWSNETS_TRAINER, ""),
    "nfn_np": Row("nfn-np-mnist-inr", None, "preset (see `weightspace models`)"),
    "nfn_hnp": Row("nfn-hnp-mnist-inr", 79.1, "preset; figure as transcribed in ANCHORS.md"),
    "dws": Row("dwsnets-mnist-inr", 85.7, "DWSNets Table 1; preset = the reference trainer's defaults"),
    "dws_default": Row("dws", 85.7, "dws with its library defaults on the DWSNets trainer recipe", DWSNETS_TRAINER, "affine"),
    "dws_light": Row("dws_light", None, "the pre-2026-12-07 layer (35 of 75 basis dimensions); DWSNets trainer recipe",
                     DWSNETS_TRAINER, "sign"),
    "graph": Row("ng-gnn-mnist-inr", 91.4, "Kofinas et al. ICLR 2024 (NG-GNN); preset"),
    "ngt": Row("ng-t-mnist-inr", None, "Kofinas et al. ICLR 2024 (NG-T); preset"),
    "scalegmn": Row("scalegmn-mnist-inr", 96.6, "ScaleGMN-B (NeurIPS 2024), 96.57 ± 0.10; preset"),
    "probe": Row("probe", None, "no published probe-only figure (NG-GNN with probe features: 97.3)",
                 dict(lr=2e-3, weight_decay=1e-4, batch_size=256, epochs=60), ""),
}


def _published(row: Row) -> float | None:
    _, _, preset = resolve(row.model)
    if preset and preset.published.get("mnist-inr") is not None:
        return preset.published["mnist-inr"]
    return row.published


def run(args) -> None:
    row = ROWS[args.row]
    env = environment()
    zoo = Zoo.open(args.zoo)
    given = dict(row.train)
    given.update({k: v for k, v in dict(epochs=args.epochs, max_minutes=args.max_minutes).items() if v is not None})
    config, aug = recipe(row.model, augment=row.augment, seed=args.seed, progress=not args.quiet, **given)
    planned = resolve(row.model)[2].train.get("epochs") if resolve(row.model)[2] else row.train.get("epochs")
    load0, t0 = os.getloadavg(), time.perf_counter()
    res = classify_zoo(zoo, row.model, config=config, augment=parse_augmentation(aug))
    wall = time.perf_counter() - t0
    record = {
        "row": args.row, "model": row.model, "seed": args.seed, "command": env["command"], "date": env["date"],
        "device": env["device"], "torch_threads": env["torch_threads"], "zoo": str(args.zoo), "zoo_splits": zoo.info()["splits"],
        "train_config": {k: v for k, v in asdict(config).items() if k not in ("progress",)}, "augment": aug,
        "published_epochs": planned, "epochs_run": res.epochs_run, "test_acc": res.test_acc, "val_acc": res.val_acc,
        "params": res.num_params, "train_s": res.train_seconds, "wall_s": wall, "examples_per_s": res.examples_per_second,
        "load_average_at_start": load0, "load_average_at_end": os.getloadavg(), "history": res.history,
    }
    runs = args.runs_dir or RUNS
    runs.mkdir(parents=True, exist_ok=True)
    out = runs / f"{args.row}-s{args.seed}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"{args.row} seed {args.seed}: test {100 * res.test_acc:.2f}% (val {100 * res.val_acc:.2f}%), "
          f"{res.epochs_run} epochs in {wall / 60:.1f} min -> {out}")
    if args.runs_dir is None:
        report()


def markdown(runs: list[dict]) -> str:
    by_row: dict[str, list[dict]] = {}
    for r in runs:
        by_row.setdefault(r["row"], []).append(r)
    lines = [
        "Full MNIST-INR zoo (`zoos/mnist-dwsnets`, DWSNets recipe, 55k / 5k / 10k), best epoch by validation accuracy. "
        "`epochs` gives epochs run of the published schedule's; a row that ran fewer reproduces the configuration, not "
        "the schedule. Each run's own command is in the last column.",
        "",
        "| row | model / preset | params | recipe | augment | epochs | seeds | test acc % | published % | gap | load (start→end) | command |",
        "|---|---|---:|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for name in ROWS:
        rs = sorted(by_row.get(name, []), key=lambda r: r["seed"])
        if not rs:
            continue
        row = ROWS[name]
        accs = np.array([100 * r["test_acc"] for r in rs])
        pub = _published(row)
        c = rs[0]["train_config"]
        rec = f"{c['optimizer']}{'(amsgrad)' if c.get('amsgrad') else ''} lr {c['lr']:g}, wd {c['weight_decay']:g}, batch {c['batch_size']}, " \
              f"{c['schedule']}{', warm-up ' + str(c['warmup_steps']) if c.get('warmup_steps') else ''}"
        epochs = "/".join(str(r["epochs_run"]) for r in rs) + f" of {rs[0]['published_epochs'] or c['epochs']}"
        acc = " / ".join(f"{a:.2f}" for a in accs) + (f" (mean {accs.mean():.2f})" if len(accs) > 1 else "")
        gap = f"{accs.mean() - pub:+.2f}" if pub is not None else "–"
        load = ", ".join(f"{r['load_average_at_start'][0]:.1f}→{r['load_average_at_end'][0]:.1f}" for r in rs)
        cmds = "<br>".join(f"`{r['command']}`" for r in rs)
        lines.append(f"| {name} | {row.model} | {rs[0]['params']:,} | {rec} | {rs[0]['augment'] or '–'} | {epochs} | "
                     f"{','.join(str(r['seed']) for r in rs)} | {acc} | {pub if pub is not None else '–'} | {gap} | {load} | {cmds} |")
    missing = [n for n in ROWS if n not in by_row]
    if missing:
        lines += ["", "Not run yet, with the time the published schedule would take on this machine at the "
                  "training-step rate that `model_throughput` measured (its batch closest to the recipe's):", ""]
        lines += [f"- {n} ({ROWS[n].model}): {_schedule_estimate(ROWS[n])}" for n in missing]
    return "\n".join(lines)


def _schedule_estimate(row: Row) -> str:
    path = ROOT / "benchmarks" / "results" / "model_throughput.json"
    config, _ = recipe(row.model, **row.train)
    if not path.exists():
        return "no throughput measured"
    rows = json.loads(path.read_text())["figures"]["rows"]
    if row.model not in rows:
        return "no throughput measured"
    rates = rows[row.model]["rates"]
    batch = min(rates, key=lambda b: abs(int(b) - config.batch_size))
    per_s = rates[batch]["median"]
    epoch_h = 55_000 / per_s / 3600
    return (f"{per_s:,.0f} examples/s at batch {batch} -> {epoch_h:.2f} h per epoch of 55k, "
            f"{epoch_h * config.epochs:,.0f} h for {config.epochs} epochs")


def report() -> None:
    runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))]
    env = environment()
    write_result("reproduce_mnist_inr", env, {"runs": [{k: v for k, v in r.items() if k != "history"} for r in runs]},
                 markdown(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--row", choices=list(ROWS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zoo", type=Path, default=Path("zoos/mnist-dwsnets"))
    ap.add_argument("--epochs", type=int, default=None, help="cut the published schedule (stated in the table)")
    ap.add_argument("--max-minutes", type=float, default=None, help="time guard (the best epoch so far is kept)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--runs-dir", type=Path, default=None, help="write the run file here and leave BENCHMARKS.md alone (smoke runs)")
    ap.add_argument("--report", action="store_true", help="only rebuild the BENCHMARKS.md section from the run files")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.report:
        report()
    elif args.row:
        run(args)
    else:
        ap.error("give --row ROW or --report")


if __name__ == "__main__":
    main()
