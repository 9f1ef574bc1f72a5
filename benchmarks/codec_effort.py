"""The overfit codec's time-quality trade-off: every `--effort` preset on the same images and target.

    python benchmarks/codec_effort.py [--images camera,coffee] [--size 256] [--target 0.2]

One `compress(..., method="overfit", bpp=target)` per (image, effort), timed end to end on
this machine (run alone), beside WebP's and JPEG 2000's PSNR at the file's size (Pillow,
as in `benchmarks/codec_rd.py`). Images as there: centre-cropped, resized, 8-bit.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import environment, report_from, write_result
from codec_rd import _pil_points, load_square

from weightspace.compress import overfit
from weightspace.compress.codec import compress, decompress
from weightspace.compress.rd import psnr_at
from weightspace.compress.signal import Signal


def markdown(figures: dict) -> str:
    lines = [
        f"Target payload rate {figures['target']} bpp at {figures['size']}x{figures['size']}; each effort is "
        "`weightspace compress --method overfit --bpp T --effort E` (first fit + warm-started refits of the rate "
        "search; \"Adam steps\" counts the pilot fits too). The search lands at a different size for each effort, so "
        "compare through the WebP / JPEG 2000 columns: their PSNR at the overfit file's size (\"—\": no file "
        "that small).",
        "",
        "| image | effort | Adam steps | encode s | decode s | file bpp | PSNR | WebP | JPEG 2000 | vs WebP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in figures["rows"]:
        d = "—" if r["webp"] is None else f"{r['psnr'] - r['webp']:+.2f} dB"
        j = "—" if r["j2k"] is None else f"{r['j2k']:.2f}"
        w = "—" if r["webp"] is None else f"{r['webp']:.2f}"
        steps = overfit.OverfitConfig.effort(r["effort"]).total_steps()  # pilots included
        lines.append(f"| {r['image']} | {r['effort']} | {steps} | {r['encode_s']:.1f} | {r['decode_s']:.2f} | "
                     f"{r['file_bpp']:.3f} | {r['psnr']:.2f} | {w} | {j} | {d} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="camera,coffee")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--target", type=float, default=0.2)
    ap.add_argument("--efforts", default="fast,default,high")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", default=None, help="only rewrite the BENCHMARKS.md section from a JSON")
    args = ap.parse_args()
    if args.report:
        report_from(args.report, "codec_effort", markdown)
        return
    torch.set_num_threads(args.threads)
    env = environment()
    rows = []
    for name in args.images.split(","):
        im = load_square(name, args.size)
        refs = {n: [(p["file_bpp"], p["psnr"]) for p in _pil_points(im, n)] for n in ("WebP", "JPEG 2000")}
        signal = Signal(torch.from_numpy(im), "image")
        for effort in args.efforts.split(","):
            cfg = overfit.OverfitConfig.effort(effort)
            t = time.perf_counter()
            res = compress(signal, method="overfit", bpp=args.target, overfit_config=cfg)
            enc = time.perf_counter() - t
            t = time.perf_counter()
            decompress(res.data)
            dec = time.perf_counter() - t
            rows.append({"image": name, "effort": effort, "steps": cfg.total_steps(),
                         "encode_s": enc, "decode_s": dec, "file_bpp": res.file_bpp, "bpp": res.bpp, "psnr": res.psnr,
                         "webp": psnr_at(refs["WebP"], res.file_bpp), "j2k": psnr_at(refs["JPEG 2000"], res.file_bpp)})
            print(rows[-1], flush=True)
    figures = {"size": args.size, "target": args.target, "rows": rows}
    write_result("codec_effort", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
