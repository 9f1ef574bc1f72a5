"""COIN++ with latent pyramids: a shared base network decodes multi-resolution latent grids.

COIN++ (Dupont et al. 2022) gives each patch one modulation vector of a meta-learned SIREN.
At low rates on photographs that loses to JPEG by several dB (BENCHMARKS.md, compress):
a patch's vector is spent evenly on smooth and busy patches alike. This layout keeps the
COIN++ contract (a base stored once, each file holding only entropy-coded latents fitted
with the base frozen) but arranges the latents in space, after Cool-chic (Ladune et al.
2023):

- **Latents**: ``L`` grids, level ``l`` of shape ``ceil(grid / 2^l)`` (one channel), so a
  signal with ``P`` points has about ``P * 2^d / (2^d - 1)`` latent entries, most of them
  zero after fitting.
- **Synthesis** (the base): every level is upsampled to the signal's grid (linear /
  bicubic / trilinear by the number of axes), the ``L`` values per point go through a
  pointwise MLP and two small convolutions to the ``C`` channels. Works for 1-D (audio),
  2-D (images, lat-lon grids) and 3-D (shapes) signals alike.
- **Entropy model** (also the base): every integer latent is coded under a zero-mean
  discretised Laplace whose log-scale is a learned per-level constant, plus what a small
  convolution predicts from the next coarser level (decoded first, like a wavelet coder's
  parent-child context), plus a linear term in the level's own face neighbours on a
  checkerboard: "anchors" (even index sum) are decoded first without it, the other half
  with their anchor neighbours known (He et al. 2021). Scales are rounded to
  ``1 / SCALE_RES`` in log space and computed in float64 by encoder and decoder alike, so
  both see the same model.
- **Fitting** (encoding): Adam on the latents with the base frozen, minimising
  ``MSE + lambda * bits / P``; uniform noise stands in for rounding for the first
  ``NOISE_SHARE`` of the steps under a cosine-decaying learning rate, then a few
  straight-through steps at a small one (`_fit_lr`). ``lambda`` sets the rate.
- **Training the base** (`train_pyramid_base`): jointly with per-crop latents over a
  training set at a spread of ``lambda`` values (auto-decoding, the first-order limit of
  meta-learning with a long inner loop), so one base serves a range of rates.

Header fields (beside ``kind``/``shape``/``meta``): ``base`` (the base's 16-hex-digit id).
Payload: the ANS coder's 32-bit words (`constriction`), little-endian; coarsest level first.

Devices: the synthesis runs where the base's network is (`train_pyramid_base` and
`PyramidBase.load` take a ``device``); latents and decoded values come back on the CPU. The
entropy model's scales are always computed on the CPU in float64 (`PyramidBase.net64`), so
encoder and decoder agree bit for bit whichever devices they ran on. Random draws (batches,
noise) come from CPU generators, so a seed means the same draws on every device.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace._progress import disabled
from weightspace.compress import basefile
from weightspace.compress.format import CodecError
from weightspace.compress.signal import KIND_AXES, Signal
from weightspace.compress.work import mlp_macs

MAX_LEVEL_VALUE = 4096  # |latent| bound: the decoder's symbol alphabet is [-MAX, MAX]
MAX_SYMBOLS = 1 << 23  # latent entries a file may hold (bounds the decoder's allocation)
SCALE_RES = 16  # log-scales are rounded to 1/SCALE_RES
LOG_SCALE_RANGE = (-6.0, 8.0)
NOISE_SHARE = 0.9  # share of a fit's steps with noise in place of rounding
# ... and of a base's training steps: with 0.9 there, a development base (camera at 128x128,
# 96 crops, 3000 steps) lost 0.2 dB near 0.29 bpp and gained at lower rates.
TRAIN_NOISE_SHARE = 0.7
STE_LR_SHARE = 0.05  # learning rate of the straight-through steps that end a fit, relative to fit_lr
MIN_LATENT_UPDATES = 200  # below this many updates per training crop, `train_pyramid_base` warns
BASE_FORMAT = "weightspace.coinpp_pyramid_base"
_UPSAMPLE = {1: "linear", 2: "bicubic", 3: "trilinear"}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


@dataclass(frozen=True)
class PyramidConfig:
    """axes: grid axes of the signals (1 audio, 2 images / grids, 3 shapes); channels: C;
    levels: latent grids (finest = the signal's grid); hidden: width of the pointwise MLP;
    conv: channels of the first 3-wide convolution; context: channels of the entropy context."""

    axes: int = 2
    channels: int = 1
    levels: int = 7
    hidden: int = 32
    conv: int = 16
    context: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.axes not in _CONV:
            raise ValueError(f"axes must be 1, 2 or 3, got {self.axes}")
        for name in ("channels", "levels", "hidden", "conv", "context"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 256:
                raise ValueError(f"{name} must be an integer in [1, 256], got {v!r}")
        if self.levels > 16:
            raise ValueError(f"levels must be at most 16, got {self.levels}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PyramidConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown pyramid config keys {sorted(unknown)}")
        return cls(**d)


def level_shapes(grid: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """Shapes of the latent grids, finest first: level ``l`` is ``ceil(grid / 2^l)``."""
    return [tuple(-(-int(g) // 2**lv) for g in grid) for lv in range(levels)]


def anchor_mask(shape: Sequence[int]) -> Tensor:
    """Checkerboard ``[*shape]`` bool: True where the index sum is even (decoded first)."""
    idx = torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")
    return sum(idx, torch.zeros((), dtype=torch.long)) % 2 == 0


def _face_kernel(axes: int) -> Tensor:
    """``[3]*axes`` with ones at the face neighbours (one axis off by one), zero elsewhere:
    a face neighbour of a checkerboard cell always has the other colour."""
    k = torch.zeros([3] * axes)
    for a in range(axes):
        for off in (0, 2):
            ix = [1] * axes
            ix[a] = off
            k[tuple(ix)] = 1.0
    return k


def laplace_bits(q: Tensor, log_scale: Tensor, mean: Tensor | float = 0.0) -> Tensor:
    """Bits of integers (or noisy integers) ``q`` under Laplaces of mean ``mean`` discretised to
    unit bins (also the overfit codec's estimate, `compress.overfit`)."""
    b = log_scale.clamp(*LOG_SCALE_RANGE).exp()
    v = q - mean

    def cdf(t: Tensor) -> Tensor:
        return 0.5 + 0.5 * torch.sign(t) * -torch.expm1(-t.abs() / b)

    return -torch.log2((cdf(v + 0.5) - cdf(v - 0.5)).clamp_min(1e-9))


class PyramidNet(nn.Module):
    """Synthesis and entropy context shared by every file of a base (module docstring)."""

    def __init__(self, config: PyramidConfig) -> None:
        super().__init__()
        self.config = config
        conv, c = _CONV[config.axes], config
        g = torch.Generator().manual_seed(c.seed)
        self.mlp1 = conv(c.levels, c.hidden, 1)
        self.mlp2 = conv(c.hidden, c.hidden, 1)
        self.conv1 = conv(c.hidden, c.conv, 3, padding=1, padding_mode="replicate")
        self.conv2 = conv(c.conv, c.channels, 3, padding=1, padding_mode="replicate")
        self.ctx1 = conv(2, c.context, 3, padding=1, padding_mode="replicate")
        self.ctx2 = conv(c.context, 1, 3, padding=1, padding_mode="replicate")
        self.neighbours = nn.Parameter(torch.zeros(1, 2, *[3] * c.axes))  # masked by _face_kernel
        self.register_buffer("face", _face_kernel(c.axes), persistent=False)
        self.level_log_scale = nn.Parameter(torch.zeros(c.levels))
        with torch.no_grad():  # seeded initialisation, independent of the global RNG
            for m in self.modules():
                if isinstance(m, _CONV[config.axes]):
                    bound = 1 / math.sqrt(m.weight[0].numel())
                    m.weight.uniform_(-bound, bound, generator=g)
                    m.bias.uniform_(-bound, bound, generator=g)

    def _up(self, y: Tensor, size: Sequence[int]) -> Tensor:
        if tuple(y.shape[2:]) == tuple(size):
            return y
        return F.interpolate(y, size=tuple(size), mode=_UPSAMPLE[self.config.axes], align_corners=False)

    def render(self, latents: Sequence[Tensor], grid: Sequence[int]) -> Tensor:
        """Latents (finest first, ``[B, 1, *level_shape]``) -> values ``[B, C, *grid]``."""
        h = torch.cat([self._up(y, grid) for y in latents], dim=1)
        h = F.gelu(self.mlp2(F.gelu(self.mlp1(h))))
        return self.conv2(F.gelu(self.conv1(h))) + 0.5

    def log_scales(self, coarser: Tensor | None, level: int, shape: Sequence[int], anchors: Tensor | None) -> Tensor:
        """Log-scales ``[B, 1, *shape]`` of level ``level`` from the next coarser level
        ``[B, 1, ...]`` (None for the coarsest) and the level's anchors ``[B, 1, *shape]``
        (zero off the anchors; None while the anchors themselves are decoded)."""
        d = len(shape)
        ls = self.level_log_scale[level].reshape(1, 1, *[1] * d)
        if coarser is not None:
            u = self._up(coarser, shape)
            ls = ls + self.ctx2(F.gelu(self.ctx1(torch.cat([u, u.abs()], dim=1))))
        if anchors is not None:  # zero at every anchor: its face neighbours are never anchors
            conv = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
            ls = ls + conv(torch.cat([anchors, anchors.abs()], dim=1), self.neighbours * self.face, padding=1)
        return ls.expand(-1, 1, *shape)

    def bits(self, latents: Sequence[Tensor]) -> Tensor:
        """Estimated bits ``[B]`` of (noisy or rounded) latents, finest first."""
        n = len(latents)
        total = 0
        for lv in range(n):
            y = latents[lv]
            coarser = latents[lv + 1] if lv + 1 < n else None
            anchors = y * anchor_mask(y.shape[2:]).to(y.device, y.dtype)
            ls = self.log_scales(coarser, lv, y.shape[2:], anchors)
            total = total + laplace_bits(y, ls).flatten(1).sum(1)
        return total


@dataclass(frozen=True, eq=False)
class PyramidBase(basefile.StoredBase):
    """A stored COIN++ latent-pyramid base: the network, the signal kind it codes, and the
    fitting recipe files are encoded with (steps, learning rate). The two go together: under
    `_fit_lr`'s decaying schedule Adam moves a latent by at most about ``0.5 * fit_lr *
    fit_steps``, so a short fit needs a larger rate for its latents to round to anything but 0."""

    FORMAT: ClassVar[str] = BASE_FORMAT

    net: PyramidNet
    kind: str
    fit_steps: int = 1000
    fit_lr: float = 3e-2

    @property
    def config(self) -> PyramidConfig:
        return self.net.config

    @property
    def channels(self) -> int:
        return self.config.channels

    @cached_property
    def net64(self) -> PyramidNet:
        """A float64 copy on the CPU for the entropy model's scales (`_coding_scales`): the same
        on every machine, wherever the synthesis runs."""
        return copy.deepcopy(self.net).double().cpu()

    @property
    def device(self) -> torch.device:
        """Where the synthesis runs: the device of the network's parameters."""
        return next(self.net.parameters()).device

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "fit_steps": self.fit_steps, "fit_lr": self.fit_lr, "net": self.config.to_dict()}

    def _tensors(self) -> dict[str, Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> PyramidBase:
        """A stored base, its network moved to ``device``."""
        desc, tensors = basefile.read(path, BASE_FORMAT, "COIN++ latent-pyramid base")
        try:
            net = PyramidNet(PyramidConfig.from_dict(desc["net"]))
            net.load_state_dict(tensors)
            if desc["kind"] not in KIND_AXES or KIND_AXES[desc["kind"]] != net.config.axes:
                raise ValueError(f"kind {desc['kind']!r} does not have {net.config.axes} axes")
            return cls(net.requires_grad_(False).to(device), desc["kind"], int(desc["fit_steps"]), float(desc["fit_lr"]))
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: inconsistent COIN++ base ({e})") from e


@dataclass(frozen=True)
class TrainConfig:
    """Joint training of a base with per-crop latents: steps, batch, learning rates of the
    network and the latents, the rate weights ``lambdas`` assigned round-robin to crops.

    Each crop's latents are updated ``steps * batch_size / crops`` times. Keep that near the
    number of steps a file is fitted with (``fit_steps``): a synthesis trained on half-fitted
    latents decodes well-fitted ones worse. In a development run (camera at 128x128, 3000
    steps, batch 16, fits with the earlier constant learning rate), 96 crops instead of 526
    cut the rate at 24.8 dB from 0.229 to 0.193 bpp; the small networks need few crops. The
    compress benchmark trains on 128 crops for 5000 steps (625 updates per crop)."""

    steps: int = 3000
    batch_size: int = 16
    lr: float = 3e-3
    latent_lr: float = 3e-2
    lambdas: tuple[float, ...] = (0.006, 0.01, 0.016, 0.024, 0.035, 0.05)
    seed: int = 0
    progress: bool = False


def train_pyramid_base(
    crops: Tensor, kind: str, config: PyramidConfig, train: TrainConfig | None = None,
    fit_steps: int = 1000, fit_lr: float = 3e-2, *, device: str | torch.device = "cpu",
) -> PyramidBase:
    """Train a base on ``crops`` ``[M, *crop, C]`` (equal-size pieces of training signals) on
    ``device``, where the returned base's network stays."""
    train = train or TrainConfig()
    if kind not in KIND_AXES or KIND_AXES[kind] != config.axes:
        raise ValueError(f"a {kind} base needs axes={KIND_AXES.get(kind, '?')}, got {config.axes}")
    if crops.dim() != config.axes + 2 or crops.shape[-1] != config.channels:
        raise ValueError(f"crops must be [M, {config.axes} grid axes, {config.channels}], got {list(crops.shape)}")
    if not torch.isfinite(crops).all():
        raise ValueError("training crops hold NaN or infinite values")
    g = torch.Generator().manual_seed(train.seed)
    x = crops.movedim(-1, 1).float().to(device)
    m, grid = x.shape[0], tuple(x.shape[2:])
    net = PyramidNet(config).to(device)
    latents = [nn.Parameter(torch.zeros(m, 1, *s, device=device)) for s in level_shapes(grid, config.levels)]
    lams = torch.tensor(train.lambdas)[torch.arange(m) % len(train.lambdas)].to(device)
    opt = torch.optim.Adam([{"params": list(net.parameters()), "lr": train.lr},
                            {"params": latents, "lr": train.latent_lr}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, train.steps))
    steps = range(train.steps)
    if not disabled(train.progress):
        from tqdm import tqdm

        steps = tqdm(steps, desc="pyramid base", unit="step")
    updates = train.steps * min(train.batch_size, m) / m
    if train.steps and updates < MIN_LATENT_UPDATES:
        warnings.warn(
            f"each crop's latents get only {updates:.0f} updates ({train.steps} steps x batch "
            f"{train.batch_size} / {m} crops); use fewer crops or more steps (TrainConfig)",
            stacklevel=2,
        )
    points = math.prod(grid)
    for it in steps:
        idx = torch.randint(0, m, (min(train.batch_size, m),), generator=g).to(device)
        q = _quantised([y[idx] for y in latents], noisy=it < TRAIN_NOISE_SHARE * train.steps, generator=g)
        mse = (net.render(q, grid) - x[idx]).square().flatten(1).mean(1)
        loss = (mse + lams[idx] * net.bits(q) / points).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return PyramidBase(net.requires_grad_(False), kind, fit_steps, fit_lr)


def _quantised(latents: Sequence[Tensor], noisy: bool, generator: torch.Generator | None) -> list[Tensor]:
    """Uniform noise in place of rounding (``noisy``; drawn on the CPU), else straight-through rounding."""
    if noisy:
        return [y + torch.rand(y.shape, generator=generator).to(y.device) - 0.5 for y in latents]
    return [y + (torch.round(y) - y).detach() for y in latents]


def fit_latents(signal: Signal, base: PyramidBase, lam: float, steps: int | None = None, seed: int = 0,
                on_step: Callable[[], None] | None = None) -> list[Tensor]:
    """Integer latents (finest first, ``[1, 1, *level_shape]``) of ``signal`` at rate weight ``lam``;
    ``on_step()`` after every optimiser step (a progress bar)."""
    return [y[:1] for y in fit_latents_many([signal], base, lam, steps, seed, on_step=on_step)]


def fit_latents_many(
    signals: Sequence[Signal], base: PyramidBase, lam: float, steps: int | None = None, seed: int = 0,
    on_step: Callable[[], None] | None = None,
) -> list[Tensor]:
    """Latents ``[B, 1, *level_shape]`` of equal-shape ``signals``, fitted side by side on the
    base's device (returned on the CPU). Each signal's loss is summed, not averaged, and Adam
    acts elementwise, so signal ``i``'s latents follow the same trajectory as alone (up to the
    noise drawn for it)."""
    if not signals:
        raise ValueError("no signals to fit")
    for signal in signals:
        if signal.kind != base.kind or signal.channels != base.channels:
            raise ValueError(
                f"this base codes {base.kind} signals with {base.channels} channel(s), "
                f"not {signal.kind} with {signal.channels}"
            )
    grid = signals[0].grid
    if any(s.grid != grid for s in signals):
        raise ValueError("signals fitted together must share one grid shape")
    if not lam > 0:
        raise ValueError(f"lambda must be positive, got {lam}")
    steps = base.fit_steps if steps is None else steps
    g = torch.Generator().manual_seed(seed)
    device = base.device
    x = torch.stack([s.values for s in signals]).movedim(-1, 1).to(device)  # [B, C, *grid]
    latents = [nn.Parameter(torch.zeros(len(signals), 1, *s, device=device)) for s in level_shapes(grid, base.config.levels)]
    opt = torch.optim.Adam(latents, lr=base.fit_lr)
    points = math.prod(grid)
    for it in range(steps):
        noisy = it < NOISE_SHARE * steps
        for group in opt.param_groups:
            group["lr"] = _fit_lr(base.fit_lr, it, steps)
        q = _quantised(latents, noisy, g)
        mse = (base.net.render(q, grid) - x).square().flatten(1).mean(1)
        loss = (mse + lam * base.net.bits(q) / points).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step()
    return [torch.round(y.detach()).clamp_(-MAX_LEVEL_VALUE, MAX_LEVEL_VALUE).cpu() for y in latents]


def _fit_lr(lr: float, it: int, steps: int) -> float:
    """The fitting schedule: cosine decay from ``lr`` over the noisy steps, then a small
    constant ``STE_LR_SHARE * lr`` for the straight-through ones. A constant rate leaves the
    latents hopping between bins and the rate-distortion curve ragged: in a development run
    (camera at 128x128, one base, 1000 steps) a constant 3e-2 and then 1e-2 gave 25.55 dB at
    0.326 bpp for lambda 0.006 and 25.99 dB at 0.289 for 0.008; this schedule gave 26.67 dB
    at 0.264 bpp for 0.006."""
    if it >= NOISE_SHARE * steps:
        return lr * STE_LR_SHARE
    return lr * 0.5 * (1 + math.cos(math.pi * it / steps))


def _coding_scales(
    base: PyramidBase, coarser: Tensor | None, level: int, shape: Sequence[int], anchors: Tensor | None
) -> np.ndarray:
    """Laplace scales ``[prod(shape)]`` the coder uses for one level: the float64 network,
    log-scales rounded to ``1 / SCALE_RES``, so encoder and decoder agree bit for bit (on the
    CPU, wherever the synthesis runs)."""
    with torch.no_grad():
        ls = base.net64.log_scales(
            None if coarser is None else coarser.double().cpu(), level, shape,
            None if anchors is None else anchors.double().cpu(),
        )
    ls = torch.round(ls.clamp(*LOG_SCALE_RANGE) * SCALE_RES) / SCALE_RES
    return ls.exp().reshape(-1).numpy()


def _laplace_model():
    import constriction

    return constriction.stream.model.QuantizedLaplace(-MAX_LEVEL_VALUE, MAX_LEVEL_VALUE + 1)


def encode(signal: Signal, base: PyramidBase, latents: Sequence[Tensor]) -> tuple[dict[str, Any], bytes, Tensor]:
    """``(header, payload, decoded values [*grid, C])`` of integer ``latents`` (`fit_latents`)."""
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    model = _laplace_model()
    n = len(latents)
    # A stack: what goes in last comes out first. The decoder reads the coarsest level first
    # and, within a level, the anchors before the rest; so push finest first, rest before anchors.
    for lv in range(n):
        coarser = latents[lv + 1] if lv + 1 < n else None
        shape = latents[lv].shape[2:]
        mask = anchor_mask(shape)
        scales = _coding_scales(base, coarser, lv, shape, latents[lv] * mask)
        k = latents[lv].reshape(-1).to(torch.int32).numpy()
        m = mask.reshape(-1).numpy()
        for part in (~m, m):
            coder.encode_reverse(k[part], model, np.zeros(int(part.sum())), scales[part])
    payload = coder.get_compressed().astype("<u4").tobytes()
    header = {**signal.header(), "base": base.id}
    with torch.no_grad():
        values = base.net.render([y.to(base.device) for y in latents], signal.grid)[0].movedim(0, -1).cpu()
    return header, payload, values.clamp(0, 1).contiguous()


_TAPS = {1: 2, 2: 16, 3: 8}  # interpolation taps per output value: linear, bicubic, trilinear


def _parse(
    header: dict[str, Any], base: Any
) -> tuple[str, tuple[int, ...], dict[str, float], list[tuple[int, ...]]]:
    """``(kind, shape, meta, latent level shapes)`` of a latent-pyramid header, checked against ``base``."""
    kind, shape, meta = basefile.check_header(header, base, PyramidBase, "latent-pyramid")
    shapes = level_shapes(shape[:-1], base.config.levels)
    if sum(math.prod(s) for s in shapes) > MAX_SYMBOLS:
        raise CodecError(f"COIN++ header: the latents of shape {list(shape)} exceed the bound of {MAX_SYMBOLS} entries")
    return kind, shape, meta, shapes


def decode_work(header: dict[str, Any], base: Any) -> tuple[int, str]:
    """Multiply-adds to decode a latent-pyramid file (`compress.work`), and what they are.

    Synthesis, per point of the grid: ``levels - 1`` upsampled levels (`_TAPS` each), the
    pointwise MLP ``levels -> hidden -> hidden``, then the two 3-wide convolutions
    ``hidden -> conv -> C`` (``3^d`` taps). Entropy model, per latent entry: twice (before and
    after its level's anchors) the context network on the upsampled coarser level
    ``2 -> context -> 1`` (``3^d`` taps each; none on the coarsest level), once the anchors'
    neighbour term ``2 * 3^d``."""
    _, shape, _, shapes = _parse(header, base)
    c, taps, k = base.config, _TAPS[base.config.axes], 3**base.config.axes
    points = math.prod(shape[:-1])
    per_point = (
        (c.levels - 1) * taps + mlp_macs([c.levels, c.hidden, c.hidden]) + k * mlp_macs([c.hidden, c.conv, c.channels])
    )
    entropy = 0
    for lv, s in enumerate(shapes):
        context = taps + k * mlp_macs([2, c.context, 1]) if lv + 1 < len(shapes) else 0
        entropy += math.prod(s) * (2 * context + 2 * k)
    what = f"{points} points x {per_point} per point, plus {entropy} for the entropy model"
    return points * per_point + entropy, what


def decode(header: dict[str, Any], payload: bytes, base: Any) -> Signal:
    """The signal of a latent-pyramid file's header and payload, with the base it names."""
    import constriction

    kind, shape, meta, shapes = _parse(header, base)
    words = basefile.coded_words(payload)
    model = _laplace_model()
    latents: list[Tensor] = [torch.empty(0)] * len(shapes)
    with basefile.stream_errors():
        coder = constriction.stream.stack.AnsCoder(words)
        for lv in range(len(shapes) - 1, -1, -1):
            coarser = latents[lv + 1] if lv + 1 < len(shapes) else None
            m = anchor_mask(shapes[lv]).reshape(-1).numpy()
            k = np.zeros(m.size, dtype=np.int32)
            scales = _coding_scales(base, coarser, lv, shapes[lv], None)
            k[m] = coder.decode(model, np.zeros(int(m.sum())), scales[m])
            anchors = torch.from_numpy(k.astype(np.float32)).reshape(1, 1, *shapes[lv])
            scales = _coding_scales(base, coarser, lv, shapes[lv], anchors)
            k[~m] = coder.decode(model, np.zeros(int((~m).sum())), scales[~m])
            latents[lv] = torch.from_numpy(k.astype(np.float32)).reshape(1, 1, *shapes[lv])
        basefile.check_empty(coder)
    with torch.no_grad():
        values = base.net.render([y.to(base.device) for y in latents], shape[:-1])[0].movedim(0, -1).cpu()
    return Signal(values.clamp(0, 1).contiguous(), kind, meta)


__all__ = [
    "BASE_FORMAT",
    "PyramidBase",
    "PyramidConfig",
    "PyramidNet",
    "TrainConfig",
    "anchor_mask",
    "decode",
    "decode_work",
    "encode",
    "fit_latents",
    "fit_latents_many",
    "laplace_bits",
    "level_shapes",
    "train_pyramid_base",
]
