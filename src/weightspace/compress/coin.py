"""COIN (Dupont et al. 2021): a signal stored as the quantised weights of a SIREN fitted to it.

Encoding: choose the architecture from the bit budget (`coin_architecture`), fit the SIREN
to the signal (`zoo.fit_inr.fit_inrs`, the library's one INR fitter), then quantise every
weight and bias tensor uniformly to ``bits`` bits (`compress.quantize`); below 16 bits a
few steps of quantisation-aware fine-tuning (straight-through estimator) come first.

Header fields (beside ``kind``/``shape``/``meta``): ``hidden`` (widths), ``omega``, ``bits``.
Payload: per tensor, in the order w0, b0, w1, b1, ... a float32 ``lo`` and float32 ``step``
(little-endian), then the codes of all tensors in that order, ``bits`` bits each, packed
little-endian (`quantize.pack_bits`). Values come out of the network in [0, 1] (clamped).

Devices: ``device`` (`encode`, `decode`) is where the network is fitted, fine-tuned and
evaluated; quantisation and the payload are computed on the CPU, and decoded values come
back on the CPU.
"""

from __future__ import annotations

import itertools
import math
import struct
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightspace._progress import disabled
from weightspace.compress.format import CodecError
from weightspace.compress.quantize import (
    check_bits,
    dequantize,
    fake_quantize,
    pack_bits,
    packed_size,
    quantize,
    unpack_bits,
)
from weightspace.compress.signal import Signal, check_layout
from weightspace.compress.work import mlp_macs
from weightspace.core.functional import forward
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.inr.modulated import FUNCTA
from weightspace.zoo.fit_inr import fit_inrs

MAX_LAYERS = 16
MAX_WIDTH = 1024
_PAIR = struct.Struct("<ff")


@dataclass(frozen=True)
class CoinConfig:
    """steps / lr: Adam fitting of the float network (COIN: 50k steps at 2e-4; far fewer
    at a larger rate here, to keep CPU time sane); bits: per weight;
    qat_steps / qat_lr: quantisation-aware fine-tuning when bits < 16; omega: SIREN
    frequency; seed: initialisation."""

    steps: int = 1000
    lr: float = 1e-3
    bits: int = 16
    qat_steps: int = 300
    qat_lr: float = 5e-4
    omega: float = 30.0
    seed: int = 0
    progress: bool = False


def num_params(in_features: int, hidden: tuple[int, ...], out_features: int) -> int:
    sizes = [in_features, *hidden, out_features]
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def coin_architecture(bpp: float, num_points: int, in_features: int, out_features: int, bits: int = 16) -> tuple[int, ...]:
    """Hidden widths for a budget of ``bpp`` bits per point at ``bits`` per weight.

    Depth grows with the budget, about as COIN's grid search found best (deep and narrow,
    width ~ 3 x depth): ``depth = clip(round((params / 9)^(1/3)), 2, 10)``, then the widest
    equal-width network whose weights and per-tensor ranges fit the budget.
    """
    check_bits(bits)
    budget_bits = bpp * num_points
    depth = int(min(10, max(2, round((max(budget_bits / bits, 1) / 9) ** (1 / 3)))))
    for d in range(depth, 0, -1):
        overhead = 64 * 2 * (d + 1)  # float32 lo and step per tensor
        width = 0
        while num_params(in_features, (width + 1,) * d, out_features) * bits + overhead <= budget_bits:
            width += 1
            if width >= MAX_WIDTH:
                break
        if width >= 2 or (d == 1 and width >= 1):
            return (width,) * d
    raise ValueError(f"{bpp} bits per point cannot hold even the smallest SIREN for {num_points} points")


def _recipe(hidden: tuple[int, ...], config: CoinConfig):
    return replace(FUNCTA, name="coin", hidden=hidden, omega=config.omega, lr=config.lr, steps=config.steps)


def fit(signal: Signal, hidden: tuple[int, ...], config: CoinConfig = CoinConfig(), *,
        device: str | torch.device = "cpu") -> Weights:
    """The float SIREN fitted to ``signal`` on ``device`` (one network, ``[1, 1, ...]`` `Weights`, on ``device``)."""
    recipe = _recipe(hidden, config)
    return fit_inrs(signal.coordinates(), signal.flat()[None], recipe, [config.seed], device=device,
                    progress=config.progress).weights


def _quantize_all(w: Weights, bits: int) -> tuple[list[Tensor], list[tuple[float, float]], Weights]:
    codes, ranges, deq = [], [], []
    for t in w.tensors():
        q, lo, step = quantize(t, bits)
        codes.append(q)
        ranges.append((lo, step))
        deq.append(dequantize(q, lo, step))
    return codes, ranges, _weights(w.spec, deq)


def _weights(spec: NetworkSpec, tensors: list[Tensor]) -> Weights:
    it = iter(tensors)
    pairs = [(next(it), next(it)) for _ in spec.layers]
    return Weights(spec, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))


def finetune_quantized(w: Weights, signal: Signal, config: CoinConfig) -> Weights:
    """Quantisation-aware fine-tuning: Adam on float weights whose forward pass sees their
    ``bits``-bit quantisation (straight-through gradients). The quantisation ranges move
    with the weights, so the loss is not monotone: the weights whose *quantised* network
    fitted best (the starting point included) are returned, never worse than plain rounding.
    Runs on the device of ``w``."""
    if config.bits >= 16 or config.qat_steps <= 0:
        return w
    device = w.weights[0].device
    params = [t.detach().clone().requires_grad_() for t in w.tensors()]
    opt = torch.optim.Adam(params, lr=config.qat_lr)
    coords, y = signal.coordinates().to(device), signal.flat()[None].to(device)
    best, best_loss = [p.detach().clone() for p in params], float("inf")
    from tqdm.auto import tqdm

    for step in tqdm(range(config.qat_steps + 1), disable=disabled(config.progress), leave=False,
                     desc=f"{config.bits}-bit fine-tuning", unit="step"):
        fq = _weights(w.spec, [fake_quantize(p, config.bits) for p in params])
        loss = (forward(fq, coords) - y).square().mean()  # exactly the quantised network's loss
        if float(loss.detach()) < best_loss:
            best, best_loss = [p.detach().clone() for p in params], float(loss.detach())
        if step == config.qat_steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return _weights(w.spec, best)


def render(w: Weights, grid: tuple[int, ...], points_per_chunk: int | None = None, *,
           device: str | torch.device = "cpu") -> Tensor:
    """Values ``[*grid, C]`` in [0, 1] of one network on `grid_coordinates(grid)`, in chunks of
    points so activation memory stays bounded whatever the grid; evaluated on ``device``,
    returned on the CPU."""
    from weightspace.signals.base import grid_coordinates

    width = max(layer.out_features for layer in w.spec.layers)
    chunk = points_per_chunk or max(1024, (1 << 22) // width)
    coords = grid_coordinates(grid)
    w = w.to(device)
    with torch.no_grad():
        out = torch.cat([forward(w, coords[s : s + chunk].to(device))[0].cpu() for s in range(0, coords.shape[0], chunk)])
    return out.clamp(0.0, 1.0).reshape(*grid, -1)


def encode(signal: Signal, hidden: tuple[int, ...], config: CoinConfig = CoinConfig(), *,
           device: str | torch.device = "cpu") -> tuple[dict[str, Any], bytes, Tensor]:
    """``(header, payload, decoded values [*grid, C])`` of ``signal`` with a SIREN of widths
    ``hidden``, fitted on ``device``."""
    bits = check_bits(config.bits)
    w = finetune_quantized(fit(signal, hidden, config, device=device), signal, config).to("cpu")
    codes, ranges, deq = _quantize_all(w, bits)
    payload = b"".join(_PAIR.pack(lo, step) for lo, step in ranges)
    payload += pack_bits(torch.cat([c.reshape(-1) for c in codes]).numpy(), bits)
    header = {**signal.header(), "hidden": list(hidden), "omega": config.omega, "bits": bits}
    return header, payload, render(deq, signal.grid, device=device)


def _parse(header: dict[str, Any]) -> tuple[str, tuple[int, ...], dict[str, float], NetworkSpec, int]:
    """``(kind, shape, meta, spec, bits)`` of a COIN header; `CodecError` for anything out of bounds."""
    kind, shape, meta = check_layout(header.get("kind"), header.get("shape"), header.get("meta"))
    hidden, omega, bits = header.get("hidden"), header.get("omega"), header.get("bits")
    if (
        not isinstance(hidden, list)
        or not 1 <= len(hidden) <= MAX_LAYERS
        or not all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= MAX_WIDTH for h in hidden)
    ):
        raise CodecError(f"COIN header: hidden must list 1 to {MAX_LAYERS} widths in [1, {MAX_WIDTH}], got {hidden!r}")
    if not isinstance(omega, (int, float)) or isinstance(omega, bool) or not 0 < omega <= 1e4:
        raise CodecError(f"COIN header: omega must be a number in (0, 1e4], got {omega!r}")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 16:
        raise CodecError(f"COIN header: bits must be an integer in [1, 16], got {bits!r}")
    spec = NetworkSpec.siren(len(shape) - 1, tuple(hidden), shape[-1], omega=float(omega))
    return kind, shape, meta, spec, bits


def decode_work(header: dict[str, Any], base: Any = None) -> tuple[int, str]:
    """Multiply-adds to decode a COIN file (`compress.work`), and what they are: every point of
    the grid through the SIREN, ``P * sum(n_in * n_out)`` over its layers. The header is checked
    as `decode` checks it; ``base`` is unused (COIN files carry their network)."""
    _, shape, _, spec, bits = _parse(header)
    points = math.prod(shape[:-1])
    per_point = mlp_macs([spec.layers[0].in_features, *(layer.out_features for layer in spec.layers)])
    hidden = [layer.out_features for layer in spec.layers[:-1]]
    return points * per_point, f"{points} points x {per_point} per point, SIREN hidden {hidden}, {bits}-bit weights"


def decode(header: dict[str, Any], payload: bytes, *, device: str | torch.device = "cpu") -> Signal:
    """The signal of a COIN file's header and payload (the network evaluated on ``device``,
    the signal on the CPU); `CodecError` if they disagree."""
    kind, shape, meta, spec, bits = _parse(header)
    shapes = [s for layer in spec.layers for s in (layer.weight_shape, (layer.out_features,))]
    counts = [math.prod(s) for s in shapes]
    head = _PAIR.size * len(shapes)
    if len(payload) != head + packed_size(sum(counts), bits):
        raise CodecError(
            f"COIN payload is {len(payload)} bytes; the header's network needs {head + packed_size(sum(counts), bits)}"
        )
    ranges = [_PAIR.unpack_from(payload, i * _PAIR.size) for i in range(len(shapes))]
    if not all(math.isfinite(lo) and math.isfinite(step) and step > 0 for lo, step in ranges):
        raise CodecError("COIN payload: a quantisation range is not finite and positive")
    codes = torch.from_numpy(unpack_bits(payload[head:], bits, sum(counts)).astype(np.int64))
    tensors, start = [], 0
    for s, n, (lo, step) in zip(shapes, counts, ranges):
        tensors.append(dequantize(codes[start : start + n], lo, step).reshape(1, 1, *s))
        start += n
    values = render(_weights(spec, tensors), tuple(shape[:-1]), device=device)
    if not torch.isfinite(values).all():
        raise CodecError("COIN payload decodes to non-finite values")
    return Signal(values.contiguous(), kind, meta)


__all__ = ["CoinConfig", "coin_architecture", "decode", "decode_work", "encode", "finetune_quantized", "fit", "num_params", "render"]
