"""Full-MNIST-zoo classification on a lent GPU machine, as one call that ends by a deadline.

1. Build the 70,000-INR MNIST zoo (`mnist_inr_zoo.py`, DWSNets recipe, 55k / 5k / 10k). While
   the GPU fits INRs, each classifier configuration is compiled once in a side process (filling
   Inductor's on-disk cache for the training processes) and its training rate is measured there.
2. Train every configuration side by side (one `classify_inrs.py` process each, `--compile`),
   each with the epoch count that its measured rate fits into the time left, and
   `--max-minutes` as a guard (the best epoch so far is kept if it trips).
3. Alone on the GPU: the population-trainer race (`zoo_train.py --device cuda`).

    python benchmarks/full_zoo_gpu.py --mnist .data/mnist --out $OUT --deadline 570

Everything lands in ``--out`` (the result JSONs and one log); merge the classification rows
into BENCHMARKS.md afterwards with ``classify_inrs.py --merge``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: smoke runs of this script only
HERE = Path(__file__).resolve().parent
PY = sys.executable

# name: (model, augmentation, model config, batch, lr, weight decay, max epochs). dws follows
# the DWSNets reference trainer (AdamW lr 5e-3, weight decay 5e-4, batch 512, 100 epochs,
# augmentation on) and, by the model's default since 2026-11-28, its batch norm; "dws-sign" leaves out the domain augmentation; "dws-wide" takes the
# reference's 4 hidden layers of 32 channels (about 2.7x the work per step).
CONFIGS = {
    "dws": ("dws", "sign+affine", "", 512, 5e-3, 5e-4, 100),
    "dws-sign": ("dws", "sign", "", 512, 5e-3, 5e-4, 100),
    "dws-wide": ("dws", "sign+affine", "hidden_channels=32,num_layers=4", 512, 5e-3, 5e-4, 100),
    "probe": ("probe", "", "", 256, 2e-3, 1e-4, 60),
}


def log(msg: str, out: Path) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with open(out / "log.txt", "a") as f:
        f.write(line + "\n")


def warm(name: str) -> None:
    """Compile configuration ``name``'s training step at its batch size and print its rate
    (examples/s over 20 steps after compiling; the GPU is shared with the zoo build meanwhile)
    and the seconds the whole warm-up took, compilation included."""
    sys.path.insert(0, str(HERE))
    from _common import training_rate

    from weightspace.core.weights import Weights
    from weightspace.inr.siren import DWSNETS
    from weightspace.models.registry import create_model, parse_model_config

    model_name, _, cfg, batch, lr, wd, _ = CONFIGS[name]
    spec = DWSNETS.spec(2, 1)
    torch.manual_seed(0)
    model = create_model(model_name, spec, out_features=10, **parse_model_config(cfg)).to(DEVICE).train()
    w = Weights.unflatten(spec, torch.randn(batch, spec.num_params)).to(DEVICE)
    y = torch.randint(0, 10, (batch,), device=DEVICE)
    t0 = time.perf_counter()
    rate = training_rate(torch.compile(model, dynamic=False), model.parameters(), w, y, lr=lr, weight_decay=wd, warmup=3, iters=20)
    print(json.dumps({"name": name, "examples_per_s": rate, "total_s": time.perf_counter() - t0}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=".data/mnist")
    ap.add_argument("--zoo", default="/tmp/zoo")
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=570, help="seconds from start by which everything has ended")
    ap.add_argument("--configs", default="dws,dws-sign,probe")
    ap.add_argument("--slowdown", type=float, default=1.6,
                    help="expected slowdown of training against the side-process rate (shared GPU, validation, data)")
    ap.add_argument("--zoo-train-seconds", type=float, default=100, help="kept for step 3 (0: skip it)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads per training process (default: the cores shared out; oversubscribed OpenMP "
                         "threads made three side-by-side processes CPU-bound at ~2.5k examples/s each)")
    ap.add_argument("--limit", type=int, default=None, help="images per split (smoke runs)")
    ap.add_argument("--warm", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.warm:
        return warm(args.warm)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = Path("/tmp/full_zoo_logs")
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    names = args.configs.split(",")

    def spawn(tag: str, cmd: list[str]) -> subprocess.Popen:
        log(f"start {tag}: {' '.join(cmd)}", out)
        return subprocess.Popen(cmd, stdout=open(logs / f"{tag}.log", "w"), stderr=subprocess.STDOUT, env=env)

    try:
        build = spawn("zoo", [PY, str(HERE / "mnist_inr_zoo.py"), "--mnist", args.mnist, "--out", args.zoo,
                              "--shard-size", "5000", "--results-dir", str(out)]
                      + (["--limit", str(args.limit)] if args.limit else []))
        side = {n: spawn(f"warm-{n}", [PY, __file__, "--out", str(out), "--warm", n]) for n in names}
        if args.zoo_train_seconds:  # compile the stacked optimiser on CUDA once (Inductor's cache)
            side["zoo_train"] = spawn("warm-zoo_train", [PY, str(HERE / "zoo_train.py"), "--device", DEVICE, "--runs", "8",
                                                         "--runs-per-shard", "4", "--epochs", "1", "--threads", "4",
                                                         "--dataset", args.mnist, "--results-dir", "/tmp/warm_zt"])
        rates = {}
        for n, p in side.items():
            p.wait()
            if n in CONFIGS:
                lines = [ln for ln in (logs / f"warm-{n}.log").read_text().splitlines() if ln.startswith("{")]
                rates[n] = json.loads(lines[-1])["examples_per_s"] if lines else None
        log(f"side-process training rates (examples/s, beside the zoo build): {rates}", out)
        if build.wait() != 0:
            raise SystemExit("zoo build failed: see log")
        from weightspace.zoo.store import Zoo

        n_train = Zoo.open(args.zoo).info()["splits"]["train"]
        log(f"zoo built at {time.perf_counter() - start:.0f} s ({n_train} training INRs)", out)

        window = args.deadline - (time.perf_counter() - start) - args.zoo_train_seconds - 10
        train_window = window - 30  # process start, zoo load, compile-cache load, test evaluation (~25 s seen)
        threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, len(names)))
        env["OMP_NUM_THREADS"] = str(threads)
        procs = {}
        if train_window < 30:
            log(f"only {train_window:.0f} s left for training: no classification runs", out)
            names = []
        for n in names:
            model, aug, cfg, batch, lr, wd, max_epochs = CONFIGS[n]
            rate = rates.get(n) or 1000.0
            epochs = max(1, min(max_epochs, math.floor(train_window * rate / (n_train * args.slowdown))))
            cmd = [PY, str(HERE / "classify_inrs.py"), "--zoo", args.zoo, "--models", model, "--seeds", "0",
                   "--epochs", str(epochs), "--batch-size", str(batch), "--lr", str(lr), "--weight-decay", str(wd),
                   "--compile", "--max-minutes", f"{train_window / 60:.2f}", "--section", f"full_zoo_{n}",
                   "--results-dir", str(out)]
            cmd += ["--augment", f"{model}={aug}", "--no-plain"] if aug else ["--augment", ""]
            cmd += ["--model-config", f"{model}:{cfg}"] if cfg else []
            procs[n] = spawn(f"cls-{n}", cmd)
        for n, p in procs.items():
            remaining = args.deadline - args.zoo_train_seconds - (time.perf_counter() - start)
            try:
                p.wait(timeout=max(1.0, remaining))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                log(f"{n}: killed at the deadline", out)
            log(f"{n} finished (rc {p.returncode}) at {time.perf_counter() - start:.0f} s", out)
        left = args.deadline - (time.perf_counter() - start) - 5
        if args.zoo_train_seconds and left > 30:
            zt = spawn("zoo_train", [PY, str(HERE / "zoo_train.py"), "--device", DEVICE, "--threads", "4",
                                     "--dataset", args.mnist, "--section", "zoo_train_gpu", "--results-dir", str(out)])
            try:
                zt.wait(timeout=left)
            except subprocess.TimeoutExpired:
                zt.kill()
                zt.wait()
                log("zoo_train: killed at the deadline", out)
        log(f"done at {time.perf_counter() - start:.0f} s", out)
    finally:
        with open(out / "log.txt", "a") as f:
            for p in sorted(logs.glob("*.log")):
                f.write(f"\n===== {p.name}\n{p.read_text()[-20000:]}")


if __name__ == "__main__":
    main()
