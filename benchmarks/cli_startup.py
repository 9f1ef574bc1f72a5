"""How long `weightspace ... --help` takes, for every command, as a new process would see it.

    python benchmarks/cli_startup.py [--repeats 3]

Each command's help is run ``--repeats`` times as a child process (`python -m weightspace.cli`);
the median wall time per command, the slowest command and whether the process imported
PyTorch are reported. Writes ``benchmarks/results/cli_startup.json`` and the section
``cli_startup`` of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _common import environment, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    env = environment()
    from weightspace.cli import app
    from weightspace.cli_checks import commands

    paths = [""] + [p for p, _ in commands(app)]
    probe = ("import sys, runpy; sys.argv = ['weightspace', *sys.argv[1:]];\n"
             "try:\n    runpy.run_module('weightspace.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('TORCH', 'torch' in sys.modules, file=sys.stderr)")
    rows = []
    for path in paths:
        times, torch_loaded = [], False
        for _ in range(args.repeats):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", probe, *path.split(), "--help"], capture_output=True, text=True,
                               check=False)
            times.append(time.perf_counter() - t)
            if r.returncode != 0 or "TORCH" not in r.stderr:
                raise SystemExit(f"weightspace {path} --help failed: {r.stderr[-300:]}")
            torch_loaded |= "TORCH True" in r.stderr
        rows.append({"command": f"weightspace {path} --help".replace("  ", " "), "median_s": statistics.median(times),
                     "torch_imported": torch_loaded})
        print(rows[-1], flush=True)
    # what every --help paid before the package imported on first use: the eager imports of its __init__
    eager = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import weightspace.core, weightspace.inr.hyper, weightspace.inr.meta, "
                        "weightspace.models.registry, weightspace.zoo.train_zoo, weightspace.zoo.vectors"], check=True)
        eager.append(time.perf_counter() - t)
    worst = max(rows, key=lambda r: r["median_s"])
    md = [f"Every command's `--help` as a new process, median of {args.repeats} runs: slowest "
          f"`{worst['command']}` {worst['median_s']:.2f} s, median over commands "
          f"{statistics.median(r['median_s'] for r in rows):.2f} s; PyTorch imported by "
          f"{sum(r['torch_imported'] for r in rows)} of {len(rows)} (the package imports its modules on first use). "
          f"Measured in the same run, the imports every `--help` paid before (the package's former eager "
          f"`__init__`: PyTorch, the models, the zoo trainer): {statistics.median(eager):.2f} s.", "", "| command | median s | PyTorch imported |", "|---|---:|---|"]
    md += [f"| `{r['command']}` | {r['median_s']:.2f} | {r['torch_imported']} |" for r in rows]
    write_result("cli_startup", env, {"rows": rows, "repeats": args.repeats, "eager_import_s": eager}, "\n".join(md))


if __name__ == "__main__":
    main()
