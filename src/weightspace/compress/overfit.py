"""An overfitted image codec: latents *and* decoder fitted to each image, all in the file.

The family of Cool-chic (Ladune et al. 2023) and C3 (Kim et al. 2024): no trained base and
no training set, so it codes any image the same way. It is not Cool-chic: its entropy model
uses a checkerboard context (two passes per latent grid) instead of Cool-chic's raster-order
autoregressive model, so decoding is a handful of vectorised passes, and it starts every fit
from a pyramid decomposition of the image rather than from zero. Per image:

- **Latents**: ``levels`` grids, level ``l`` of shape ``ceil([H, W] / 2^l)``. Grey images have
  one channel per level; RGB images one luma channel at full resolution and three channels
  (luma and two colour differences) at every coarser level, the 4:2:0 idea of JPEG and WebP.
- **Synthesis**: every latent channel upsampled (bicubic) to ``[H, W]``; per pixel a linear
  map of those values plus a ReLU MLP ``channels -> hidden -> C``; then two residual 3x3
  convolutions on the ``C`` output channels.
- **Entropy model** (`ContextModel`): each latent is coded under a discretised Laplace whose
  mean and log-scale a ReLU MLP (``8 -> context -> 2``, plus a per-level, per-channel log-scale
  bias) predicts from the upsampled parent (the same channel one level coarser) and, for the
  half decoded second on the checkerboard, the four face neighbours decoded first.
- **Initialisation**: the latents start as a Laplacian-style pyramid of the image (of its
  luma / colour-difference transform) divided by a step ``delta(lambda)``, the linear map as
  the inverse transform times ``delta``, so the first step already renders a coarse image.
  In development runs (camera at 256x256, 1000 steps) this start cut the rate by ~10% at
  equal PSNR against a zero start (29.48 dB at 0.42 bpp against 29.54 at 0.47, lambda 0.002),
  and ReLU in place of GELU gave 27.48 dB at 0.170 bpp against 26.49 at 0.205 (lambda 0.008).
- **Fitting**: Adam on latents and both networks, minimising ``MSE + lambda * bits / pixels``
  (the parameters' own bits are not in the loss); uniform noise stands in for rounding for
  the first `NOISE_SHARE` of the steps under a cosine-decaying rate, then straight-through
  rounding at a tenth of it.
- **Parameters in the file**: each network's weights are rounded to a step ``2^-e``, ``e``
  chosen per network from `SYNTH_STEPS` / `CONTEXT_STEPS` by the same rate-distortion loss
  with their bits counted; each tensor's integers are coded under a zero-mean Laplace whose
  scale (a power of 2^(1/4)) is itself in the stream.

Header (beside ``kind``/``shape``/``meta``): ``net`` = ``[levels, hidden, context]`` and
``q`` = the two step exponents. Payload: one ANS stream (`constriction`), 32-bit words,
little-endian: the parameter scales, the parameters (synthesis, then entropy model), then
the latents, coarsest level first, anchors before the rest. The entropy model runs in
float64 on the CPU with means rounded to ``1/MEAN_RES`` and log-scales to ``1/SCALE_RES``,
so encoder and decoder see the same probabilities.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.compress import basefile, pyramid
from weightspace.compress.format import CodecError
from weightspace.compress.pyramid import LOG_SCALE_RANGE, laplace_bits, level_shapes
from weightspace.compress.signal import Signal, check_layout

MAX_LEVEL_VALUE = 4096  # |latent| bound: the decoder's symbol alphabet
MAX_PARAM_VALUE = 1 << 15  # |parameter / step| bound
SCALE_RES = 16  # log-scales rounded to 1/SCALE_RES
MEAN_RES = 64  # means rounded to 1/MEAN_RES
PARAM_SCALE_CODES = 64  # a tensor's Laplace scale is 2^(i/4), i in [0, 64)
NOISE_SHARE = 0.8
STE_LR_SHARE = 0.1
SYNTH_STEPS = (4, 5, 6, 7, 8, 9)  # candidate exponents e of the synthesis weights' step 2^-e
CONTEXT_STEPS = (2, 3, 4, 5, 6, 7)
MIN_SIDE = 8
MAX_LEVELS = 12
METHOD = "overfit"

# Named time-quality trade-offs: fields of `OverfitConfig`. "default" encodes a 256x256 RGB
# image in about a minute on a 2-core CPU, grey in half that (BENCHMARKS.md, codec_effort).
EFFORTS: dict[str, dict[str, int]] = {
    "fast": {"pilots": 1, "pilot_steps": 60, "steps": 250, "search": 2, "refit_steps": 80},
    "default": {"pilots": 2, "pilot_steps": 80, "steps": 500, "search": 3, "refit_steps": 120},
    "high": {"pilots": 2, "pilot_steps": 120, "steps": 1500, "search": 3, "refit_steps": 300},
    "max": {"pilots": 3, "pilot_steps": 150, "steps": 4000, "search": 4, "refit_steps": 800},
}


@dataclass(frozen=True)
class OverfitConfig:
    """levels: latent grids; hidden: synthesis MLP width; context: entropy MLP width.

    A rate search (`codec.compress` with a target) runs ``pilots`` short fits of
    ``pilot_steps`` from the pyramid start (a bits-per-pixel target only: a short fit's rate
    is within ~15% of a long one's at the same lambda, its PSNR is not), then ``search``
    fits: the first of ``steps`` from the pyramid start, each later one of ``refit_steps``
    warm-started from the one before. lr: Adam's peak learning rate; seed: the noise."""

    levels: int = 7
    hidden: int = 16
    context: int = 8
    steps: int = 500
    refit_steps: int = 120
    search: int = 3
    pilots: int = 2
    pilot_steps: int = 80
    # lr 2e-2 and hidden 16 against 1e-2 and 8: +0.5 dB at equal rate in a development run
    # (camera at 256x256, 900 steps, lambda 0.004 and 0.012); noise for 60% or 95% of the
    # steps instead of 80%, a larger straight-through rate or 6 levels were all worse
    lr: float = 2e-2
    seed: int = 0

    def __post_init__(self) -> None:
        for name, lo, hi in (("levels", 1, MAX_LEVELS), ("hidden", 1, 64), ("context", 1, 64),
                             ("steps", 1, 10**6), ("refit_steps", 1, 10**6), ("search", 1, 20),
                             ("pilots", 0, 10), ("pilot_steps", 1, 10**6)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not (isinstance(self.lr, float) and 0 < self.lr < 1):
            raise ValueError(f"lr must be in (0, 1), got {self.lr!r}")

    @classmethod
    def effort(cls, name: str, **overrides: Any) -> OverfitConfig:
        """The preset `EFFORTS[name]`, with any field overridden."""
        if name not in EFFORTS:
            raise ValueError(f"unknown effort {name!r}; expected one of {', '.join(EFFORTS)}")
        return cls(**{**EFFORTS[name], **overrides})

    def total_steps(self, pilots: bool = True) -> int:
        """Adam steps of a whole rate search (with or without the pilots)."""
        return self.pilots * self.pilot_steps * pilots + self.steps + (self.search - 1) * self.refit_steps


# ---------------------------------------------------------------------------- layout
def latent_channels(channels: int, levels: int) -> list[int]:
    """Channels per level: 1 everywhere for grey; for RGB 1 (luma) at level 0, 3 above it."""
    return [1] + [1 if channels == 1 else 3] * (levels - 1)


def colour_transform(channels: int) -> Tensor:
    """``[C, C]`` analysis: grey -> itself; RGB -> (mean, B - mean, R - mean)."""
    if channels == 1:
        return torch.eye(1)
    third = 1.0 / 3.0
    return torch.tensor([[third, third, third], [-third, -third, 2 * third], [2 * third, -third, -third]])


def anchor_mask(shape: Sequence[int]) -> Tensor:
    """``[1, 1, h, w]`` float of `pyramid.anchor_mask`: 1 where ``i + j`` is even (decoded first)."""
    return pyramid.anchor_mask(shape).to(torch.float32)[None, None]


@functools.lru_cache(maxsize=128)
def _bicubic_matrix(n_in: int, n_out: int, dtype: torch.dtype) -> Tensor:
    """``[n_out, n_in]``: PyTorch's 1-D bicubic resampling (align_corners=False, borders
    clamped) as a matrix, built in float64 by resampling the identity."""
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1)
    return F.interpolate(eye, size=(n_out, 1), mode="bicubic", align_corners=False)[:, 0, :, 0].T.to(dtype).contiguous()


def _up(y: Tensor, size: Sequence[int]) -> Tensor:
    """Bicubic upsampling of ``[n, c, h, w]`` to ``size``: the separable operator as two matrix
    products, ``A_h y A_w^T`` (the same map as ``F.interpolate(mode="bicubic")``, whose
    backward pass dominated a fitting step on the CPU; this one is 2-3x faster there)."""
    if tuple(y.shape[2:]) == tuple(size):
        return y
    a_h = _bicubic_matrix(y.shape[2], int(size[0]), y.dtype).to(y.device)
    a_w = _bicubic_matrix(y.shape[3], int(size[1]), y.dtype).to(y.device)
    return a_h @ y @ a_w.T


def _pointwise(w: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """A 1x1 convolution ``[B, I, h, w] -> [B, O, h, w]`` as one matrix product per batch
    entry (faster than mkldnn's small-channel 1x1 backward on CPU)."""
    n, c, h, wd = f.shape
    o = torch.baddbmm(b[None, :, None].expand(n, -1, 1), w[None].expand(n, -1, -1), f.reshape(n, c, h * wd))
    return o.reshape(n, -1, h, wd)


def _conv3(w: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """3x3 convolution with replicate padding as nine shifted products (small channel counts)."""
    h, wd = x.shape[2:]
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    out = b[None, :, None, None]
    for i in range(3):
        for j in range(3):
            out = out + torch.einsum("oc,nchw->nohw", w[:, :, i, j], xp[:, :, i : i + h, j : j + wd])
    return out


# ---------------------------------------------------------------------------- networks
class Synthesis(nn.Module):
    """Latents (finest first, ``[1, c_l, h_l, w_l]``) -> image ``[1, C, H, W]`` (module docstring)."""

    def __init__(self, latent_channels: int, hidden: int, channels: int, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1 / math.sqrt(latent_channels)
        self.w1 = nn.Parameter(torch.empty(hidden, latent_channels).uniform_(-bound, bound, generator=generator))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        # the MLP's output layer and the residual convolutions start at zero: the first render
        # is the linear map alone (the pyramid start, `initial_state`)
        self.w2 = nn.Parameter(torch.zeros(channels, hidden))
        self.b2 = nn.Parameter(torch.zeros(channels))
        self.skip = nn.Parameter(torch.zeros(channels, latent_channels))
        self.r1w = nn.Parameter(torch.zeros(channels, channels, 3, 3))
        self.r1b = nn.Parameter(torch.zeros(channels))
        self.r2w = nn.Parameter(torch.zeros(channels, channels, 3, 3))
        self.r2b = nn.Parameter(torch.zeros(channels))

    def forward(self, latents: Sequence[Tensor], grid: Sequence[int]) -> Tensor:
        h = torch.cat([_up(y, grid) for y in latents], dim=1)
        x = _pointwise(self.w2, self.b2, F.relu(_pointwise(self.w1, self.b1, h)))
        x = x + _pointwise(self.skip, torch.full_like(self.b2, 0.5), h)
        x = x + _conv3(self.r1w, self.r1b, x)
        return x + _conv3(self.r2w, self.r2b, F.relu(x))


class ContextModel(nn.Module):
    """Mean and log-scale ``[1, c, h, w]`` of each latent from its parent and (second half of
    the checkerboard) its four face neighbours (module docstring)."""

    FEATURES = 8  # parent, |parent|, 4 neighbours, sum of |neighbours|, anchor flag

    def __init__(self, levels: int, context: int, generator: torch.Generator) -> None:
        super().__init__()
        b1 = 1 / math.sqrt(self.FEATURES)
        b2 = 1 / math.sqrt(context)
        self.w1 = nn.Parameter(torch.empty(context, self.FEATURES).uniform_(-b1, b1, generator=generator))
        self.b1 = nn.Parameter(torch.zeros(context))
        self.w2 = nn.Parameter(torch.empty(2, context).uniform_(-b2, b2, generator=generator))
        self.b2 = nn.Parameter(torch.zeros(2))
        self.bias = nn.Parameter(torch.zeros(levels, 3))

    def forward(self, y: Tensor, coarser: Tensor | None, level: int) -> tuple[Tensor, Tensor]:
        """``(mean, log_scale)`` for ``y`` ``[1, c, h, w]`` (only its anchors are read) given the
        next coarser level ``[1, c', h', w']`` (None for the coarsest)."""
        c, (h, w) = y.shape[1], y.shape[2:]
        y = y.transpose(0, 1)  # channels become the batch: one shared MLP
        if coarser is None:
            parent = torch.zeros_like(y)
        else:
            coarser = coarser.transpose(0, 1)
            coarser = coarser[:c] if coarser.shape[0] >= c else coarser[:1].expand(c, -1, -1, -1)
            parent = _up(coarser, (h, w))
        m = anchor_mask((h, w)).to(y)
        a = F.pad(y * m, (1, 1, 1, 1))  # an anchor's face neighbours are never anchors: zero there
        nb = torch.cat([a[:, :, :h, 1 : w + 1], a[:, :, 2:, 1 : w + 1], a[:, :, 1 : h + 1, :w], a[:, :, 1 : h + 1, 2:]], 1)
        f = torch.cat([parent, parent.abs(), nb, nb.abs().sum(1, keepdim=True), m.expand(c, -1, -1, -1)], 1)
        o = _pointwise(self.w2, self.b2, F.relu(_pointwise(self.w1, self.b1, f))).transpose(0, 1)  # [2, c, h, w]
        return o[0:1], o[1:2] + self.bias[level, :c].view(1, c, 1, 1)


def latent_bits(context: ContextModel, latents: Sequence[Tensor]) -> Tensor:
    """Estimated bits (a scalar) of latents, finest first."""
    total = latents[0].new_zeros(())
    for lv, y in enumerate(latents):
        mean, ls = context(y, latents[lv + 1] if lv + 1 < len(latents) else None, lv)
        total = total + laplace_bits(y, ls, mean).sum()
    return total


# ---------------------------------------------------------------------------- fitting
@dataclass
class Fitted:
    """What a fit leaves: float latents (finest first, ``[1, c_l, h_l, w_l]``) and both networks."""

    latents: list[Tensor]
    synthesis: Synthesis
    context: ContextModel

    def copy(self) -> Fitted:
        return Fitted([y.detach().clone() for y in self.latents], copy.deepcopy(self.synthesis), copy.deepcopy(self.context))


def start_step(lam: float) -> float:
    """The pyramid start's quantisation step: where ``d(MSE)/d(bits per pixel) = -lambda`` for a
    uniform quantiser of full-resolution values (``delta^2 / 12`` error, ``-log2 delta`` bits)."""
    return math.sqrt(6 * lam / math.log(2))


def initial_state(x: Tensor, lam: float, config: OverfitConfig) -> Fitted:
    """The pyramid start for an image ``x`` ``[1, C, H, W]`` (module docstring)."""
    g = torch.Generator().manual_seed(config.seed)
    c, grid = x.shape[1], tuple(x.shape[2:])
    chans = latent_channels(c, config.levels)
    synthesis = Synthesis(sum(chans), config.hidden, c, g)
    context = ContextModel(config.levels, config.context, g)
    delta = start_step(lam)
    a = colour_transform(c)
    with torch.no_grad():
        target = torch.einsum("kc,nchw->nkhw", a, x - 0.5)
        rendered = torch.zeros_like(target)
        latents: list[Tensor] = [torch.empty(0)] * config.levels
        shapes = level_shapes(grid, config.levels)
        for lv in reversed(range(config.levels)):  # coarse to fine: each level takes what is left
            k = chans[lv]
            latents[lv] = F.interpolate(target[:, :k] - rendered[:, :k], size=shapes[lv], mode="area") / delta
            rendered[:, :k] += _up(latents[lv] * delta, grid)
        inverse = torch.linalg.inv(a)
        synthesis.skip.copy_(torch.cat([inverse[:, :k] * delta for k in chans], dim=1))
    return Fitted(latents, synthesis, context)


def _lr(lr: float, it: int, steps: int) -> float:
    if it >= NOISE_SHARE * steps:
        return lr * STE_LR_SHARE
    return lr * 0.5 * (1 + math.cos(math.pi * it / steps))


def fit(
    x: Tensor, lam: float, config: OverfitConfig, *, start: Fitted | None = None, steps: int | None = None,
    on_step: Callable[[], None] | None = None,
) -> Fitted:
    """Fit latents and networks to ``x`` ``[1, C, H, W]`` at rate weight ``lam`` for ``steps``
    (default ``config.steps``) Adam steps, from ``start`` (a copy is fitted; default: the pyramid
    start). ``on_step()`` after every step (a progress bar)."""
    if not lam > 0:
        raise ValueError(f"lambda must be positive, got {lam}")
    steps = config.steps if steps is None else steps
    state = initial_state(x, lam, config) if start is None else start.copy()
    latents = [nn.Parameter(y.detach().clone()) for y in state.latents]
    nets = list(state.synthesis.parameters()) + list(state.context.parameters())
    opt = torch.optim.Adam(latents + nets, lr=config.lr)
    # a warm start is already near an optimum: a smaller peak rate keeps it there
    peak = config.lr if start is None else config.lr * 0.3
    g = torch.Generator().manual_seed(config.seed)
    pixels = x.shape[2] * x.shape[3]
    grid = tuple(x.shape[2:])
    for it in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr(peak, it, steps)
        if it < NOISE_SHARE * steps:
            q = [y + torch.rand(y.shape, generator=g) - 0.5 for y in latents]
        else:
            q = [y + (torch.round(y) - y).detach() for y in latents]
        mse = (state.synthesis(q, grid) - x).square().mean()
        loss = mse + lam * latent_bits(state.context, q) / pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step()
    state.latents = [torch.round(y.detach()).clamp_(-MAX_LEVEL_VALUE, MAX_LEVEL_VALUE) for y in latents]
    return state


# ---------------------------------------------------------------------------- parameters
def _rounded(module: nn.Module, exponent: int) -> nn.Module:
    """A copy of ``module`` with every parameter rounded to the step ``2^-exponent``."""
    out = copy.deepcopy(module)
    with torch.no_grad():
        for p in out.parameters():
            p.copy_(torch.round(p * 2.0**exponent) / 2.0**exponent)
    return out


def _param_integers(module: nn.Module, exponent: int) -> list[np.ndarray]:
    return [torch.round(p.detach() * 2.0**exponent).to(torch.int64).reshape(-1).numpy() for p in module.parameters()]


def _scale_code(k: np.ndarray) -> int:
    """The scale index ``i`` (scale ``2^(i/4)``) nearest the mean |k| (a Laplace's ML scale)."""
    mean = float(np.abs(k).mean()) if k.size else 0.0
    return int(np.clip(round(4 * math.log2(max(mean, 1.0))), 0, PARAM_SCALE_CODES - 1))


def _param_bits(module: nn.Module, exponent: int) -> float:
    """Bits the coded parameters of ``module`` take at step ``2^-exponent`` (inf if out of range)."""
    total = 0.0
    for k in _param_integers(module, exponent):
        if k.size and np.abs(k).max() > MAX_PARAM_VALUE:
            return math.inf
        scale = torch.full((k.size,), math.log(2 ** (_scale_code(k) / 4)), dtype=torch.float64)
        total += float(laplace_bits(torch.from_numpy(k).double(), scale).sum())
        total += math.log2(PARAM_SCALE_CODES)
    return total


def choose_steps(x: Tensor, state: Fitted, lam: float) -> tuple[int, int]:
    """The step exponents ``(synthesis, context)`` minimising ``MSE + lam * all bits / pixels``
    with rounded latents (each network's choice made with the other unrounded; they barely interact)."""
    pixels, grid = x.shape[2] * x.shape[3], tuple(x.shape[2:])
    with torch.no_grad():
        bits = float(latent_bits(state.context, state.latents))
        best_s = min(SYNTH_STEPS, key=lambda e: float((_rounded(state.synthesis, e)(state.latents, grid).clamp(0, 1) - x).square().mean())
                     + lam * _param_bits(state.synthesis, e) / pixels)
        best_c = min(CONTEXT_STEPS, key=lambda e: lam * (float(latent_bits(_rounded(state.context, e), state.latents))
                                                         + _param_bits(state.context, e) - bits) / pixels)
    return best_s, best_c


# ---------------------------------------------------------------------------- coding
def _coding_params(context64: ContextModel, coarser: Tensor | None, level: int, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Means and scales ``[c * h * w]`` the coder uses for one level: float64, rounded, on the CPU."""
    with torch.no_grad():
        mean, ls = context64(y.double(), None if coarser is None else coarser.double(), level)
    mean = torch.round(mean * MEAN_RES) / MEAN_RES
    ls = torch.round(ls.clamp(*LOG_SCALE_RANGE) * SCALE_RES) / SCALE_RES
    return mean.reshape(-1).numpy(), ls.exp().reshape(-1).numpy()


def _laplace(bound: int):
    import constriction

    return constriction.stream.model.QuantizedLaplace(-bound, bound + 1)


def encode(signal: Signal, state: Fitted, lam: float) -> tuple[dict[str, Any], bytes, Tensor]:
    """``(header, payload, decoded values [H, W, C])`` of a fitted state (`fit`)."""
    import constriction

    x = signal.values.movedim(-1, 0)[None]
    es, ec = choose_steps(x, state, lam)
    synthesis, context = _rounded(state.synthesis, es), _rounded(state.context, ec)
    context64 = copy.deepcopy(context).double()
    coder = constriction.stream.stack.AnsCoder()
    latent_model, param_model = _laplace(MAX_LEVEL_VALUE), _laplace(MAX_PARAM_VALUE)
    latents, n = state.latents, len(state.latents)
    # a stack: the decoder reads the last thing pushed first, so push in reverse reading order
    for lv in range(n):
        y, coarser = latents[lv], latents[lv + 1] if lv + 1 < n else None
        mean, scale = _coding_params(context64, coarser, lv, y)
        k = y.reshape(-1).to(torch.int32).numpy()
        m = anchor_mask(y.shape[2:]).expand_as(y).reshape(-1).numpy() > 0
        for part in (~m, m):
            coder.encode_reverse(k[part], latent_model, mean[part], scale[part])
    ints = _param_integers(synthesis, es) + _param_integers(context, ec)
    codes = [_scale_code(k) for k in ints]
    for k, code in zip(reversed(ints), reversed(codes)):
        coder.encode_reverse(k.astype(np.int32), param_model, np.zeros(k.size), np.full(k.size, 2 ** (code / 4)))
    coder.encode_reverse(np.array(codes, dtype=np.int32), constriction.stream.model.Uniform(PARAM_SCALE_CODES))
    payload = coder.get_compressed().astype("<u4").tobytes()
    header = {**signal.header(), "net": [len(latents), synthesis.w1.shape[0], context.w1.shape[0]], "q": [es, ec]}
    with torch.no_grad():
        values = synthesis(latents, signal.grid)[0].movedim(0, -1)
    return header, payload, values.clamp(0, 1).contiguous()


def _parse(header: dict[str, Any]) -> tuple[str, tuple[int, ...], dict[str, float], list[int], list[int]]:
    """``(kind, shape, meta, [levels, hidden, context], [synthesis, context step exponents])``,
    checked; `CodecError` naming what is wrong."""
    kind, shape, meta = check_layout(header.get("kind"), header.get("shape"), header.get("meta"))
    if kind not in ("image", "grid") or len(shape) != 3:
        raise CodecError(f"overfit header: only 2-D signals are coded this way, got a {kind}")
    if min(shape[:2]) < MIN_SIDE:
        raise CodecError(f"overfit header: sides below {MIN_SIDE} pixels, got {list(shape)}")
    if shape[-1] not in (1, 3):
        raise CodecError(f"overfit header: 1 or 3 channels, got {shape[-1]}")
    net, q = header.get("net"), header.get("q")
    ok_int = lambda v, lo, hi: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi  # noqa: E731
    if not (isinstance(net, list) and len(net) == 3 and ok_int(net[0], 1, MAX_LEVELS)
            and ok_int(net[1], 1, 64) and ok_int(net[2], 1, 64)):
        raise CodecError(f"overfit header: net must be [levels 1..{MAX_LEVELS}, hidden 1..64, context 1..64], got {net!r}")
    if not (isinstance(q, list) and len(q) == 2 and ok_int(q[0], 0, 16) and ok_int(q[1], 0, 16)):
        raise CodecError(f"overfit header: q must be two step exponents in [0, 16], got {q!r}")
    return kind, shape, meta, net, q


def decode_work(header: dict[str, Any], base: Any = None) -> tuple[int, str]:
    """Multiply-adds to decode a file (`compress.work`): per pixel the upsampling (16 taps per
    latent channel), the MLP and linear map, two 3x3 convolutions; per latent twice the context MLP."""
    _, shape, _, (levels, hidden, ctx), _ = _parse(header)
    c = shape[-1]
    chans = latent_channels(c, levels)
    pixels = shape[0] * shape[1]
    per_pixel = 16 * sum(chans) + sum(chans) * (hidden + c) + hidden * c + 2 * 9 * c * c
    entries = sum(k * h * w for k, (h, w) in zip(chans, level_shapes(shape[:2], levels)))
    per_latent = 2 * (16 + ContextModel.FEATURES * ctx + 2 * ctx)
    return pixels * per_pixel + entries * per_latent, f"{pixels} pixels x {per_pixel} plus {entries} latents x {per_latent}"


def decode(header: dict[str, Any], payload: bytes, base: Any = None) -> Signal:
    """The image of an overfit file's header and payload (``base`` is ignored: there is none)."""
    import constriction

    kind, shape, meta, (levels, hidden, ctx), (es, ec) = _parse(header)
    c, grid = shape[-1], shape[:2]
    g = torch.Generator().manual_seed(0)
    chans = latent_channels(c, levels)
    synthesis, context = Synthesis(sum(chans), hidden, c, g), ContextModel(levels, ctx, g)
    words = basefile.coded_words(payload)
    latent_model, param_model = _laplace(MAX_LEVEL_VALUE), _laplace(MAX_PARAM_VALUE)
    with basefile.stream_errors():
        coder = constriction.stream.stack.AnsCoder(words)
        params = list(synthesis.parameters()) + list(context.parameters())
        codes = coder.decode(constriction.stream.model.Uniform(PARAM_SCALE_CODES), len(params))
        with torch.no_grad():
            for i, (p, code) in enumerate(zip(params, codes)):
                k = coder.decode(param_model, np.zeros(p.numel()), np.full(p.numel(), 2 ** (int(code) / 4)))
                step = 2.0 ** -(es if i < len(list(synthesis.parameters())) else ec)
                p.copy_(torch.from_numpy(k.astype(np.float64) * step).reshape(p.shape))
        context64 = copy.deepcopy(context).double()
        latents: list[Tensor] = [torch.empty(0)] * levels
        shapes = level_shapes(grid, levels)
        for lv in range(levels - 1, -1, -1):
            coarser = latents[lv + 1] if lv + 1 < levels else None
            y = torch.zeros(1, chans[lv], *shapes[lv])
            m = anchor_mask(shapes[lv]).expand_as(y).reshape(-1).numpy() > 0
            k = np.zeros(m.size, dtype=np.int32)
            mean, scale = _coding_params(context64, coarser, lv, y)
            k[m] = coder.decode(latent_model, mean[m], scale[m])
            y = torch.from_numpy(k.astype(np.float32)).reshape(y.shape)
            mean, scale = _coding_params(context64, coarser, lv, y)
            k[~m] = coder.decode(latent_model, mean[~m], scale[~m])
            latents[lv] = torch.from_numpy(k.astype(np.float32)).reshape(y.shape)
        basefile.check_empty(coder)
    with torch.no_grad():
        values = synthesis(latents, grid)[0].movedim(0, -1)
    return Signal(values.clamp(0, 1).contiguous(), kind, meta)


def check_signal(signal: Signal) -> None:
    """One clear ValueError for a signal this codec does not take."""
    if len(signal.grid) != 2:
        raise ValueError(f"the overfit codec takes 2-D signals (images, grids), not a {signal.kind}")
    if min(signal.grid) < MIN_SIDE:
        raise ValueError(f"the overfit codec needs sides of at least {MIN_SIDE} pixels, got {list(signal.grid)}")
    if signal.channels not in (1, 3):
        raise ValueError(f"the overfit codec takes 1 or 3 channels, got {signal.channels}")


__all__ = [
    "EFFORTS",
    "METHOD",
    "ContextModel",
    "Fitted",
    "OverfitConfig",
    "Synthesis",
    "check_signal",
    "choose_steps",
    "decode",
    "decode_work",
    "encode",
    "fit",
    "initial_state",
    "latent_bits",
    "latent_channels",
]
