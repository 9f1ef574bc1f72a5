"""The overfit image codec against JPEG, WebP and JPEG 2000 at full sizes, matched at total file bits.

    python benchmarks/codec_rd.py [--effort default] [--sizes 256,512] [--targets 0.1,0.15,0.2,0.3]

- Images: scikit-image's bundled photographs, centre-cropped to a square and resized
  (anti-aliased) to each size, rounded to 8 bits: camera (grey), astronaut, coffee, chelsea
  (RGB) at the first size; ``--large-images`` (default camera, astronaut) at the others. The
  overfit codec has no training set, so no image is "seen" before it is coded.
- overfit (`weightspace.compress.overfit`, ``--effort``): one `compress(..., bpp=target)` per
  target payload rate, as `weightspace compress --method overfit --bpp T` runs it (rate search
  included), timed end to end; each file is decoded (timed) and checked against the
  encoder's rendering.
- References (Pillow): JPEG (quality 1..95, ``optimize``), WebP (quality 0..100, ``method=6``,
  its slowest and best), JPEG 2000 (OpenJPEG, irreversible 9/7 wavelet, compression ratios
  from 10 to 400). Rates count whole files.
- Matched: each reference codec's PSNR at the overfit file's size, linear in log rate along
  its curve (`compress.rd.psnr_at`). BD-rate (`compress.rd.bd_rate`, PCHIP) of the overfit
  curve against WebP's and JPEG 2000's over their common PSNR range, on file bits.
- ``--patch-baseline``: COIN++ with the paper's patch modulations (a base meta-learned on 16x16
  patches of other bundled grey images, as `benchmarks/compress.py` trains it), on the grey
  image at the first size: its place on the same curves.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, environment, report_from, write_result

from weightspace.compress import overfit
from weightspace.compress.codec import compress, decompress, psnr
from weightspace.compress.rd import bd_rate, psnr_at
from weightspace.compress.signal import Signal

GREY = ("camera",)
REFERENCES = ("JPEG", "WebP", "JPEG 2000")


def load_square(name: str, size: int) -> np.ndarray:
    """A bundled image, centre-cropped square, resized to ``size`` (anti-aliased), 8-bit levels, float32 [H, W, C]."""
    from skimage import data, transform

    im = getattr(data, name)()
    im = im.astype(np.float32) / 255.0
    if im.ndim == 3 and im.shape[2] == 4:
        im = im[..., :3]
    h, w = im.shape[:2]
    s = min(h, w)
    im = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    im = transform.resize(im, (size, size), anti_aliasing=True)
    im = np.round(np.clip(im, 0, 1) * 255) / 255
    return (im[..., None] if im.ndim == 2 else im).astype(np.float32)


def _pil_points(im: np.ndarray, codec: str) -> list[dict]:
    from PIL import Image

    arr = np.round(im * 255).astype(np.uint8)
    pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    settings = {
        "JPEG": [("JPEG", {"quality": q, "optimize": True}) for q in range(1, 96)],
        "WebP": [("WEBP", {"quality": q, "method": 6}) for q in range(0, 101)],
        "JPEG 2000": [("JPEG2000", {"quality_mode": "rates", "quality_layers": [r], "irreversible": True})
                      for r in np.geomspace(10, 400, 60).round(1)],
    }[codec]
    out = []
    for fmt, kw in settings:
        buf = io.BytesIO()
        t = time.perf_counter()
        pil.save(buf, fmt, **kw)
        enc = time.perf_counter() - t
        t = time.perf_counter()
        rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(pil.mode), dtype=np.float32) / 255
        dec = time.perf_counter() - t
        rec = rec[..., None] if rec.ndim == 2 else rec
        out.append({"setting": {k: (float(v[0]) if isinstance(v, list) else v) for k, v in kw.items()},
                    "file_bpp": 8 * buf.tell() / (im.shape[0] * im.shape[1]),
                    "psnr": psnr(torch.from_numpy(rec), torch.from_numpy(im)), "encode_s": enc, "decode_s": dec})
    return out


def _overfit_points(im: np.ndarray, targets: list[float], config: overfit.OverfitConfig) -> list[dict]:
    signal = Signal(torch.from_numpy(im), "image")
    out = []
    for target in targets:
        t = time.perf_counter()
        res = compress(signal, method="overfit", bpp=target, overfit_config=config, progress=True)
        enc = time.perf_counter() - t
        t = time.perf_counter()
        dec = decompress(res.data)
        dec_s = time.perf_counter() - t
        rendered = psnr(dec.values, signal.values)
        if abs(rendered - res.psnr) > 1e-3:
            raise SystemExit(f"decoded file differs from the encoder's rendering: {rendered:.4f} vs {res.psnr:.4f} dB")
        out.append({"target_bpp": target, "bpp": res.bpp, "file_bpp": res.file_bpp, "psnr": res.psnr,
                    "reached": res.reached, "encode_s": enc, "decode_s": dec_s, "bytes": len(res.data)})
        print(f"  target {target}: {res.file_bpp:.3f} file bpp, {res.psnr:.2f} dB, encode {enc:.1f} s, decode {dec_s:.2f} s",
              flush=True)
    return out


def _patch_points(im: np.ndarray, size: int, steps: int, seed: int) -> dict:
    """COIN++ patch modulations (the paper's layout) on ``im``: a grey base as benchmarks/compress.py trains it."""
    import compress as cbench

    from weightspace.compress.codec import COINPP_STEPS, _result
    from weightspace.compress.coinpp import encode_latents_to_file, latents_of

    args = argparse.Namespace(width=64, depth=3, batch_size=32, base_lr=1e-3, first_order=False)
    t = time.perf_counter()
    patches = cbench.train_patches(cbench.GREY_TRAIN, size / 512, True, 16, 16)
    base, train_s = cbench.base_for(patches, "image", (16, 16), args, seed, latent=32, steps=steps)
    signal = Signal(torch.from_numpy(im), "image")
    z = latents_of(signal, base)
    pts = []
    for step in COINPP_STEPS:
        header, payload, values = encode_latents_to_file(signal, base, z, step)
        res = _result("coin++", signal, header, payload, values, False)
        pts.append({"quant_step": step, "bpp": res.bpp, "file_bpp": res.file_bpp, "psnr": res.psnr})
    return {"train_s": train_s, "patches": int(patches.shape[0]), "outer_steps": steps, "points": pts,
            "total_s": time.perf_counter() - t}


def _plot(figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = figures["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.4), squeeze=False)
    styles = {"JPEG": "C0", "WebP": "C1", "JPEG 2000": "C2"}
    for ax, run in zip(axes[0], runs):
        for name in REFERENCES:
            pts = sorted((p["file_bpp"], p["psnr"]) for p in run["references"][name] if p["file_bpp"] <= 0.45)
            ax.plot(*zip(*pts), color=styles[name], lw=1.2, label=name)
        pts = sorted((p["file_bpp"], p["psnr"]) for p in run["overfit"])
        ax.plot(*zip(*pts), "k-o", ms=4, lw=1.6, label=f"overfit ({figures['effort']})")
        if run.get("patch"):
            pp = sorted((p["file_bpp"], p["psnr"]) for p in run["patch"]["points"] if p["file_bpp"] <= 0.45)
            if pp:
                ax.plot(*zip(*pp), "m--s", ms=3, lw=1, label="COIN++ patches")
        ax.set_title(f"{run['image']} {run['size']}x{run['size']}", fontsize=9)
        ax.set_xlabel("file bits per pixel")
        ax.set_xlim(0, 0.45)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR (dB)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out = ROOT / "benchmarks" / "results" / "codec_rd.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def markdown(figures: dict) -> str:
    cfg = figures["config"]
    lines = [
        f"Overfit codec at effort `{figures['effort']}` ({cfg['pilots']} x {cfg['pilot_steps']} pilot + "
        f"{cfg['steps']} + {cfg['search'] - 1} x {cfg['refit_steps']} Adam steps per file, "
        f"`weightspace compress --method overfit --bpp T`), one file per target payload rate; JPEG, WebP "
        "(method 6) and JPEG 2000 (OpenJPEG 9/7) from Pillow. All rates are whole files. \"WebP\" etc.: "
        "that codec's PSNR at the overfit file's size, interpolated in log rate along its curve; \"—\": "
        "that codec's smallest file is larger (listed below the table). Encode: the whole `compress` call (pilot fits, fit, rate search, entropy coding); "
        f"decode: `decompress` of the file. Whole run {figures['total_s'] / 60:.1f} min.",
        "",
        "Goal (issue 26): at file rates <= 0.3 bpp, PSNR at or above WebP at every point and above JPEG 2000.",
        "",
        "| image | size | file bpp | payload bpp | PSNR | JPEG | WebP | JPEG 2000 | vs WebP | encode s | decode s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    met = total = 0
    for run in figures["runs"]:
        for p in sorted(run["overfit"], key=lambda p: p["file_bpp"]):
            ref = {n: psnr_at([(q["file_bpp"], q["psnr"]) for q in run["references"][n]], p["file_bpp"]) for n in REFERENCES}
            d = None if ref["WebP"] is None else p["psnr"] - ref["WebP"]
            if p["file_bpp"] <= 0.3 and d is not None:
                total += 1
                met += d >= 0
            lines.append(
                f"| {run['image']} | {run['size']} | {p['file_bpp']:.3f} | {p['bpp']:.3f} | {p['psnr']:.2f} | "
                f"{fmt(ref['JPEG'])} | {fmt(ref['WebP'])} | {fmt(ref['JPEG 2000'])} | "
                f"{'—' if d is None else f'{d:+.2f} dB'} | {p['encode_s']:.1f} | {p['decode_s']:.2f} |"
            )
    small = "; ".join(
        f"{run['image']} {run['size']}: " + ", ".join(
            f"{n} {min(q['file_bpp'] for q in run['references'][n]):.3f}" for n in REFERENCES)
        for run in figures["runs"])
    lines += ["", f"Smallest files (bpp) the reference codecs make: {small}.", "",
              f"At or above WebP at {met} of {total} points at or below 0.3 file bpp where WebP can make a file "
              "that small.", "",
              "BD-rate of the overfit curve on file bits (negative: fewer bits than the reference at equal PSNR):", "",
              "| image | size | vs WebP | vs JPEG 2000 | vs JPEG | PSNR range compared |", "|---|---|---:|---:|---:|---|"]
    for run in figures["runs"]:
        ours = [(p["file_bpp"], p["psnr"]) for p in run["overfit"]]
        row = []
        for n in ("WebP", "JPEG 2000", "JPEG"):
            b = bd_rate(ours, [(q["file_bpp"], q["psnr"]) for q in run["references"][n]])
            row.append("—" if b is None else f"{b:+.1f}%")
        ps = [p for _, p in ours]
        lines.append(f"| {run['image']} | {run['size']} | {' | '.join(row)} | {min(ps):.2f}-{max(ps):.2f} dB |")
    for run in figures["runs"]:
        if run.get("patch"):
            pt = run["patch"]
            lines += ["", f"COIN++ patch modulations (the paper's layout; base meta-learned for {pt['outer_steps']} outer "
                      f"steps on {pt['patches']} 16x16 patches of other grey images, {pt['train_s']:.0f} s), "
                      f"{run['image']} {run['size']}x{run['size']}:", "",
                      "| quantisation step | file bpp | PSNR | WebP at that size |", "|---:|---:|---:|---:|"]
            webp = [(q["file_bpp"], q["psnr"]) for q in run["references"]["WebP"]]
            for p in pt["points"]:
                if p["file_bpp"] <= 1.0:
                    lines.append(f"| {p['quant_step']} | {p['file_bpp']:.3f} | {p['psnr']:.2f} | "
                                 f"{fmt(psnr_at(webp, p['file_bpp']))} |")
            top = max(run["overfit"], key=lambda p: p["file_bpp"])
            lines += ["", f"The overfit codec's largest file on this image: {top['psnr']:.2f} dB at "
                      f"{top['file_bpp']:.3f} bpp."]
    lines += ["", "Figure: `benchmarks/results/codec_rd.png`."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--effort", default="default", choices=list(overfit.EFFORTS))
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--images", default="camera,astronaut,coffee,chelsea", help="at the first size")
    ap.add_argument("--large-images", default="camera,astronaut", help="at the other sizes")
    ap.add_argument("--targets", default="0.1,0.15,0.2,0.3", help="payload bpp targets at the first size")
    ap.add_argument("--large-targets", default="0.1,0.2,0.3", help="at the other sizes")
    ap.add_argument("--patch-baseline", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--patch-steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", default=None, help="only rewrite the figure and BENCHMARKS.md section from a JSON")
    args = ap.parse_args()
    if args.report:
        _plot(json.loads(Path(args.report).read_text())["figures"])
        report_from(args.report, "codec_rd", markdown)
        return
    torch.set_num_threads(args.threads)
    env = environment()
    t0 = time.time()
    config = overfit.OverfitConfig.effort(args.effort, seed=args.seed)
    sizes = [int(s) for s in args.sizes.split(",")]
    figures: dict = {"effort": args.effort, "config": config.__dict__, "runs": []}
    for i, size in enumerate(sizes):
        names = (args.images if i == 0 else args.large_images).split(",")
        targets = [float(t) for t in (args.targets if i == 0 else args.large_targets).split(",")]
        for name in names:
            print(f"{name} {size}x{size}", flush=True)
            im = load_square(name, size)
            run = {"image": name, "size": size, "channels": int(im.shape[2]),
                   "references": {n: _pil_points(im, n) for n in REFERENCES},
                   "overfit": _overfit_points(im, targets, config)}
            if args.patch_baseline and i == 0 and name in GREY:
                run["patch"] = _patch_points(im, size, args.patch_steps, args.seed)
            figures["runs"].append(run)
    figures["total_s"] = time.time() - t0
    _plot(figures)
    write_result("codec_rd", env, figures, markdown(figures))


if __name__ == "__main__":
    main()
