"""SANE across sizes and architectures: one model trained on two zoos (small CNNs and MLPs),
probed on those and on two zoos it never saw, and sampling a wider CNN than any it was
trained on, without training and after a few fine-tuning steps, beside random initialisation.

    python benchmarks/sane.py [--epochs 8] [--supersample 4] [--samples 32] [--threads 2] [--quick]
    python benchmarks/sane.py --report     # the section again from benchmarks/results/sane.json

Zoos (build them first; commands in BENCHMARKS.md, section sane):

- trained on: zoos/cnn-mnist-10k (small CNN, 16 channels; `benchmarks/cnn_mnist_zoo.py`) and
  zoos/mlp-mnist (784-32-10 MLPs);
- never seen: zoos/cnn8-mnist (small CNN, 8 channels) and zoos/mlp-digits (64-32-10 MLPs on
  scikit-learn's 8x8 digits: another architecture and another dataset).

Probes (linear and MLP, `tasks.hyperrep_probe.run_probes`) fit on each zoo's train split and
score on its test split, on the frozen SANE embeddings (mean token latent) and on StatNN's
statistics of the same networks.

Sampling (SANE decodes latents at the target architecture's token positions; the KDE
bandwidth, in latent units, is the widest of a grid from the reference's 0.2 down whose
samples keep 90% of the plain reconstruction's accuracy on training images): for the trained architecture, around the encoded good
models of the 16-channel zoo (top 30%, one activation), per network ("joint") and token by
token; for a small CNN with 24 channels (226 tokens, no such network in training), around (a)
encoded prompts built from good 16-channel models by function-preserving widening
(Net2WiderNet) and (b) encoded randomly initialised 24-channel networks (SANE's bootstrapping
start), with one bootstrapping round. The prompts and the good models are shown themselves.
De-standardised with the 16-channel zoo's per-layer statistics. Measured on the zoo's 2,000
test images; fine-tuned with Adam (1e-3, batch 64) on its 10,000 training images, beside
randomly initialised networks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import ROOT, environment, report_from, write_result

from weightspace.core.sane_tokens import layout_of_spec
from weightspace.core.weights import Weights
from weightspace.models.sane import SaneConfig, num_parameters
from weightspace.tasks.hyperrep_probe import run_probes, statnn_features
from weightspace.tasks.hyperrep_sample import accuracy, fine_tune, random_networks, select_good, zoo_images
from weightspace.tasks.sane import (
    decode_latents,
    embed,
    encode_tokens,
    LayerStats,
    fit_sane,
    kde_model_sample,
    kde_token_sample,
    save_sane,
    widen,
)
from weightspace.train import TrainConfig
from weightspace.zoo.search_space import small_cnn_spec, spec_with_activation
from weightspace.zoo.store import Zoo

RESULTS = ROOT / "benchmarks" / "results"
TRAIN_ZOOS = {"cnn16-mnist": "zoos/cnn-mnist-10k", "mlp-mnist": "zoos/mlp-mnist"}
UNSEEN_ZOOS = {"cnn8-mnist": "zoos/cnn8-mnist", "mlp-digits": "zoos/mlp-digits"}
BUILD = {
    "zoos/cnn-mnist-10k": "python benchmarks/cnn_mnist_zoo.py --preset cnn-mnist-10k",
    "zoos/mlp-mnist": "weightspace zoo train-classifiers --out zoos/mlp-mnist --dataset ../shared/data/mnist --recipe mlp "
                      "--runs 512 --epochs 4 --checkpoints 0,1,2,4 --n-train 10000 --n-test 2000 --seed 1",
    "zoos/cnn8-mnist": "weightspace zoo train-classifiers --out zoos/cnn8-mnist --dataset ../shared/data/mnist --recipe "
                       "small-cnn --width 8 --runs 256 --epochs 4 --checkpoints 0,1,2,4 --n-train 10000 --n-test 2000 "
                       "--seed 2",
    "zoos/mlp-digits": "weightspace zoo train-classifiers --out zoos/mlp-digits --dataset digits --recipe mlp --runs 256 "
                       "--epochs 8 --checkpoints 0,1,2,4,8 --seed 3",
}
TARGETS = ("test_accuracy", "epoch", "gap", "activation", "init")
STEPS = (0, 10, 50, 100)
WIDE = 24
GRID = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005)  # KDE bandwidths tried, latent units (0.2: the reference's)


def open_zoo(path: str) -> Zoo:
    full = ROOT / path
    if not (full / "zoo.json").exists() or not Zoo.open(full).complete:
        raise SystemExit(f"{path} is missing or incomplete; build it with: {BUILD[path]}")
    return Zoo.open(full)


def markdown(f: dict) -> str:
    t, s = f["training"], f["sampling"]
    cfg = f["config"]
    out = [f"One SANE (`models/sane.py`: tokens of {cfg['tokensize']}, windows of {cfg['window']}, d_model "
           f"{cfg['d_model']}, {cfg['layers']} + {cfg['layers']} transformer layers, latent {cfg['latent_dim']}, "
           f"{t['parameters']:,} parameters; CPU-sized, not the reference's 2048-wide model) trained "
           f"{t['epochs']} epochs on the train splits of two zoos at once, {t['supersample']} random windows per "
           f"network and epoch, loss 0.95 x reconstruction + 0.05 x NT-Xent (the reference's gamma), in "
           f"{t['seconds']:.0f} s; final train / val reconstruction {t['train_recon']:.3f} / {t['val_recon']:.3f} "
           "(standardised units).", "",
           "| zoo | architecture | tokens per network | networks (train / test) | in SANE's training |",
           "|---|---|---:|---|---|"]
    for name, z in f["zoos"].items():
        out.append(f"| {name} | {z['spec']} | {z['tokens']} | {z['train']} / {z['test']} | "
                   f"{'yes' if z['trained_on'] else '**no**'} |")
    out += ["", "Probes on the test split (R² for numbers, accuracy for categories; linear = ridge / logistic, "
            "MLP = one hidden layer of 64; StatNN: 7 statistics per tensor of the same networks):", "",
            "| zoo | target | metric | SANE linear | SANE MLP | StatNN linear | StatNN MLP | majority |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, rows in f["probes"].items():
        for target in TARGETS:
            cells = {(r["features"], r["probe"]): r for r in rows if r["target"] == target}
            if not cells:
                continue
            any_r = next(iter(cells.values()))
            v = lambda feat, probe: f"{cells[(feat, probe)]['value']:.3f}" if (feat, probe) in cells else "–"
            base = f"{any_r['baseline']:.3f}" if any_r["metric"] == "accuracy" else "–"
            out.append(f"| {name} | {target} | {any_r['metric']} | {v('sane', 'linear')} | {v('sane', 'mlp')} | "
                       f"{v('statnn', 'linear')} | {v('statnn', 'mlp')} | {base} |")
    out += ["", f"Sampling, the trained architecture and a wider CNN ({s['wide_spec']}; SANE saw CNNs of 16 channels "
            f"only; activation "
            f"{s['activation']}, the most common among the 16-channel zoo's top 30%: {s['num_good']} good models, "
            f"their mean test accuracy {s['good_mean']:.3f}). Mean test accuracy of {s['n']} networks per row after k "
            "fine-tuning steps (k = 0: as decoded / initialised):", "",
            "| networks | " + " | ".join(f"k = {k}" for k in next(iter(s["curves"].values()))) + " |",
            "|---|" + "---:|" * len(next(iter(s["curves"].values())))]
    sel = ", ".join(f"{k} → {v:.3f}" for k, v in s["selection"].items())
    for label, curve in s["curves"].items():
        out.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in curve.values()) + " |")
    out += ["", f"KDE bandwidth {s['bandwidth']} (latent units; the good models' token latents spread by "
            f"{s['latent_spread']:.3f} per dimension, std over the models, mean over tokens and dimensions): the widest of the grid whose joint-KDE samples of the good 16-channel models keep "
            f">= 90% of their plain reconstruction's accuracy on 2,000 *training* images ({s['selection_reconstruction']:.3f}"
            f"); accuracy there by bandwidth: {sel}. The reference's 0.2 is the first entry."]
    boot = s.get("bootstrap")
    if boot:
        out += ["", f"SANE's bootstrapping, one round from the random-init prompt's samples: after {boot['steps']} "
                f"fine-tuning steps they are encoded again and {s['n']} new networks drawn by the joint KDE around them "
                f"(bandwidth {boot['bandwidth']}): {boot['resampled_mean']:.3f} without further training (the "
                f"fine-tuned anchors: {boot['anchor_mean']:.3f})."]
    out += ["", f"Stage wall times (s): {', '.join(f'{k} {v:.0f}' for k, v in f['seconds'].items())}.", "",
            "Zoo builds: " + "; ".join(f"`{cmd}`" for cmd in BUILD.values()) + "."]
    return "\n".join(out)


def probes_for(model, stats, weights, tables, seed) -> list[dict]:
    feats = {"sane": {s: embed(model, weights[s], stats).double().numpy() for s in ("train", "test")},
             "statnn": {s: statnn_features(weights[s]) for s in ("train", "test")}}
    targets = [t for t in TARGETS if t in tables["train"].columns]
    return [r.__dict__ for r in run_probes(feats, tables, targets, max_dim=None, seed=seed)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--supersample", type=int, default=4)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run; results not written)")
    ap.add_argument("--report", action="store_true", help="re-render the section from the stored JSON")
    args = ap.parse_args()
    if args.report:
        return report_from(RESULTS / "sane.json", "sane", markdown)
    torch.set_num_threads(args.threads)
    env = environment()
    q = args.quick
    config = SaneConfig()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    zoos = {name: open_zoo(path) for name, path in {**TRAIN_ZOOS, **UNSEEN_ZOOS}.items()}
    data = {}
    for name, zoo in zoos.items():
        splits = {s: zoo.load(s) for s in ("train", "val", "test")}
        if q:
            pick = {s: torch.randperm(len(w), generator=torch.Generator().manual_seed(0))[:64] for s, (w, _) in splits.items()}
            splits = {s: (w[pick[s]], t.iloc[pick[s].numpy()].reset_index(drop=True)) for s, (w, t) in splits.items()}
        data[name] = splits
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tc = TrainConfig(epochs=1 if q else args.epochs, batch_size=64, lr=3e-4, weight_decay=1e-6, warmup_steps=100,
                     seed=args.seed, progress=True)
    result = fit_sane({n: data[n]["train"][0] for n in TRAIN_ZOOS}, {n: data[n]["val"][0] for n in TRAIN_ZOOS},
                      config=config, train_config=tc, supersample=args.supersample)
    seconds["train"] = time.perf_counter() - t0
    model = result.model
    if not q:
        save_sane(ROOT / "runs" / "sane.safetensors", result, info={"zoos": TRAIN_ZOOS})
    last = result.history[-1]
    print(f"trained in {seconds['train']:.0f} s: {last}", flush=True)

    t0 = time.perf_counter()
    probes, zoo_rows = {}, {}
    for name, splits in data.items():
        trained_on = name in TRAIN_ZOOS
        # an unseen zoo is standardised with its own training networks' statistics (no training of SANE)
        stats = result.stats[name] if trained_on else LayerStats.fit(splits["train"][0], config.tokensize)
        w = {s: splits[s][0] for s in ("train", "test")}
        tables = {s: splits[s][1] for s in ("train", "test")}
        probes[name] = probes_for(model, stats, w, tables, args.seed)
        spec = w["train"].spec
        zoo_rows[name] = {"spec": spec.describe(), "tokens": layout_of_spec(spec, config.tokensize).num_tokens,
                          "train": len(w["train"]), "test": len(w["test"]), "trained_on": trained_on}
        print(name, [(r["target"], r["features"], r["probe"], round(r["value"], 3)) for r in probes[name]], flush=True)
    seconds["probes"] = time.perf_counter() - t0

    # ---- sampling a wider CNN
    t0 = time.perf_counter()
    cnn_w, cnn_t = data["cnn16-mnist"]["train"]
    stats16 = result.stats["cnn16-mnist"]
    good = select_good(cnn_t, top_fraction=0.3)
    activation = str(cnn_t["activation"].iloc[good].mode().iloc[0])
    good = good[cnn_t["activation"].iloc[good].to_numpy() == activation]
    spec16 = spec_with_activation(cnn_w.spec, activation)
    spec_wide = spec_with_activation(small_cnn_spec(1, 10, width=WIDE), activation)
    (train_x, train_y), (test_x, test_y) = zoo_images(zoos["cnn16-mnist"])
    if q:
        train_x, train_y, test_x, test_y = train_x[:512], train_y[:512], test_x[:256], test_y[:256]
    n = 4 if q else args.samples
    picked = cnn_w[torch.as_tensor(good)]
    good_w = Weights(spec16, picked.weights, picked.biases)  # run with the good models' activation
    anchors16 = good_w[torch.randperm(len(good_w), generator=torch.Generator().manual_seed(args.seed))[:n]]
    good_z = encode_tokens(model, good_w, stats16)  # [G, T16, d]
    prompt = widen(anchors16, spec_wide, seed=args.seed)  # trained 16-channel networks as 24-channel ones
    init_wide = random_networks(spec_wide, n, seed=args.seed + 100)
    # the bandwidth: the widest of GRID whose joint-KDE samples keep >= 90% of the plain
    # reconstruction's accuracy on training images (never the test images)
    sel_x, sel_y = train_x[:2000], train_y[:2000]
    anchor_z = encode_tokens(model, anchors16, stats16)
    recon_acc = float(accuracy(decode_latents(model, anchor_z, spec16, stats16), sel_x, sel_y).mean())
    selection = {bw: float(accuracy(decode_latents(model, kde_model_sample(anchor_z, n, bandwidth=bw, seed=args.seed + 5),
                                                   spec16, stats16), sel_x, sel_y).mean()) for bw in GRID}
    ok = [bw for bw, acc in selection.items() if acc >= 0.9 * recon_acc]
    bw = max(ok) if ok else min(GRID)
    print(f"bandwidth {bw}: {selection} (reconstruction {recon_acc:.3f})", flush=True)
    prompt_z = encode_tokens(model, prompt, stats16)
    groups = {
        "good 16-channel models themselves (no SANE)": anchors16,
        "SANE, 16 channels (trained architecture): the good models encoded + decoded":
            decode_latents(model, anchor_z, spec16, stats16),
        "SANE, 16 channels: KDE around the good models (joint)":
            decode_latents(model, kde_model_sample(good_z, n, bandwidth=bw, seed=args.seed), spec16, stats16),
        "SANE, 16 channels: token-wise KDE around the good models":
            decode_latents(model, kde_token_sample(good_z, n, bandwidth=bw, seed=args.seed), spec16, stats16),
        "random init, 16 channels": random_networks(spec16, n, seed=args.seed + 300),
        f"prompt: good 16-channel models widened to {WIDE} channels (Net2WiderNet, no SANE)": prompt,
        f"SANE, {WIDE} channels: the widened prompts encoded + decoded": decode_latents(model, prompt_z, spec_wide, stats16),
        f"SANE, {WIDE} channels: KDE around the encoded widened prompts (joint)":
            decode_latents(model, kde_model_sample(prompt_z, n, bandwidth=bw, seed=args.seed), spec_wide, stats16),
        f"SANE, {WIDE} channels: KDE around encoded random inits (joint; bootstrapping's start)":
            decode_latents(model, kde_model_sample(encode_tokens(model, init_wide, stats16), n, bandwidth=bw,
                                                   seed=args.seed), spec_wide, stats16),
        f"random init, {WIDE} channels (PyTorch default)": random_networks(spec_wide, n, seed=args.seed + 200),
    }
    steps = (0, 2, 5, 10) if q else STEPS
    curves, tuned = {}, {}
    for label, nets in groups.items():
        tuned[label], curve = fine_tune(nets, train_x, train_y, steps=max(steps), batch_size=64, lr=1e-3,
                                        seed=args.seed, eval_at=steps, eval_data=(test_x, test_y))
        curves[label] = {str(k): float(v.mean()) for k, v in curve.items()}
        print(label, curves[label], flush=True)
    # SANE's bootstrapping, one round from the random-init prompt: fine-tune, encode again, re-sample
    start = f"SANE, {WIDE} channels: KDE around encoded random inits (joint; bootstrapping's start)"
    anchors = fine_tune(groups[start], train_x, train_y, steps=steps[1], batch_size=64, lr=1e-3, seed=args.seed)[0]
    resampled = decode_latents(model, kde_model_sample(encode_tokens(model, anchors, stats16), n, bandwidth=bw,
                                                       seed=args.seed + 1), spec_wide, stats16)
    bootstrap = {"steps": steps[1], "bandwidth": bw, "anchor_mean": float(accuracy(anchors, test_x, test_y).mean()),
                 "resampled_mean": float(accuracy(resampled, test_x, test_y).mean())}
    seconds["sampling"] = time.perf_counter() - t0
    sampling = {"wide_spec": spec_wide.describe(), "activation": activation, "num_good": len(good),
                "good_mean": float(cnn_t["test_accuracy"].iloc[good].mean()), "n": n, "curves": curves,
                "bootstrap": bootstrap, "bandwidth": bw, "selection": {str(k): v for k, v in selection.items()},
                "selection_reconstruction": recon_acc, "latent_spread": float(good_z.std(0).mean())}
    env["load_average_at_end"] = __import__("os").getloadavg()
    figures = {"config": config.to_dict(), "zoos": zoo_rows, "probes": probes, "sampling": sampling,
               "seconds": seconds,
               "training": {"epochs": tc.epochs, "supersample": args.supersample, "seconds": seconds["train"],
                            "parameters": num_parameters(model), "history": result.history,
                            "train_recon": last.get("train/recon", float("nan")),
                            "val_recon": last.get("val/recon", float("nan"))}}
    md = markdown(figures)
    print(md)
    if not q:
        write_result("sane", env, figures, md)


if __name__ == "__main__":
    main()
