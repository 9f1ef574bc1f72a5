"""INR classification: test accuracy (mean ± std over seeds), training throughput and peak
memory for registry models on an INR zoo, side by side in one run.

    python benchmarks/classify_inrs.py --zoo zoos/mnist-dwsnets --models mlp,dws --seeds 0,1,2 \\
        [--epochs 40] [--batch-size 32] [--augment dws=sign] [--model-config "dws:hidden_channels=32,num_layers=4"] \\
        [--compile] [--max-minutes M] [--section NAME] [--report JSON]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import (
    ROOT,
    config_then,
    describe_config,
    effective_config,
    environment,
    recorded_configs,
    report_from,
    with_config,
    write_result,
)

from weightspace.core.transforms import parse_augmentation
from weightspace.models.registry import create_model
from weightspace.models.registry import parse_model_config as parse_config
from weightspace.tasks.classify import classify_zoo
from weightspace.train import TrainConfig
from weightspace.zoo.store import Zoo


def _model_of(key: str) -> str:
    """A row key's model: ``"dws + sign (12)"`` -> ``"dws"`` (merges number repeated keys)."""
    return re.sub(r" \(\d+\)$", "", key).split(" + ")[0]


def row_config(f: dict, key: str) -> dict:
    """The options a row's model ran with (results before `effective_config` was recorded:
    the defaults of their day)."""
    name, st = _model_of(key), f["models"][key].get("settings")
    if st is not None:  # a merged row
        return st["model_config"] if st.get("effective") else config_then(name, st["model_config"])
    if "effective_config" in f:
        return f["effective_config"].get(name, {})
    return config_then(name, (f.get("model_config") or {}).get(name))


def markdown(f: dict) -> str:
    where = "Run on the lent GPU machine (not the 2-core development machine). " if f["device"] != "cpu" else ""
    rows = []
    steps = f.get("step_throughput")  # batch-32 step rates and memory, each model in a fresh process
    # rows merged from several processes (--merge) carry their own schedule; older results do not
    per_row = any("settings" in r for r in f["models"].values())
    for name, r in f["models"].items():
        accs = np.array(r["test_acc"]) * 100
        extra = ""
        if per_row:
            st = r.get("settings", {})
            cfg = describe_config(row_config(f, name))
            # without a time guard every epoch asked ran (results older than the epochs_run field)
            ran = r.get("epochs_run") or ([] if st.get("max_minutes") else [st.get("epochs", f["epochs"])] * len(r["test_acc"]))
            extra = (f" {cfg} | {'yes' if st.get('compile') else 'no'} | {'/'.join(map(str, ran)) or '?'} of {st.get('epochs', f['epochs'])} | "
                     f"{st.get('batch_size', f['batch_size'])} | {st.get('lr', f['lr'])} | {st.get('weight_decay', f.get('weight_decay'))} |")
        label = _model_of(name) if per_row else with_config(_model_of(name), row_config(f, name))
        rows.append(
            f"| {label} | {r['augment'] or '–'} |{extra} {accs.mean():.2f} ± {accs.std():.2f} | {r['params']:,} | "
            f"{np.mean(r['examples_per_s']):,.0f} | {np.mean(r['train_s']):.0f} s | {r['peak_memory_mb']:.0f} MB |"
            + (_step_cells(f, _model_of(name)) if steps else "")
        )
    if per_row:
        head = ("| model | augmentation | model config | torch.compile | epochs run | batch | lr | weight decay | test accuracy % (mean ± std) | "
                "parameters | examples/s | train time per seed | peak memory |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        setup = (f"Zoo `{f['zoo']}` ({f['networks']}), device {f['device']}, seeds {f['seeds']}, AdamW with a cosine schedule over the "
                 "epochs asked; best epoch by validation accuracy. "
                 "Throughput counts training examples per second of training wall time (validation included).")
    else:
        head = ("| model | augmentation | test accuracy % (mean ± std) | parameters | examples/s | train time per seed | peak memory |\n"
                "|---|---|---:|---:|---:|---:|---:|")
        setup = (f"Zoo `{f['zoo']}` ({f['networks']}), device {f['device']}, {f['epochs']} epochs at batch {f['batch_size']},\n"
                 f"lr {f['lr']}, weight decay {f.get('weight_decay', 1e-4)}, seeds {f['seeds']}; best epoch by validation accuracy. "
                 "Throughput counts training\nexamples per second of training wall time (validation included).")
    if steps:
        head = head.replace(" peak memory |\n", " peak memory | step examples/s at batch 32 | ratio to mlp | step peak RSS |\n")
        head += "---:|---:|---:|"
        setup += (f" The last three columns: {steps['_meta']['steps']} timed steps (forward, backward, AdamW) at batch "
                  f"{steps['_meta']['batch']}, {steps['_meta']['threads']} threads, without augmentation, each model in "
                  f"fresh processes of this run after the training rows ({steps['_meta'].get('repeats', 1)} per model, "
                  "interleaved over the models; median rate, largest peak resident memory); the ratio is to the flat `mlp` "
                  "measured the same way (the issue's reference: the original DWSNets code ~47 examples/s, a flat MLP "
                  "~16,000/s, ratio ~0.003).")
    return where + "\n" + setup + "\n\n" + head + "\n" + "\n".join(rows) + (f"\n\n{f['note']}" if f.get("note") else "")


def _step_cells(f: dict, model: str) -> str:
    steps = f["step_throughput"]
    if model not in steps:
        return " – | – | – |"
    r, base = steps[model], steps.get("mlp")
    ratio = f"{r['examples_per_s'] / base['examples_per_s']:.3f}" if base else "–"
    return f" {r['examples_per_s']:,.0f} | {ratio} | {r['peak_rss_mb']:,.0f} MB |"


def merge(paths: list[str], section: str, note: str | None) -> None:
    """One table from the result files of several processes (e.g. run side by side on one GPU)
    over the same zoo; each row keeps the schedule it ran with."""
    import json

    results = [json.loads(Path(p).read_text()) for p in paths]
    figures = dict(results[0]["figures"])
    figures["models"] = {}
    for res in results:
        f = res["figures"]
        if (f["zoo"], f["device"]) != (figures["zoo"], figures["device"]):
            raise SystemExit(f"cannot merge results of different zoos or devices: {f['zoo']} on {f['device']}")
        for key, r in f["models"].items():
            if "settings" in r:  # a row of an earlier merge keeps its own schedule
                settings = dict(r["settings"])
            else:
                settings = {k: f.get(k) for k in ("epochs", "batch_size", "lr", "compile", "max_minutes")}
                settings["weight_decay"] = f.get("weight_decay", 1e-4)  # results written before the flag: the default then
            settings["model_config"], settings["effective"] = row_config(f, key), True
            figures["models"][key if key not in figures["models"] else f"{key} ({len(figures['models'])})"] = {**r, "settings": settings}
    figures["compile"] = all(r["figures"].get("compile") for r in results)
    figures["seeds"] = ",".join(dict.fromkeys(x for r in results for x in str(r["figures"]["seeds"]).split(",")))
    figures["merged_from"] = [r["environment"]["command"] for r in results]
    if note:
        figures["note"] = note
    env = {**results[0]["environment"], "command": " ; ".join(figures["merged_from"])}
    env["load_average_at_end"] = results[-1]["environment"].get("load_average_at_end", env["load_average_at_start"])
    write_result(section, env, figures, markdown(figures))
    print(markdown(figures))


def throughput(zoo_path: str, name: str, batch: int, steps: int = 30, config: dict | None = None) -> dict:
    """Training examples/s (forward, backward, AdamW step) at ``batch`` on the CPU, 2 threads, and
    this process's peak resident memory. Run in a fresh subprocess per model (`throughput_in_child`)
    so the peaks are its own."""
    torch.set_num_threads(2)
    zoo = Zoo.open(zoo_path)
    w, table = zoo.load("train")
    y = torch.as_tensor(table["label"].to_numpy().copy())
    torch.manual_seed(0)
    model = create_model(name, zoo.spec, out_features=int(y.max()) + 1, **(config or {}))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    for k in range(steps + 5):
        if k == 5:
            t = time.perf_counter()
        idx = torch.randint(0, len(w), (batch,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(w[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"examples_per_s": batch * steps / (time.perf_counter() - t), "peak_rss_mb": _own_peak_rss_mb()}


def _own_peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``ru_maxrss`` carries the peak of the process
    that forked it across ``exec`` (a child of a 2 GB benchmark reports 2 GB); ``VmHWM`` belongs
    to the process's own address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="zoos/mnist-dwsnets")
    ap.add_argument("--models", default="mlp,statnn,transformer,probe,nfn_np,nfn_hnp,dws,graph")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    ap.add_argument(
        "--augment",
        default="mlp=permutation+sign,transformer=permutation+sign,statnn=sign,dws=sign,nfn_np=sign,nfn_hnp=sign,graph=sign",
        help="model=kind[+kind],... (permutation, sign, scale, affine, noise, dropout: see parse_augmentation); also run without",
    )
    ap.add_argument("--no-plain", action="store_true", help="only the augmented runs")
    ap.add_argument("--model-config", default="", help='per-model settings: "dws:hidden_channels=32,num_layers=4;probe:..."')
    ap.add_argument("--compile", action="store_true", help="torch.compile each model's training steps")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop each training after this wall time (best epoch so far kept)")
    ap.add_argument("--section", default="classify_inrs", help="result name: benchmarks/results/NAME.json and its BENCHMARKS.md section")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--report", default=None)
    ap.add_argument("--merge", nargs="+", default=None, help="result JSONs to merge into one table (section --section)")
    ap.add_argument("--note", default=None, help="a paragraph under the merged table")
    ap.add_argument("--throughput", action="store_true", help="only measure CPU training throughput and memory per model")
    ap.add_argument("--step-throughput", action="store_true",
                    help="after training, also measure each model's batch-32 step throughput and memory (CPU), for the same table")
    args = ap.parse_args()
    if args.report:
        report_from(args.report, args.section, markdown)
        return
    if args.merge:
        return merge(args.merge, args.section, args.note)
    if args.throughput:
        return throughput_table(args)
    env = environment()
    zoo = Zoo.open(args.zoo)
    augment = dict(a.split("=") for a in args.augment.split(",") if a)
    model_config = parse_model_config(args.model_config)
    cuda = torch.cuda.is_available()
    figures = {
        "zoo": args.zoo,
        "networks": zoo.info()["splits"],
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "seeds": args.seeds,
        "compile": args.compile,
        "max_minutes": args.max_minutes,
        "model_config": model_config,
        # what each model ran with, defaults that have changed included
        "effective_config": {name: effective_config(name, model_config.get(name)) for name in args.models.split(",")},
        "models": {},
    }
    out = args.results_dir
    for name in args.models.split(","):
        variants = ([] if args.no_plain else [None]) + ([tuple(augment[name].split("+"))] if name in augment else [])
        for kinds in variants:
            key = name + (f" + {'+'.join(kinds)}" if kinds else "")
            r = {"augment": "+".join(kinds) if kinds else None, "test_acc": [], "val_acc": [], "examples_per_s": [], "train_s": [],
                 "epochs_run": []}
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            for seed in map(int, args.seeds.split(",")):
                t = time.perf_counter()
                res = classify_zoo(
                    zoo,
                    name,
                    config=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                       weight_decay=args.weight_decay, seed=seed, progress=False,
                                       compile=args.compile, max_minutes=args.max_minutes),
                    model_config=model_config.get(name),
                    augment=parse_augmentation("+".join(kinds)) if kinds else None,
                )
                r["test_acc"].append(res.test_acc)
                r["val_acc"].append(res.val_acc)
                r["examples_per_s"].append(res.examples_per_second)
                r["train_s"].append(res.train_seconds)
                r["epochs_run"].append(res.epochs_run)
                r["params"] = res.num_params
                print(f"{key} seed {seed}: test {100 * res.test_acc:.2f}% ({res.epochs_run} epochs, "
                      f"{time.perf_counter() - t:.0f}s)", flush=True)
            # CPU: the process's peak resident set so far (covers everything run before it too)
            r["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            figures["models"][key] = r
            if out:  # partial results survive a run cut short
                write_result(args.section, env, figures, markdown(figures), out)
    if args.step_throughput and not cuda:
        # the throughput figure (batch 32, 2 threads), in this same run, after the training rows
        # this VM's speed drifts: three fresh processes per model, interleaved over the models, medians kept
        meta = {"batch": 32, "threads": 2, "steps": 100, "repeats": 3}  # `throughput` runs on 2 threads
        steps = {"_meta": meta}
        names = list(dict.fromkeys(["mlp", *args.models.split(",")]))
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(meta["repeats"]):
            for name in names:
                runs[name].append(throughput_in_child(args.zoo, name, meta["batch"], model_config.get(name), meta["steps"]))
        for name, rs in runs.items():
            steps[name] = {"examples_per_s": float(np.median([r["examples_per_s"] for r in rs])),
                           "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                           "examples_per_s_each": [r["examples_per_s"] for r in rs]}
            print(f"{name}: step throughput at batch 32 {steps[name]}", flush=True)
        figures["step_throughput"] = steps
    print(markdown(figures))
    write_result(args.section, env, figures, markdown(figures), args.results_dir)


def parse_model_config(text: str) -> dict[str, dict]:
    """``"dws:hidden_channels=32,num_layers=4;probe:num_probes=64"`` -> keyword arguments per model."""
    out: dict[str, dict] = {}
    for part in filter(None, text.split(";")):
        name, _, items = part.partition(":")
        if not items:
            raise SystemExit(f"--model-config: expected MODEL:key=value,..., got {part!r}")
        out[name.strip()] = parse_config(items)
    return out


def throughput_markdown(f: dict) -> str:
    configs = recorded_configs(f, f["models"])
    rows = "\n".join(
        f"| {with_config(m, configs.get(m))} | {r['examples_per_s']:,.0f} | {r['examples_per_s'] / f['models']['mlp']['examples_per_s']:.3f} | {r['peak_rss_mb']:,.0f} MB |"
        for m, r in f["models"].items()
    )
    return f"""
Training throughput on this machine's CPU: forward + backward + AdamW at batch {f['batch']}, 2 threads,
{f['steps']} timed steps after 5 warm-up steps, on `{f['zoo']}` (SIREN 2→32→32→1); each model in a fresh
process, whose peak resident memory is reported. Reference figures measured on this machine kind
(from the issue): the original DWSNets code trains its MNIST-INR configuration at about 47
examples/s at batch 32 on 2 threads, a flat MLP at about 16,000/s.

| model | examples/s | ratio to flat MLP | peak RSS |
|---|---:|---:|---:|
{rows}
"""


def throughput_in_child(zoo: str, name: str, batch: int, config: dict | None = None, steps: int = 30) -> dict:
    """`throughput` in a fresh Python process (its own peak memory)."""
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); from classify_inrs import throughput; "
            f"print(json.dumps(throughput({zoo!r}, {name!r}, {batch}, {steps}, config={config!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(ROOT))
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput_table(args) -> None:
    env = environment()
    figures = {"zoo": args.zoo, "batch": args.batch_size, "steps": 30, "models": {},
               "effective_config": {m: effective_config(m, None) for m in args.models.split(",")}}
    for name in args.models.split(","):
        figures["models"][name] = throughput_in_child(args.zoo, name, args.batch_size)
        print(name, figures["models"][name], flush=True)
    print(throughput_markdown(figures))
    write_result("classify_throughput", env, figures, throughput_markdown(figures))


if __name__ == "__main__":
    main()
