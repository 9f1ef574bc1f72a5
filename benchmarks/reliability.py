"""Reliability: crashes, a full disk, damaged zoos, bad command lines and hostile codec files.

    python benchmarks/reliability.py [--kills 20] [--seed 0]

Five suites, each counting tracebacks, hangs, silent wrong results and networks lost (the
target for every count is 0):

1. **kill -9 during `zoo fit-inrs`**: a multi-shard build is killed ``--kills`` times, kill
   ``k`` aimed at shard ``k * shards // kills`` (a random moment while it is being fitted), so
   kills land from the first shard to the last; each time the same command is run again. The final zoo is compared bit for bit (every tensor, every table
   column) with an uninterrupted build.
2. **kill -9 during `zoo train-classifiers`**: the same for a zoo of trained classifiers.
3. **A full disk**: the build writes into a tmpfs too small for it; it must stop with one
   line and exit 1, and, the tmpfs grown, the same command completes the identical zoo.
   Needs permission to mount a tmpfs (root in a container); skipped, and said so, otherwise.
4. **Damaged zoos**: every case of `weightspace.zoo.damage.DAMAGE` applied to a real 3-shard
   zoo, then `zoo info`, `train` and `zoo verify` on it: each must exit 2 with one line.
5. **Bad command lines and codec bombs**: invalid counts, rates and paths for every kind of
   command, a 25 KB COIN file asking for 3.3e12 multiply-adds, a PNG claiming 10^10 pixels,
   and 300 seeded byte mutations of valid codec files: one line and exit 2 each (mutations:
   decoded or refused with `CodecError`).

Commands run in-process through Typer's test runner (suites 4-5, with an alarm as the hang
guard) or as child processes (suites 1-3, which must be killed). Writes
``benchmarks/results/reliability.json`` and the section ``reliability`` of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from _common import environment, write_result
import itertools

HANG_SECONDS = 300
CLI = [sys.executable, "-m", "weightspace.cli"]
BUILD = ["zoo", "fit-inrs", "--dataset", "mnist-subset", "--limit", "40", "--steps", "3000", "--shard-size", "8"]
CLASSIFIERS = ["zoo", "train-classifiers", "--dataset", "digits", "--recipe", "mlp", "--runs", "48", "--epochs", "10",
               "--n-train", "1000", "--n-test", "100", "--runs-per-shard", "4"]


# ----------------------------------------------------------------------------- helpers
def same_zoo(a: Path, b: Path) -> tuple[bool, int, str]:
    """(identical, networks missing from ``b``, what differs) for two zoo directories."""
    from weightspace.zoo.store import Zoo

    za, zb = Zoo.open(a), Zoo.open(b)
    missing = len(set(za.table["id"]) - set(zb.table["id"]))
    if missing or len(za) != len(zb):
        return False, missing, f"{len(za)} vs {len(zb)} networks"
    ta, tb = za.table.sort_values("id").reset_index(drop=True), zb.table.sort_values("id").reset_index(drop=True)
    cols = [c for c in ta.columns if c not in ("shard", "row")]
    for c in cols:
        if not ta[c].equals(tb[c]):
            return False, 0, f"column {c!r} differs"
    wa, wb = za.weights(ta.index.to_numpy()), zb.weights(tb.index.to_numpy())
    for i, (x, y) in enumerate(zip(wa.tensors(), wb.tensors())):
        if not (x.shape == y.shape and bool((x == y).all())):
            return False, 0, f"tensor {i} differs"
    return True, 0, ""


def shards_done(path: Path) -> int:
    d = path / "shards"
    return len([p for p in d.iterdir() if p.suffix == ".safetensors"]) if d.is_dir() else 0


def run_child(args: list[str], timeout: float = HANG_SECONDS) -> tuple[int | None, str, float]:
    """(exit code or None on a hang, stderr, seconds) of one weightspace command as a child."""
    t = time.perf_counter()
    try:
        r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False,
                           env=dict(os.environ, PYTHONWARNINGS="ignore"))
        return r.returncode, r.stderr, time.perf_counter() - t
    except subprocess.TimeoutExpired as e:
        return None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr or ""), timeout


def startup_seconds() -> float:
    """Seconds from spawn until a command starts working (imports): the floor under every kill."""
    t = time.perf_counter()
    subprocess.run([*CLI, "models"], capture_output=True, check=True)
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- suites 1-2
def kill_suite(name: str, command: list[str], total_shards: int, kills: int, rng: np.random.Generator,
               work: Path) -> dict:
    """Build once uninterrupted, then ``kills`` kill -9s, kill ``k`` aimed at shard
    ``k * total_shards // kills`` (at a uniformly random moment of that shard's share of the
    measured work), each followed by the same command; the final zoo is compared with the
    uninterrupted one."""
    ref = work / f"{name}-reference"
    code, err, seconds = run_child([*command, "-o", str(ref)])
    if code != 0:
        raise SystemExit(f"{name}: the uninterrupted run failed ({code}): {err[-500:]}")
    shard_seconds = seconds / total_shards  # an upper bound: includes the start-up
    out = work / f"{name}-killed"
    log, tracebacks, hangs = [], 0, 0
    for k in range(kills):
        target = k * total_shards // kills
        proc = subprocess.Popen([*CLI, *command, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=dict(os.environ, PYTHONWARNINGS="ignore"))
        t0, fired, deadline = time.perf_counter(), None, time.perf_counter() + HANG_SECONDS
        while proc.poll() is None and time.perf_counter() < deadline:
            done = shards_done(out)
            if fired is None and done >= target:  # the target shard is being worked on: pick the moment
                fired = time.perf_counter() + rng.uniform(0, shard_seconds)
            if fired is not None and time.perf_counter() >= fired:
                break
            time.sleep(0.02)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        hangs += time.perf_counter() >= deadline
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        tracebacks += "Traceback" in err
        log.append({"kill": k, "target_shard": target, "after_s": round(time.perf_counter() - t0, 2),
                    "shards_at_kill": shards_done(out), "finished_first": finished})
        if finished and shards_done(out) >= total_shards:
            break
    code, err, _ = run_child([*command, "-o", str(out)])  # the resume that completes it
    hangs += code is None
    tracebacks += "Traceback" in err
    same, lost, differs = same_zoo(ref, out) if code == 0 else (False, -1, f"resume exited {code}: {err[-300:]}")
    landed = [e for e in log if not e["finished_first"]]
    return {
        "command": "weightspace " + " ".join(command) + " -o OUT", "shards": total_shards,
        "uninterrupted_s": round(seconds, 1), "kills": len(landed),
        "shards_at_kills": [e["shards_at_kill"] for e in landed],
        "last_shard_reached": max((e["shards_at_kill"] for e in landed), default=0),
        "tracebacks": tracebacks, "hangs": hangs, "silent_wrong": int(code == 0 and not same),
        "networks_lost": max(lost, 0), "identical": bool(same), "differs": differs, "log": log,
    }


# ----------------------------------------------------------------------------- suite 3
def full_disk_suite(work: Path, reference: Path) -> dict:
    mnt = work / "tmpfs"
    mnt.mkdir()
    size = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file())
    small = max(size // 3, 64 * 1024)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={small}", "tmpfs", str(mnt)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return {"skipped": f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})"}
    try:
        out = mnt / "zoo"
        code, err, _ = run_child([*BUILD, "-o", str(out)])
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        kept = shards_done(out)
        subprocess.run(["mount", "-o", f"remount,size={4 * size}", str(mnt)], check=True)
        code2, err2, _ = run_child([*BUILD, "-o", str(out)])
        same, lost, differs = same_zoo(reference, out) if code2 == 0 else (False, -1, err2[-300:])
        return {"tmpfs_bytes": small, "zoo_bytes": size, "exit": code, "error_lines": errors, "shards_kept": kept,
                "tracebacks": int("Traceback" in err or "Traceback" in err2), "hangs": int(code is None or code2 is None),
                "one_line": len(errors) == 1 and code == 1, "resumed_identical": bool(same),
                "silent_wrong": int(code == 0 or (code2 == 0 and not same)), "networks_lost": max(lost, 0),
                "differs": differs}
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)


# ----------------------------------------------------------------------------- suites 4-5
class Hang(Exception):
    pass


def invoke(args: list[str]) -> dict:
    """One in-process command: exit code, whether it raised (a traceback), hung or printed more than one error line."""
    from typer.testing import CliRunner

    from weightspace.cli import app

    def alarm(*_):
        raise Hang

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    try:
        r = CliRunner().invoke(app, args, catch_exceptions=True, env={"COLUMNS": "400"})
        hang = isinstance(r.exception, Hang)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    raised = r.exception is not None and not isinstance(r.exception, (SystemExit, Hang))
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    return {"args": args, "exit": r.exit_code, "traceback": raised, "hang": hang, "error_lines": len(errors),
            "first_line": (errors or r.output.strip().splitlines() or [""])[0][:200],
            "exception": f"{type(r.exception).__name__}: {r.exception}"[:200] if raised else None}


def damaged_zoo_suite(work: Path) -> dict:
    from weightspace.zoo.damage import DAMAGE

    clean = work / "damage-clean"
    code, err, _ = run_child(["zoo", "fit-inrs", "--dataset", "digits", "--limit", "4", "--steps", "50", "--shard-size",
                              "4", "-o", str(clean)])
    if code != 0:
        raise SystemExit(f"could not build the 3-shard zoo: {err[-300:]}")
    cases = []
    for name, (apply, file) in DAMAGE.items():
        z = work / f"damage-{name}"
        shutil.copytree(clean, z)
        apply(z)
        for args in (["zoo", "info", str(z)], ["train", str(z), "--model", "mlp", "--epochs", "1", "--no-progress"],
                     ["zoo", "verify", str(z)]):
            res = invoke(args)
            res.update(damage=name, file=file, names_file=file.split("/")[-1] in res["first_line"] or args[1] == "verify")
            cases.append(res)
    return _tally(cases, expect_exit=2)


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def bad_cli_suite(work: Path) -> dict:
    from PIL import Image

    from weightspace.compress.format import pack
    from weightspace.compress.fuzz import decode_or_clean_error, fuzz_bases, seed_corpus, with_crc
    from weightspace.compress.quantize import packed_size

    zoo = work / "cli-zoo"
    code, err, _ = run_child(["zoo", "fit-inrs", "--dataset", "digits", "--limit", "6", "--steps", "50", "-o", str(zoo)])
    if code != 0:
        raise SystemExit(f"could not build the zoo for the CLI suite: {err[-300:]}")
    afile = work / "a_file"
    afile.write_text("not a zoo")
    img = work / "img.png"
    Image.fromarray((np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)).save(img)
    bomb = work / "bomb.png"
    bomb.write_bytes(_png_claiming(100_000, 100_000))
    # a COIN file inside the documented bounds that asks for 3.3e12 multiply-adds (tests/compress/test_decode_work.py)
    from weightspace.compress import coin
    sizes, bits = [2, 256, 256, 256, 256, 1], 1
    params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    crafted = work / "crafted.wsc"
    crafted.write_bytes(pack("coin", {"kind": "image", "shape": [4096, 4096, 1], "meta": {}, "hidden": [256] * 4,
                                      "omega": 30.0, "bits": bits},
                             coin._PAIR.pack(0.0, 1e-3) * 2 * (len(sizes) - 1) + bytes(packed_size(params, bits))))
    ro_parent = Path("/proc/weightspace-out")  # not writable, even by root
    z, f, w = str(zoo), str(afile), str(work)
    cases_args = [
        ["train", z, "--epochs", "-1"], ["train", z, "--epochs", "0"], ["train", z, "--batch-size", "0"],
        ["train", z, "--lr", "nan"], ["train", z, "--lr", "-1"], ["train", z, "--weight-decay", "inf"],
        ["train", z, "--max-minutes", "-2"], ["train", z, "--mixup", "0"], ["train", z, "--seed", "-1"],
        ["train", z, "--target", "psnr", "--epochs", "1", "--no-progress"], ["train", z, "-o", f],
        ["train", z, "--model", "nope"], ["train", f], ["train", w + "/missing"],
        ["zoo", "fit-inrs", "--limit", "0", "-o", w + "/x1"], ["zoo", "fit-inrs", "--limit", "-3", "-o", w + "/x2"],
        ["zoo", "fit-inrs", "--shard-size", "0", "-o", w + "/x3"], ["zoo", "fit-inrs", "--shard-size", "-1", "-o", w + "/x4"],
        ["zoo", "fit-inrs", "--steps", "-10", "-o", w + "/x5"], ["zoo", "fit-inrs", "--steps", "0", "-o", w + "/x6"],
        ["zoo", "fit-inrs", "-o", f], ["zoo", "fit-inrs", "-o", f + "/sub"], ["zoo", "fit-inrs", "-o", str(ro_parent)],
        ["zoo", "fit-inrs", "--dataset", "shapes", "--resolution", "1", "-o", w + "/x7"],
        ["zoo", "fit-inrs", "--inrs-per-train-image", "0", "-o", w + "/x8"],
        ["zoo", "render", z, "-o", w + "/fig.txt"], ["zoo", "render", z, "-o", w + "/f.png", "--count", "0"],
        ["zoo", "train-classifiers", "-o", w + "/c", "--runs", "0"], ["zoo", "train-classifiers", "-o", w + "/c", "--epochs", "-1"],
        ["predict", z, "--epochs", "-1"], ["edit", z, "--epochs", "-1"], ["edit", z, "--batch-size", "0"],
        ["hyperrep", "fit", z, "-o", w + "/h.safetensors", "--epochs", "0"], ["hyperrep", "sample", z, f, "--top", "0"],
        ["nern", "fit", f, "-o", w + "/n.safetensors", "--hidden", "0"],
        ["functa", "fit", "-o", w + "/fu", "--steps", "-1"], ["hyperinr", "fit", "-o", w + "/hi", "--points", "0"],
        ["compress", str(img), "-o", w + "/a.wsc", "--bpp", "inf"], ["compress", str(img), "-o", w + "/a.wsc", "--bpp", "-1"],
        ["compress", str(img), "-o", w + "/a.wsc", "--bpp", "1", "--steps", "-5"],
        ["compress", str(img), "-o", w + "/a.wsc", "--bpp", "1", "--bits", "64"],
        ["compress", str(img), "-o", w, "--bpp", "1"], ["compress", str(bomb), "-o", w + "/b.wsc", "--bpp", "1"],
        ["compress", w + "/none.png", "-o", w + "/a.wsc", "--bpp", "1"],
        ["decompress", str(crafted), "-o", w + "/out.png"], ["decompress", f, "-o", w + "/out.png"],
        ["decompress", str(img), "-o", w + "/out.png"],
    ]
    t = time.perf_counter()
    cases = [invoke(a) for a in cases_args]
    cli_seconds = time.perf_counter() - t
    # seeded byte mutations of valid files through the decoder's property
    base, pbase = fuzz_bases()
    corpus = seed_corpus(base, pbase)
    rng = np.random.default_rng(0)
    outcomes = {"decoded": 0, "refused": 0, "other": 0}
    others = []
    for i in range(300):
        data = bytearray(corpus[i % len(corpus)])
        for _ in range(int(rng.integers(1, 5))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        try:
            # half of them with the checksum redone, so the mutation reaches the header and payload checks
            mutated = with_crc(bytes(data)) if i % 2 else bytes(data)
            outcome = {"ok": "decoded", "error": "refused"}[decode_or_clean_error(mutated, base, pbase)]
        except Exception as e:  # the property's own failure: anything but a Signal or a CodecError
            outcome, _ = "other", others.append(f"{type(e).__name__}: {e}"[:200])
        outcomes[outcome] += 1
    tally = _tally(cases, expect_exit=2)
    tally.update(seconds=round(cli_seconds, 1), mutations=outcomes, mutation_failures=others[:5])
    return tally


def _one_line(c: dict) -> bool:
    """One ``error:`` line; `zoo verify` instead lists every problem, one line each, and exits 2."""
    return c["error_lines"] == 1 or (c["args"][:2] == ["zoo", "verify"] and c["exit"] == 2)


def _tally(cases: list[dict], expect_exit: int) -> dict:
    wrong = [c for c in cases if c["exit"] == 0]
    return {"cases": len(cases), "tracebacks": sum(c["traceback"] for c in cases), "hangs": sum(c["hang"] for c in cases),
            "silent_wrong": len(wrong), "not_one_line": sum(not _one_line(c) and c["exit"] == expect_exit for c in cases),
            "bad": [c for c in cases if c["traceback"] or c["hang"] or c["exit"] == 0 or not _one_line(c)],
            "examples": [c["first_line"] for c in cases[:: max(1, len(cases) // 8)]]}


# ----------------------------------------------------------------------------- report
def markdown(env: dict, fig: dict) -> str:
    k1, k2, disk, dmg, cli = fig["kill_build"], fig["kill_classifiers"], fig["full_disk"], fig["damaged"], fig["cli"]
    rows = [
        ("kill -9 during `zoo fit-inrs` (" + f"{k1['shards']} shards)", k1["kills"], k1["tracebacks"], k1["hangs"],
         k1["silent_wrong"], k1["networks_lost"], f"identical to the uninterrupted zoo: {k1['identical']}; shards done at "
         f"the kills: {k1['shards_at_kills']}"),
        ("kill -9 during `zoo train-classifiers` (" + f"{k2['shards']} shards)", k2["kills"], k2["tracebacks"], k2["hangs"],
         k2["silent_wrong"], k2["networks_lost"], f"identical: {k2['identical']}; shards done at the kills: {k2['shards_at_kills']}"),
    ]
    if "skipped" in disk:
        rows.append(("full disk (tmpfs)", 0, "–", "–", "–", "–", disk["skipped"]))
    else:
        rows.append((f"full disk (tmpfs of {disk['tmpfs_bytes']:,} B for a {disk['zoo_bytes']:,} B zoo)", 1,
                     disk["tracebacks"], disk["hangs"], disk["silent_wrong"], disk["networks_lost"],
                     f"exit {disk['exit']}, {disk['shards_kept']} shards kept, resumed identical: "
                     f"{disk['resumed_identical']}; `{(disk['error_lines'] or [''])[0][:110]}`"))
    rows.append((f"damaged zoos ({len(fig['damage_cases'])} kinds x info / train / verify)", dmg["cases"], dmg["tracebacks"],
                 dmg["hangs"], dmg["silent_wrong"], 0, f"{dmg['not_one_line']} answers not one line"))
    rows.append(("bad command lines and codec bombs", cli["cases"], cli["tracebacks"], cli["hangs"], cli["silent_wrong"], 0,
                 f"{cli['not_one_line']} answers not one line"))
    rows.append(("byte mutations of codec files", 300, cli["mutations"]["other"], 0, 0, 0,
                 f"decoded {cli['mutations']['decoded']}, refused {cli['mutations']['refused']}"))
    lines = [
        f"{fig['seconds']:.0f} s in all (a child process needs {fig['startup_s']} s to start). Every count must be 0. Kill k of K is aimed at shard k x shards / K, at a random "
        "moment of that shard's share of the measured run time (so kills reach the last shards); each kill is "
        "followed by the same command, and the final zoo is compared bit for bit with an uninterrupted build "
        "(every tensor and table column).",
        "",
        "| suite | cases | tracebacks | hangs | silent wrong | networks lost | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
        *(f"| {' | '.join(str(x) for x in r)} |" for r in rows),
        "",
        "Examples of the answers (one line each): " + "; ".join(f"`{e}`" for e in (cli["examples"] + dmg["examples"])[:8]),
        "",
        "Every case with its exit code and first line is in the raw figures.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    if args.kills < 1:
        ap.error("--kills must be at least 1")
    env = environment()
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="weightspace-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    startup = startup_seconds()
    print(f"startup {startup:.1f} s; work in {work}", flush=True)
    fig: dict = {"command": "python benchmarks/reliability.py " + " ".join(sys.argv[1:]), "startup_s": round(startup, 1)}
    fig["kill_build"] = kill_suite("build", BUILD, 15, args.kills, rng, work)
    print("kill -9 build:", {k: v for k, v in fig["kill_build"].items() if k != "log"}, flush=True)
    fig["kill_classifiers"] = kill_suite("classifiers", CLASSIFIERS, 12, args.kills, rng, work)
    print("kill -9 classifiers:", {k: v for k, v in fig["kill_classifiers"].items() if k != "log"}, flush=True)
    fig["full_disk"] = full_disk_suite(work, work / "build-reference")
    print("full disk:", fig["full_disk"], flush=True)
    from weightspace.zoo.damage import DAMAGE
    fig["damage_cases"] = list(DAMAGE)
    fig["damaged"] = damaged_zoo_suite(work)
    print("damaged zoos:", {k: v for k, v in fig["damaged"].items() if k != "bad"}, fig["damaged"]["bad"][:3], flush=True)
    fig["cli"] = bad_cli_suite(work)
    print("bad CLI:", {k: v for k, v in fig["cli"].items() if k != "bad"}, fig["cli"]["bad"][:3], flush=True)
    fig["seconds"] = time.perf_counter() - t0
    write_result("reliability", env, fig, markdown(env, fig))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
