"""NeRF functa on procedural multi-view scenes (`signals/scenes.py`, `inr/nerf.py`,
`tasks/nerf_functa.py`): novel-view synthesis from few views, and generated scenes.

A modulated SIREN field (3 -> rgb + density) is meta-learned through a volume renderer on
the training views of the training scenes; held-out (test) scenes are then encoded by the
inner loop from 0, 1, 2, 4 or all 8 of their training views, and their 4 held-out views
(other cameras) rendered and scored by PSNR. Baseline: the mean of the training scenes'
images from the same held-out cameras (the best constant guess per pixel). Generation: a
DDPM over the training latents; samples rendered from the held-out cameras, with each
sample's RMS distance to its nearest training scene.

    python benchmarks/nerf_functa.py [--per-class 40] [--steps 900] [--lr 3e-4] [--threads 1] [--quick]
    python benchmarks/nerf_functa.py --rerender    # the section again from benchmarks/results/nerf_functa.json

Colour is reported apart from PSNR: the object chroma (max minus min channel, mean over the
truth's object pixels) of the held-out renders beside the truth's own, since a grey
silhouette of the right shape already scores a fair PSNR on a white background.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import ROOT, environment, write_result

from weightspace.inr.meta import MetaConfig, encode
from weightspace.inr.modulated import psnr
from weightspace.signals.scenes import load_scenes
from weightspace.tasks.generate import nearest_neighbours
from weightspace.tasks.nerf_functa import (fit_nerf_functa, novel_views, object_chroma, plot_novel_views, plot_scene_rows,
                                           sample_scenes)
from weightspace.train import TrainConfig

RESULTS = ROOT / "benchmarks" / "results"
VIEW_SETS = ((), (0,), (0, 4), (0, 2, 4, 6), (0, 1, 2, 3, 4, 5, 6, 7))
STEPS = (3, 10)


def markdown(f: dict) -> str:
    s, name = f["sizes"], f.get("name", "nerf_functa")
    out = [f"Procedural scenes ({s['classes']} classes: 1-3 coloured, Lambert-shaded spheres and boxes; {s['per_class']} "
           f"per class; splits {s['splits']}), {s['size']}x{s['size']} RGB images, {s['views']} training views on an "
           f"orbit, {s['test_views']} held-out views between them at another elevation; volume rendering with "
           f"{s['samples']} stratified samples per ray. NeRF functa: modulated SIREN field {s['hidden']}, latent "
           f"{s['latent_dim']}"
           + (f" of which the last {s['appearance_dim']} entries are an appearance code shifting the colour outputs "
              f"(inner rate starting at 10; not the paper's model)" if s.get("appearance_dim") else " (as published)")
           + f", meta-learned {s['meta_steps']} steps (batch {s['meta_batch']} scenes x {s['rays']} random "
           f"rays, 3 inner steps, outer Adam rate {s.get('lr', 1e-3):g}) on the training scenes' training views "
           f"({f['seconds']['meta_learn']} s). Test scenes: latent fitted by the inner loop on k of their training "
           "views, then their held-out views rendered; PSNR (dB) against the truth, mean over test scenes; object "
           "chroma of the held-out renders (max minus min channel, mean over the truth's object pixels; the truth's "
           f"own: {f.get('truth_chroma', float('nan')):.3f}; a grey render: 0).", "",
           "| views observed | held-out PSNR (3 inner steps) | held-out PSNR (10) | observed-view PSNR (3) | "
           "held-out object chroma (3) |",
           "|---|---:|---:|---:|---:|"]
    by = {}
    for r in f["novel_views"]:
        by.setdefault(r["views"], {})[r["inner_steps"]] = r
    for k, rs in by.items():
        obs = f"{rs[STEPS[0]]['psnr_observed']:.2f}" if "psnr_observed" in rs[STEPS[0]] else "–"
        label = "0 (the zero latent)" if k == 0 else str(k)
        chroma = f"{rs[STEPS[0]]['chroma_held_out']:.3f}" if "chroma_held_out" in rs[STEPS[0]] else "–"
        out.append(f"| {label} | {rs[STEPS[0]]['psnr_held_out']:.2f} | {rs[STEPS[1]]['psnr_held_out']:.2f} | {obs} | "
                   f"{chroma} |")
    out += [f"| baseline: mean training image per held-out camera | {f['baseline_mean_image_psnr']:.2f} | | | "
            f"{f.get('baseline_chroma', float('nan')):.3f} |", "",
            f"Generation: a DDPM over the {s['splits']['train']} training latents (encoded from 1,024 random rays of "
            f"their training views); {f['generation']['count']} samples rendered from the held-out cameras, RMS distance "
            f"of each to its nearest training scene (same cameras) {min(f['generation']['nn_rms']):.3f}-"
            f"{max(f['generation']['nn_rms']):.3f} (median nearest-neighbour distance between training scenes: "
            f"{f['generation']['train_nn_rms_median']:.3f}).", "",
            f"Figures: `benchmarks/results/{name}_views.png` (held-out views of test scenes: truth, from 1 view, "
            f"from 8 views), `benchmarks/results/{name}_samples.png` (generated scenes from the held-out cameras).",
            "", "Stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in f["seconds"].items())
            + f" ({f['threads']} torch thread{'s' if f['threads'] != 1 else ''}).", "",
            *([("Training PSNR after the inner loop, mean per 100 meta steps: "
                + ", ".join(f"{v:.1f}" for v in f["meta_psnr_per_100_steps"]) + " dB."), ""]
              if f.get("meta_psnr_per_100_steps") else []),
            "The same from the CLI: `weightspace nerf fit -o runs/nerf"
            + (f" --appearance-dim {s['appearance_dim']}" if s.get("appearance_dim") else "")
            + (f" --steps {s['meta_steps']}" if s["meta_steps"] != 900 else "")
            + "` then `weightspace nerf sample runs/nerf -n 6 -o nerf-samples.png`."]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--lr", type=float, default=3e-4, help="outer Adam rate (1e-3 collapsed after ~850 steps)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--appearance-dim", type=int, default=0, help="latent entries that shift the colour outputs "
                    "(0: NeRF functa as published)")
    ap.add_argument("--name", default="nerf_functa", help="section / results name")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run; results not written)")
    ap.add_argument("--rerender", action="store_true", help="rewrite the section from its results JSON (no training)")
    args = ap.parse_args()
    if args.rerender:
        stored = json.loads((RESULTS / f"{args.name}.json").read_text())
        write_result(args.name, stored["environment"], stored["figures"], markdown(stored["figures"]))
        return
    torch.set_num_threads(args.threads)
    env = environment()
    q = args.quick
    per_class, size, steps = (2, 8, 3) if q else (args.per_class, 24, args.steps)
    seconds = {}
    start = time.perf_counter()
    scenes = load_scenes(per_class, size=size, views=8, test_views=4, seed=0)
    seconds["scenes"] = round(time.perf_counter() - start, 1)
    split = np.asarray(scenes.split)
    train, test = scenes.subset(split == "train"), scenes.subset(split == "test")
    meta = MetaConfig(steps=steps, batch_size=8, inner_steps=3, lr=args.lr, seed=0, progress=True,
                      points_per_step=256)
    start = time.perf_counter()
    res = fit_nerf_functa(scenes, hidden=(64, 64, 64), latent_dim=64, meta=meta, seed=0,
                          appearance_dim=args.appearance_dim)
    seconds["meta_learn"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    rows = []
    for k in STEPS:
        for r in novel_views(res.model, res.decode, test, VIEW_SETS, steps=k):
            rows.append({key: v for key, v in r.items() if key != "psnr_held_out_per_scene"})
            print(rows[-1], flush=True)
    seconds["novel_views"] = round(time.perf_counter() - start, 1)
    mean_image = train.test_values.mean(0, keepdim=True).expand_as(test.test_values)
    baseline = float(psnr(mean_image, test.test_values).mean())
    baseline_chroma = object_chroma(mean_image, test.test_values, scenes.render.background)
    truth_chroma = object_chroma(test.test_values, test.test_values, scenes.render.background)
    start = time.perf_counter()
    sub = torch.randperm(len(scenes.rays), generator=torch.Generator().manual_seed(0))[:1024]
    latents = encode(res.model, train.values[:, sub], 3, coords=scenes.rays[sub], batch_size=16, decode=res.decode)
    cfg = TrainConfig(epochs=2 if q else 300, batch_size=64, lr=1e-3, weight_decay=0.0, progress=False, seed=0)
    samples = sample_scenes(res.model, res.decode, latents, scenes.test_rays, 6, seed=0, config=cfg)
    _, nn = nearest_neighbours(samples.views, train.test_values)
    half = len(train) // 2  # each training scene of one half against the other half
    _, train_nn = nearest_neighbours(train.test_values[:half], train.test_values[half:])
    seconds["encode_ddpm_sample"] = round(time.perf_counter() - start, 1)
    sizes = {"classes": 3, "per_class": per_class, "splits": {k: int((split == k).sum()) for k in ("train", "val", "test")},
             "size": size, "views": 8, "test_views": 4, "samples": scenes.render.samples, "hidden": [64, 64, 64],
             "latent_dim": 64, "meta_steps": steps, "meta_batch": 8, "rays": 256, "lr": args.lr,
             "appearance_dim": args.appearance_dim}
    figures = {"sizes": sizes, "novel_views": rows, "baseline_mean_image_psnr": baseline, "seconds": seconds,
               "baseline_chroma": baseline_chroma, "truth_chroma": truth_chroma,
               "generation": {"count": 6, "nn_rms": nn.tolist(), "train_nn_rms_median": float(train_nn.median())},
               "threads": args.threads,
               "meta_psnr_per_100_steps": [round(float(np.mean(res.history.psnr[i:i + 100])), 2)
                                           for i in range(0, len(res.history.psnr), 100)]}
    if q:
        print(markdown(figures))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_novel_views(res.model, res.decode, test, RESULTS / f"{args.name}_views.png", steps=3)
    plot_scene_rows([(f"sample {i}", v) for i, v in enumerate(samples.views)], size, RESULTS / f"{args.name}_samples.png")
    figures["name"] = args.name
    write_result(args.name, env, figures, markdown(figures))


if __name__ == "__main__":
    main()
