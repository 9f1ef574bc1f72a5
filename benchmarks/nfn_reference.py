"""weightspace's NFN layers and classifiers against the NFN reference code, at equal configuration.

    python benchmarks/nfn_reference.py --nfn-repo PATH [--deps PATH] [--channels 512] [--rounds 3]
                                       [--steps 10] [--budget 10]

PATH is a checkout of AllanYangZhou/nfn (its ``nfn`` package and ``experiments/models.py`` are
imported from there, ``experiments/perceiver-pytorch`` put on the path for the latter; nothing of
it ships with weightspace). ``--deps`` is a folder with the reference's extra dependency
(``einops``), e.g. made by ``pip install --target PATH einops``; it is put on ``sys.path`` only
here. The script

1. builds the reference's ``NPLinear`` / ``HNPLinear`` and ours with the same spec and channels
   on MLPs 2-3-3-1, 2-3-4-2, 2-8-8-8-1, 2-5-3 and a small CNN (2x2 and 1x1 conv kernels), copies
   the reference's parameters into ours (`weightspace.models.nfn_reference.load_nfn_layer_state_dict`)
   and reports the largest output difference on the same random weights in float64; likewise
   (nothing to copy but the Fourier matrix) for NPPool, HNPPool, the Gaussian Fourier features and
   the IO sinusoidal encoding;
2. builds the reference's ``InvariantNFN`` with ``MlpHead`` as its configs ``nfnet=inv_ff`` (HNP)
   and ``nfnet=inv_ff_io`` (NP) do, and our presets ``nfn-hnp-mnist-inr`` / ``nfn-np-mnist-inr``,
   on the 2-32-32-1 SIREN with 10 classes: parameter counts, and the largest logit difference
   after `load_nfn_state_dict` (float64, evaluation mode and training mode with the same dropout
   seed);
3. times training steps (forward, cross-entropy, backward, Adam 1e-4 as the reference trains) of
   the HNP classifier side by side in one process — the same parameters, batch 32 and threads,
   rounds interleaved — at ``--channels`` hidden channels (512 is the preset).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
from _common import budgeted_rate, environment, write_result

from weightspace.core.spec import LayerSpec, NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models import nfn_layers
from weightspace.models.nfn import GaussianFourierFeatures, IOSinusoidalEncoding
from weightspace.models.nfn_reference import load_nfn_layer_state_dict, load_nfn_state_dict
from weightspace.models.registry import create_model

SIREN = NetworkSpec.siren(2, [32, 32], 1)  # the MNIST INR of NFN's classify_siren
SPECS = {
    "mlp 2-3-3-1": NetworkSpec.mlp([2, 3, 3, 1]),
    "mlp 2-3-4-2": NetworkSpec.mlp([2, 3, 4, 2]),
    "mlp 2-8-8-8-1": NetworkSpec.mlp([2, 8, 8, 8, 1]),
    "mlp 2-5-3": NetworkSpec.mlp([2, 5, 3]),
    "cnn 2-3-3-2": NetworkSpec(  # conv 2->3 (2x2), conv 3->3 (1x1), global average pool, linear 3->2
        (LayerSpec("conv", 2, 3, (2, 2), activation="relu"), LayerSpec("conv", 3, 3, (1, 1), activation="relu"),
         LayerSpec("linear", 3, 2)), pool="avg"),
}
PRESETS = {"HNP": "nfn-hnp-mnist-inr", "NP": "nfn-np-mnist-inr"}
C_IN, C_OUT, BATCH = 3, 5, 4


def import_reference(repo: Path, deps: Path | None) -> SimpleNamespace:
    paths = [str(repo), str(repo / "experiments" / "perceiver-pytorch")] + ([str(deps)] if deps else [])
    sys.path[:0] = paths
    try:
        import nfn.layers as layers  # the reference's own package names
        from experiments.models import InvariantNFN, MlpHead
        from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
    finally:
        del sys.path[:len(paths)]
    return SimpleNamespace(layers=layers, InvariantNFN=InvariantNFN, MlpHead=MlpHead,
                           WSF=WeightSpaceFeatures, spec_of=network_spec_from_wsfeat)


def reference_input(R, w: Weights):
    """Our ``Weights`` [B, C, out, in, *k] / [B, C, out] are the reference's layout already:
    only the container differs (missing biases become zeros, as both models treat them)."""
    w = w.with_biases_filled()
    return R.WSF(list(w.weights), list(w.biases))


def max_diff(a, b) -> tuple[float, float]:
    """(largest |a - b|, largest |a|) over every tensor: ``a`` the reference's output."""
    if isinstance(b, Weights):
        pairs = list(zip(a.weights, b.weights)) + list(zip(a.biases, b.biases))
    else:
        pairs = [(a.flatten(1), b)]
    for x, y in pairs:
        if x.shape != y.shape:
            raise ValueError(f"shapes differ: reference {tuple(x.shape)}, ours {tuple(y.shape)}")
    return max(float((x - y).abs().max()) for x, y in pairs), max(float(x.abs().max()) for x, _ in pairs)


def layer_equality(R, g: torch.Generator) -> dict:
    out = {}
    for name, spec in SPECS.items():
        w = Weights.unflatten(spec, torch.randn(BATCH, C_IN, spec.num_params, generator=g, dtype=torch.float64))
        x, ref_spec = reference_input(R, w), R.spec_of(reference_input(R, w))
        row = {}
        with torch.no_grad():
            for kind in ("NPLinear", "HNPLinear"):
                torch.manual_seed(1)
                ref = getattr(R.layers, kind)(ref_spec, C_IN, C_OUT).double()
                ours = getattr(nfn_layers, kind)(spec, C_IN, C_OUT).double()
                load_nfn_layer_state_dict(ours, ref.state_dict())
                row[kind] = max_diff(ref(x), ours(w)) + (sum(p.numel() for p in ref.parameters()),
                                                         sum(p.numel() for p in ours.parameters()))
            for kind in ("NPPool", "HNPPool"):
                row[kind] = max_diff(getattr(R.layers, kind)(ref_spec)(x), getattr(nfn_layers, kind)(spec)(w))
            torch.manual_seed(2)
            ref = R.layers.GaussianFourierFeatureTransform(ref_spec, C_IN, mapping_size=16, scale=10).double()
            ours = GaussianFourierFeatures(C_IN, 16, 10.0).double()
            ours.B.copy_(ref._B)
            row["GaussianFourier"] = max_diff(ref(x), ours(w.with_biases_filled()))
            for enc_layers in (False, True):
                ref = R.layers.IOSinusoidalEncoding(ref_spec, max_freq=10, num_bands=6, enc_layers=enc_layers)
                ours = IOSinusoidalEncoding(spec, 10.0, 6, enc_layers=enc_layers)
                row[f"IOSinusoidal{'+layers' if enc_layers else ''}"] = max_diff(ref(x), ours(w.with_biases_filled()))
        out[name] = row
        print(name, {k: f"{v[0]:.1e}" for k, v in row.items()})
    return out


def reference_model(R, mode: str, channels: int):
    """``InvariantNFN`` as classify_siren builds it for ``nfnet=inv_ff`` (HNP) or ``inv_ff_io`` (NP),
    10 classes."""
    x = reference_input(R, Weights.unflatten(SIREN, torch.zeros(1, 1, SIREN.num_params)))
    return R.InvariantNFN(
        R.spec_of(x), hchannels=[channels] * 3, mode=mode, feature_dropout=0.0, normalize=False, lnorm=None,
        append_stats=False,
        head_cls=partial(R.MlpHead, sigmoid=False, num_out=10, lnorm=False, dropout=0.5),
        inp_enc_cls=partial(R.layers.GaussianFourierFeatureTransform, mapping_size=128, scale=10),
        pos_enc_cls=partial(R.layers.IOSinusoidalEncoding, max_freq=10, num_bands=6, enc_layers=False)
        if mode == "NP" else None,
    )


def models(R, mode: str, channels: int):
    torch.manual_seed(0)
    ref = reference_model(R, mode, channels)
    ours = create_model(PRESETS[mode], SIREN, out_features=10, hidden_channels=channels)
    load_nfn_state_dict(ours, ref.state_dict())
    return ref, ours


def model_equality(R, g: torch.Generator) -> tuple[dict, dict]:
    counts, equality = {}, {}
    for mode in ("HNP", "NP"):
        ref, ours = models(R, mode, 512)
        counts[PRESETS[mode]] = {"reference": sum(p.numel() for p in ref.parameters()),
                                 "weightspace": sum(p.numel() for p in ours.parameters())}
        ref, ours = ref.double(), ours.double()
        w = Weights.unflatten(SIREN, 0.3 * torch.randn(8, 1, SIREN.num_params, generator=g, dtype=torch.float64))
        for train in (False, True):
            ref.train(train), ours.train(train)
            with torch.no_grad():
                torch.manual_seed(3)  # the same dropout masks: both heads draw them in the same order
                a = ref(reference_input(R, w))
                torch.manual_seed(3)
                b = ours(w)
            d, m = max_diff(a, b)
            equality[f"{PRESETS[mode]} ({'train' if train else 'eval'})"] = {"max_abs_diff": d, "max_abs_logit": m}
        print(mode, counts[PRESETS[mode]], {k: f"{v['max_abs_diff']:.1e}" for k, v in equality.items()})
        del ref, ours
    return counts, equality


def step_rate(model, x, y, steps: int, budget: float) -> float:
    """Examples/s of training steps with Adam 1e-4, as the reference trains."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    return budgeted_rate(model, x, y, opt, steps=steps, budget=budget)[0]


def speed(R, args, g: torch.Generator) -> dict:
    ref, ours = models(R, "HNP", args.channels)
    params = sum(p.numel() for p in ours.parameters())
    w = Weights.unflatten(SIREN, 0.3 * torch.randn(args.batch, 1, SIREN.num_params, generator=g))
    y = torch.randint(0, 10, (args.batch,), generator=g)
    rates: dict[str, list[float]] = {"reference": [], "weightspace": []}
    for _ in range(args.rounds):  # interleaved, so drifts in machine load hit both
        rates["reference"].append(step_rate(ref, reference_input(R, w), y, args.steps, args.budget))
        rates["weightspace"].append(step_rate(ours, w, y, args.steps, args.budget))
        print(f"round: reference {rates['reference'][-1]:.1f}/s, weightspace {rates['weightspace'][-1]:.1f}/s")
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"channels": args.channels, "batch": args.batch, "params": params, "examples_per_s": med,
            "rounds": rates, "ratio": med["weightspace"] / med["reference"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nfn-repo", type=Path, required=True)
    ap.add_argument("--deps", type=Path, default=None, help="folder with einops, put on sys.path")
    ap.add_argument("--channels", type=int, default=512, help="hidden channels of the timed HNP classifier")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement at most")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per measurement (at least one step)")
    args = ap.parse_args()
    for need in ("nfn/layers/layers.py", "experiments/models.py"):
        if not (args.nfn_repo / need).exists():
            ap.error(f"{args.nfn_repo} is not a complete AllanYangZhou/nfn checkout (no {need})")
    env = environment()
    R = import_reference(args.nfn_repo, args.deps)
    g = torch.Generator().manual_seed(0)
    layers = layer_equality(R, g)
    counts, equality = model_equality(R, g)
    timing = speed(R, args, g)
    figures = {"layers": layers, "params": counts, "models": equality, "speed": timing,
               "rounds": args.rounds, "steps": args.steps, "budget": args.budget,
               "channels_in_out": [C_IN, C_OUT], "batch_equality": BATCH}
    write_result("nfn_reference", env, figures, markdown(figures))
    print(markdown(figures))


def markdown(f: dict) -> str:
    mods = list(next(iter(f["layers"].values())))
    head = "| spec | " + " | ".join(mods) + " |\n|---|" + "---:|" * len(mods)
    rows = "\n".join(f"| {s} | " + " | ".join(f"{r[m][0]:.1e}" for m in mods) + " |" for s, r in f["layers"].items())
    largest = max(r[m][1] for r in f["layers"].values() for m in mods)
    lparams = "\n".join(f"| {s} | " + " | ".join(f"{r[k][2]:,} / {r[k][3]:,}" for k in ("NPLinear", "HNPLinear")) + " |"
                        for s, r in f["layers"].items())
    params = "\n".join(f"| `{k}` | {v['reference']:,} | {v['weightspace']:,} | "
                       f"{'yes' if v['reference'] == v['weightspace'] else '**no**'} |" for k, v in f["params"].items())
    models = "\n".join(f"| {k} | {v['max_abs_diff']:.1e} | {v['max_abs_logit']:.3f} |" for k, v in f["models"].items())
    s = f["speed"]
    size = ("the preset's 512" if s["channels"] == 512 else
            f"**{s['channels']} (not the preset's 512: its steps are too slow for this CPU)**")
    cin, cout = f["channels_in_out"]
    return f"""
NFN's layers (AllanYangZhou/nfn, `nfn/layers`) and weightspace's, with equal configuration and the
reference's parameters copied into ours (`weightspace.models.nfn_reference.load_nfn_layer_state_dict`),
on the same random weights ({f['batch_equality']} networks × {cin} channels, float64; the layers map {cin} -> {cout}
channels). Largest absolute difference of any output entry (pools: of the pooled features; IO
encoding without and with the layer code); the largest output entry is {largest:.2g}:

{head}
{rows}

Parameters of the layers (reference / weightspace):

| spec | NPLinear | HNPLinear |
|---|---:|---:|
{lparams}

The classifiers on the 2-32-32-1 SIREN with 10 classes: the reference's `InvariantNFN` with `MlpHead`
as `classify_siren` builds it for `nfnet=inv_ff` (HNP) and `nfnet=inv_ff_io` (NP), and our presets:

| preset | reference parameters | weightspace parameters | equal |
|---|---:|---:|:---:|
{params}

Logits after `load_nfn_state_dict` (the whole reference state dict: Fourier matrix, NF layers, head),
8 random SIRENs, float64; training mode with dropout 0.5 and the same seed before each forward:

| preset (mode) | largest logit difference | largest logit |
|---|---:|---:|
{models}

Training steps of the HNP classifier (`nfn-hnp-mnist-inr`'s architecture at {size} hidden
channels, {s['params']:,} parameters; forward, cross-entropy, backward, Adam 1e-4 as the reference
trains) side by side in one process with the same parameters, batch {s['batch']} and threads; rounds
interleaved, median of {f['rounds']} rounds, each up to {f['steps']} steps in about {f['budget']:g} s after one
warm-up step; float32:

| hidden channels | batch | reference examples/s | weightspace examples/s | ratio |
|---:|---:|---:|---:|---:|
| {s['channels']} | {s['batch']} | {s['examples_per_s']['reference']:,.1f} | {s['examples_per_s']['weightspace']:,.1f} | {s['ratio']:.2f}× |
"""


if __name__ == "__main__":
    main()
