"""Wall time of README.md's main commands, as written, on this machine.

    python benchmarks/cli_times.py [--work DIR]

Runs each command as a child process (`python -m weightspace.cli ...`) in a scratch folder,
in order (later commands use what earlier ones wrote), and reports its wall time and exit
status. Writes ``benchmarks/results/cli_times.json`` and the section ``cli_times`` of
BENCHMARKS.md, from which README.md's "Time on a 2-core CPU" column is taken.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import environment, write_result

# (README command, what it does): run in this order, each in the same scratch folder
COMMANDS = [
    ("weightspace quickstart --out runs/quickstart --epochs 40", "the demo: digits zoo, MLP and DWS models, figure"),
    ("weightspace zoo fit-inrs --dataset mnist-subset -o zoos/mnist5k", "5,000 MNIST INRs, DWSNets recipe"),
    ("weightspace zoo info zoos/mnist5k", "open (verify) and describe"),
    ("weightspace zoo verify zoos/mnist5k", "hashes, values, table against shards"),
    ("weightspace train zoos/mnist5k --model dws --epochs 40", "dws (library defaults, not the DWSNets preset) on 3,500 training INRs"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    env = environment()
    work = args.work or Path(tempfile.mkdtemp(prefix="weightspace-cli-times-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for command, what in COMMANDS:
        argv = shlex.split(command)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "weightspace.cli", "--quiet", *argv[1:]], cwd=work, capture_output=True,
                           text=True, check=False, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        seconds = time.perf_counter() - t
        last = (r.stdout.strip().splitlines() or [""])[-1][:160]
        rows.append({"command": command, "what": what, "seconds": seconds, "exit": r.returncode, "last_line": last})
        print(rows[-1], flush=True)
        if r.returncode != 0:
            print(r.stderr[-2000:], file=sys.stderr)
            break
    md = ["Each command as README.md writes it (with `--quiet`), run in order in one scratch folder; wall time "
          "includes start-up (about 0.3 s for the command line, more where PyTorch loads).", "",
          "| command | what | wall time | exit | last line of output |", "|---|---|---:|---:|---|"]
    md += [f"| `{r['command']}` | {r['what']} | {r['seconds']:.0f} s | {r['exit']} | {r['last_line']} |" for r in rows]
    write_result("cli_times", env, {"rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
