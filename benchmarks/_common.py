"""Shared plumbing for benchmark scripts: the environment record, the JSON result and the
script's own section of BENCHMARKS.md (between markers, so reruns replace it)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def environment() -> dict[str, Any]:
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})",
        "load_average_at_start": os.getloadavg(),
    }


def write_result(name: str, env: dict[str, Any], figures: dict[str, Any], markdown: str, results_dir: str | Path | None = None) -> Path:
    """Write NAME.json (into benchmarks/results, or ``results_dir``: e.g. the folder that
    comes back from a lent GPU machine) and replace NAME's section of BENCHMARKS.md."""
    env = {**env, "load_average_at_end": env.get("load_average_at_end", os.getloadavg())}
    out = Path(results_dir or ROOT / "benchmarks" / "results") / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "figures": figures}, indent=2, default=str))
    section = (
        f"<!-- {name}:start -->\n## {name}\n\n"
        f"Command: `{env['command']}` — {env['date']}, {env['cpu_count']} CPUs, torch {env['torch']} "
        f"({env['torch_threads']} threads), {env['device']}, load average at start "
        f"{env['load_average_at_start'][0]:.2f}, at end {env['load_average_at_end'][0]:.2f}.\n\n"
        f"{markdown.strip()}\n\nRaw figures: `benchmarks/results/{name}.json`.\n<!-- {name}:end -->\n"
    )
    md = ROOT / "BENCHMARKS.md"
    text = md.read_text() if md.exists() else "# Benchmarks\n\nEvery figure below was measured by the command shown with it.\n\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->\n"
    if start in text:
        a, b = text.index(start), text.index(end) + len(end)
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    md.write_text(text)
    return out


def report_from(path: str | Path, name: str, markdown) -> None:
    """Re-create NAME's JSON in benchmarks/results and its BENCHMARKS.md section from a
    result file written elsewhere (a lent GPU machine): ``markdown(figures) -> str``."""
    data = json.loads(Path(path).read_text())
    write_result(name, data["environment"], data["figures"], markdown(data["figures"]))


def training_rate(step_model, params, weights, labels, *, lr: float = 1e-3, weight_decay: float = 1e-2,
                  warmup: int = 5, iters: int = 30) -> float:
    """Examples/s of forward + cross-entropy + backward + AdamW on one fixed batch
    (``weights`` [B, ...], ``labels`` [B]); ``step_model`` may be a compiled wrapper of the
    module owning ``params``. The first ``warmup`` steps (compilation included) are not timed."""
    import time

    import torch

    def sync() -> None:
        if weights.device.type == "cuda":
            torch.cuda.synchronize()

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    for k in range(warmup + iters):
        if k == warmup:
            sync()
            t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(step_model(weights), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync()
    return len(labels) * iters / (time.perf_counter() - t)


def budgeted_rate(model, x, labels, optimizer, *, steps: int, budget: float) -> tuple[float, int]:
    """(examples/s, steps timed) of forward + cross-entropy + backward + ``optimizer`` step on one
    fixed batch: one warm-up step, timed to size the measurement, then up to ``steps`` steps in
    about ``budget`` seconds (at least one), so heavy and light models each take about as long."""
    import time

    import torch

    model.train()

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    t = time.perf_counter()
    step()
    n = max(1, min(steps, int(budget / (time.perf_counter() - t))))
    t = time.perf_counter()
    for _ in range(n):
        step()
    return len(labels) * n / (time.perf_counter() - t), n


# Model defaults that changed, with the value they had before: a result names the value it
# ran with, and results written before the change (which did not record it) are shown with
# the value of their day. dws's norm: "channel" until 2026-11-28, then "batch". (That model is
# `dws_light` since 2026-12-07, when `dws` became the complete DWSNets basis; results recorded
# before then under the name "dws" are of `dws_light`.)
CHANGED_DEFAULTS: dict[str, dict[str, Any]] = {"dws_light": {"norm": "channel"}}


def effective_config(model: str, config: dict | None) -> dict:
    """``config`` plus the current value of every default of ``model`` that has changed."""
    from weightspace.models.registry import model_info

    out = dict(config or {})
    for key in CHANGED_DEFAULTS.get(model, {}):
        out.setdefault(key, getattr(model_info(model).builder, key))
    return out


def config_then(model: str, config: dict | None) -> dict:
    """For a result that did not record its effective configuration: ``config`` plus the
    values the changed defaults had before they changed."""
    return {**CHANGED_DEFAULTS.get(model, {}), **(config or {})}


def recorded_configs(figures: dict, models) -> dict[str, dict]:
    """Each model's options as a result recorded them (`effective_config`), or for an older
    result that did not, the defaults of its day."""
    return figures.get("effective_config") or {m: config_then(m, None) for m in models}


def describe_config(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "default"


def with_config(name: str, config: dict | None) -> str:
    """``"dws (norm=batch)"``; the bare name when there are no options to name."""
    return f"{name} ({describe_config(config)})" if config else name
