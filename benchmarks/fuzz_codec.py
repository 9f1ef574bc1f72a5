"""Fuzz the .wsc decoder: coverage-guided atheris (libFuzzer) and seeded random mutation.

    python benchmarks/fuzz_codec.py [--seconds 120] [--random 20000]

Property (`weightspace.compress.fuzz.decode_or_clean_error`): every input decodes or
raises `CodecError`; any other exception is a crash. Each atheris input is decoded as
given and again with its checksum recomputed, so mutations reach the header and payload
checks rather than stopping at the CRC. Seed corpus: `seed_corpus()` (COIN images, RGB,
audio, a 3D volume, a COIN++ patch-base image and a COIN++ latent-pyramid image). Counts go
to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT, environment, write_result


def _child(seconds: int, corpus: Path) -> None:
    import atheris

    with atheris.instrument_imports():
        from weightspace.compress import basefile, codec, coin, coinpp, format, pyramid, signal  # noqa: F401
    from weightspace.compress.fuzz import decode_or_clean_error, fuzz_bases, with_crc

    bases = fuzz_bases()

    def one(data: bytes) -> None:
        decode_or_clean_error(data, *bases)
        decode_or_clean_error(with_crc(data), *bases)

    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-rss_limit_mb=4096", "-timeout=60", str(corpus)], one)
    atheris.Fuzz()


def _random_mutations(n: int, seed: int) -> dict:
    """Seeded byte-level mutation of the corpus (half with the checksum fixed)."""
    from weightspace.compress.fuzz import decode_or_clean_error, fuzz_bases, seed_corpus, with_crc

    bases = fuzz_bases()
    corpus = seed_corpus(*bases)
    rng = np.random.default_rng(seed)
    outcomes = {"ok": 0, "error": 0}
    t = time.time()
    for i in range(n):
        data = bytearray(corpus[rng.integers(len(corpus))])
        for _ in range(int(rng.integers(1, 5))):
            pos = int(rng.integers(len(data))) if data else 0
            op = rng.integers(4)
            if op == 0 and data:
                data[pos] ^= 1 << int(rng.integers(8))
            elif op == 1:
                data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 6))).astype(np.uint8).tobytes()
            elif op == 2 and data:
                del data[pos : pos + int(rng.integers(1, 6))]
            elif data:
                data[pos] = int(rng.integers(256))
        blob = with_crc(bytes(data)) if i % 2 else bytes(data)
        outcomes[decode_or_clean_error(blob, *bases)] += 1
    return {"inputs": n, **outcomes, "seconds": time.time() - t}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--random", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.seconds, Path(args.child))
        return
    env = environment()
    figures: dict = {"random_mutation": _random_mutations(args.random, args.seed)}
    corpus = ROOT / "runs" / "fuzz_corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    from weightspace.compress.fuzz import seed_corpus

    for i, blob in enumerate(seed_corpus()):
        (corpus / f"seed{i}.wsc").write_bytes(blob)
    try:
        import atheris  # noqa: F401

        proc = subprocess.run(
            [sys.executable, __file__, "--seconds", str(args.seconds), "--child", str(corpus)],
            capture_output=True, text=True, timeout=args.seconds + 300, check=False,  # libFuzzer exits non-zero on crashes: we read its log
        )
        log = proc.stderr
        done = re.findall(r"Done (\d+) runs in (\d+) second", log)
        cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
        figures["atheris"] = {
            "returncode": proc.returncode,
            "runs": int(done[-1][0]) if done else None,
            "seconds": int(done[-1][1]) if done else None,
            "coverage_edges": int(cov[-1][0]) if cov else None,
            "crashed": "ERROR: libFuzzer" in log or "Uncaught Python exception" in log,
            "log_tail": log[-1500:],
        }
    except ImportError:
        figures["atheris"] = {"installed": False}
    write_result("fuzz_codec", env, figures, markdown(figures))


def markdown(f: dict) -> str:
    r, a = f["random_mutation"], f["atheris"]
    at = (
        f"atheris (libFuzzer, coverage-guided, each input decoded as given and with its CRC recomputed): "
        f"{a['runs']:,} inputs in {a['seconds']} s, {a['coverage_edges']} coverage edges, "
        f"{'a CRASH (see the JSON log)' if a['crashed'] else 'no crash'} (exit code {a['returncode']})."
        if a.get("runs") is not None else f"atheris: not run ({a})."
    )
    return f"""
The decoder gives a signal or a `CodecError` for every input, nothing else.

- Seeded random mutation of the seed corpus (half with the checksum fixed): {r['inputs']:,} inputs,
  {r['error']:,} clean errors, {r['ok']:,} decoded, none raised anything else ({r['seconds']:.0f} s).
- {at}
- The hypothesis tests (`tests/compress/test_fuzz.py`) add 3 × 150 generated inputs per run.
"""


if __name__ == "__main__":
    main()
