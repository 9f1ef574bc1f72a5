"""One codec API for every signal kind: `compress` a `Signal` to bytes, `decompress` them back.

Rate control:

- COIN, ``bpp=B``: the architecture is chosen from the budget (`coin.coin_architecture`),
  one fit; the file's payload stays within ``B`` bits per point.
- COIN, ``psnr=P``: budgets from `COIN_BPP_LADDER` are tried from small to large, one fit
  each, until the decoded signal reaches ``P`` dB (else the best one is returned and
  ``reached`` is False).
- COIN++ with a patch base (`coinpp.CoinppBase`), ``bpp=B`` / ``psnr=P``: the latents are
  fitted once; quantisation steps from `COINPP_STEPS` (coarse to fine) are tried and the
  coarsest step that reaches ``P`` dB, or the finest whose payload fits ``B`` bits per
  point, is kept.
- COIN++ with a latent-pyramid base (`pyramid.PyramidBase`): the rate weight ``lambda`` is
  bisected in log space over ``search`` fits; kept is the best-PSNR fit within ``B`` bits
  per point, or the smallest file reaching ``P`` dB.
- overfit (`overfit`: latents and decoder fitted per image, no base): for ``bpp=B``, first
  ``config.pilots`` short fits from the pyramid start locate lambda (a short fit's rate
  predicts a long one's; the first at a lambda guessed from the target); then
  ``config.search`` fits: the first from the pyramid start, each later one warm-started from
  the fit before it (``config.refit_steps`` steps), each at the ``lambda`` a secant through
  the fits so far predicts (log bits per pixel, or PSNR, against log ``lambda``); kept as
  for the latent pyramid (the pilots' files included).

PSNR is measured on the decoded values in [0, 1] against the input (peak 1). "bpp" counts
payload bits per point (pixel / sample / voxel), as the COIN papers do; ``file_bpp`` counts
the whole file (container and header included).

Devices: COIN fits and evaluates its network on ``device`` (`compress`, `decompress`);
COIN++ computes where its base's network is (`load_base` with ``device``). Decoded values
come back on the CPU, and the latent pyramid's entropy model always runs on the CPU in
float64, so a file written on one device decodes on any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from weightspace._progress import disabled
from weightspace.compress import basefile, coin, coinpp, overfit, pyramid
from weightspace.compress.format import CodecError, pack, unpack
from weightspace.compress.signal import Signal
from weightspace.compress.work import DecodeWorkError, check_work

COIN_BPP_LADDER: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
COINPP_STEPS: tuple[float, ...] = (4.0, 2.0, 1.4, 1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.125, 0.09, 0.0625, 0.03, 0.015)


@dataclass(frozen=True)
class Compressed:
    """data: the file's bytes; bpp: payload bits per point; file_bpp: file bits per point;
    psnr: dB of the decoded signal; reached: whether the requested target was met."""

    data: bytes
    method: str
    bpp: float
    file_bpp: float
    psnr: float
    reached: bool
    header: dict


def psnr(decoded: torch.Tensor, original: torch.Tensor) -> float:
    mse = float((decoded.clamp(0, 1) - original).square().mean())
    return 10.0 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()


def _result(method: str, signal: Signal, header: dict, payload: bytes, decoded, reached: bool) -> Compressed:
    data = pack(method, header, payload)
    return Compressed(
        data, method, 8 * len(payload) / signal.num_points, 8 * len(data) / signal.num_points,
        psnr(decoded, signal.values), reached, header,
    )


def compress(
    signal: Signal,
    *,
    method: str = "coin",
    bpp: float | None = None,
    psnr_target: float | None = None,
    base: coinpp.CoinppBase | pyramid.PyramidBase | None = None,
    coin_config: coin.CoinConfig | None = None,
    refine_steps: int = 0,
    search: int = 6,
    fit_steps: int | None = None,
    overfit_config: overfit.OverfitConfig | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> Compressed:
    """Compress ``signal`` to a target rate (``bpp``) or quality (``psnr_target``), exactly one given.
    ``progress``: bars with rate and ETA over the fits (COIN: each fit and its quantisation-aware
    fine-tuning; the latent pyramid: every step of every fit of the rate search). ``device``:
    where COIN fits its network (COIN++ runs where ``base``'s network is; overfit on the CPU).
    ``overfit_config``: the overfit codec's sizes and effort (default `OverfitConfig()`)."""
    if (bpp is None) == (psnr_target is None):
        raise ValueError("give exactly one of bpp and psnr_target")
    if bpp is not None and not bpp > 0:
        raise ValueError(f"bpp must be positive, got {bpp}")
    if method == "coin":
        config = coin_config or coin.CoinConfig()
        return _compress_coin(signal, bpp, psnr_target, replace(config, progress=config.progress or progress), device)
    if method == "coin++":
        if base is None:
            raise ValueError("COIN++ needs a base network (train one with `weightspace compress-base`)")
        if isinstance(base, pyramid.PyramidBase):
            return _compress_pyramid(signal, base, bpp, psnr_target, search, fit_steps, progress)
        return _compress_coinpp(signal, base, bpp, psnr_target, refine_steps)
    if method == overfit.METHOD:
        return _compress_overfit(signal, bpp, psnr_target, overfit_config or overfit.OverfitConfig(), progress)
    raise ValueError(f"unknown method {method!r}; expected 'coin', 'coin++' or 'overfit'")


def _compress_coin(signal: Signal, bpp: float | None, target: float | None, config: coin.CoinConfig,
                   device: str | torch.device = "cpu") -> Compressed:
    d_in, c = len(signal.grid), signal.channels
    if bpp is not None:
        hidden = coin.coin_architecture(bpp, signal.num_points, d_in, c, config.bits)
        header, payload, values = coin.encode(signal, hidden, config, device=device)
        return _result("coin", signal, header, payload, values, 8 * len(payload) <= bpp * signal.num_points)
    best = None
    for rate in COIN_BPP_LADDER:
        try:
            hidden = coin.coin_architecture(rate, signal.num_points, d_in, c, config.bits)
        except ValueError:
            continue
        header, payload, values = coin.encode(signal, hidden, config, device=device)
        best = _result("coin", signal, header, payload, values, psnr(values, signal.values) >= target)
        if best.reached:
            return best
    if best is None:
        raise ValueError("no COIN architecture fits this signal")
    return best


def _compress_coinpp(
    signal: Signal, base: coinpp.CoinppBase, bpp: float | None, target: float | None, refine_steps: int
) -> Compressed:
    z = coinpp.latents_of(signal, base, refine_steps=refine_steps)
    tried = []
    for step in COINPP_STEPS:  # coarse to fine: rate grows, distortion falls
        header, payload, values = coinpp.encode_latents_to_file(signal, base, z, step)
        res = _result("coin++", signal, header, payload, values, False)
        if bpp is not None:
            if res.bpp > bpp:
                break
            tried.append(res)
        else:
            tried.append(res)
            if res.psnr >= target:
                return Compressed(**{**res.__dict__, "reached": True})
    if not tried:  # even the coarsest step exceeds the rate: return it, marked as missed
        return res
    best = tried[-1]
    return Compressed(**{**best.__dict__, "reached": bpp is not None})


def _pick(fits: list[Compressed], bpp: float | None, target: float | None) -> Compressed:
    """Of a rate search's files: the best PSNR within ``bpp`` payload bits per point, or the
    smallest reaching ``target`` dB; when none does, the smallest (rate) or the best (quality),
    marked as not reached."""
    if bpp is not None:
        ok = [f for f in fits if f.bpp <= bpp]
        best = max(ok, key=lambda f: f.psnr) if ok else min(fits, key=lambda f: f.bpp)
    else:
        ok = [f for f in fits if f.psnr >= target]
        best = min(ok, key=lambda f: f.bpp) if ok else max(fits, key=lambda f: f.psnr)
    return Compressed(**{**best.__dict__, "reached": bool(ok)})


LAMBDA_RANGE = (1e-5, 1.0)  # the rate weights the latent-pyramid search explores
LAMBDA_START = 0.01


def _compress_pyramid(
    signal: Signal, base: pyramid.PyramidBase, bpp: float | None, target: float | None, search: int,
    fit_steps: int | None, progress: bool = False,
) -> Compressed:
    if not isinstance(search, int) or search < 1:
        raise ValueError(f"search must be a positive number of fits, got {search!r}")
    from tqdm.auto import tqdm

    lo, hi = (math.log(v) for v in LAMBDA_RANGE)
    log_lam = math.log(LAMBDA_START)
    fits: list[Compressed] = []
    steps = base.fit_steps if fit_steps is None else fit_steps
    bar = tqdm(total=search * steps, disable=disabled(progress), unit="step", desc="rate search")
    for k in range(search):
        z = pyramid.fit_latents(signal, base, math.exp(log_lam), steps=fit_steps, on_step=lambda: bar.update(1))
        header, payload, values = pyramid.encode(signal, base, z)
        res = _result("coin++pyramid", signal, header, payload, values, False)
        fits.append(res)
        bar.set_postfix(fit=f"{k + 1}/{search}", bpp=f"{res.bpp:.3f}", psnr=f"{res.psnr:.2f}dB")
        met = res.bpp <= bpp if bpp is not None else res.psnr >= target
        # within budget (or above the quality): spend more bits, i.e. lower lambda; else raise it
        if (met and bpp is not None) or (not met and target is not None):
            hi = log_lam
        else:
            lo = log_lam
        log_lam = (lo + hi) / 2
    bar.close()
    return _pick(fits, bpp, target)


# The overfit search's first guess, before any fit of this image: log-linear in development
# runs (camera and coffee at 256x256, 1000 steps, an earlier configuration: lr 1e-2, hidden 8),
# lambda 0.008 gave ~0.17 bpp and ~27 dB, lambda 0.002 ~0.37 bpp, so d log(bpp) / d log(lambda)
# ~ -0.56; PSNR moved ~ -1.6 dB per unit of log(lambda). The pilots and the secant correct it.
OVERFIT_ANCHOR = (0.008, 0.17, 27.0)
OVERFIT_SLOPES = (-0.56, -1.6)


def _secant_slope(points: list[tuple[float, float]], prior: float) -> float:
    """Slope of ``y`` against log lambda through the two points (``(log lambda, y)``) with the
    widest lambda spread; ``prior`` unless it is negative (more lambda, fewer bits / less PSNR)."""
    a, b = min(points), max(points)
    if b[0] - a[0] > 1e-6:
        s = (b[1] - a[1]) / (b[0] - a[0])
        if s < 0:
            return s
    return prior


def _next_lambda(points: list[tuple[float, float]], goal: float, prior_slope: float, max_step: float = 2.0) -> float:
    """log lambda where the secant through the two points nearest ``goal`` (``(log lambda,
    y)``) reaches it; one point, or an inverted secant: the prior slope. A step moves log
    lambda by at most ``max_step``."""
    near = sorted(points, key=lambda p: abs(p[1] - goal))[:2]
    slope = _secant_slope(near, prior_slope) if len(near) == 2 else prior_slope
    x0, y0 = near[0]
    step = max(-max_step, min(max_step, (goal - y0) / slope))
    lo, hi = (math.log(v) for v in LAMBDA_RANGE)
    return max(lo, min(hi, x0 + step))


def _compress_overfit(
    signal: Signal, bpp: float | None, target: float | None, config: overfit.OverfitConfig, progress: bool
) -> Compressed:
    from tqdm.auto import tqdm

    overfit.check_signal(signal)
    x = signal.values.movedim(-1, 0)[None]
    lam0, bpp0, psnr0 = OVERFIT_ANCHOR
    lo, hi = (math.log(v) for v in LAMBDA_RANGE)
    if bpp is not None:
        goal, slope = math.log(bpp), OVERFIT_SLOPES[0]
        log_lam = math.log(lam0) + (goal - math.log(bpp0)) / slope
    else:
        goal, slope = target, OVERFIT_SLOPES[1]
        log_lam = math.log(lam0) + (goal - psnr0) / slope
    log_lam = max(lo, min(hi, log_lam))
    use_pilots = bpp is not None  # a short fit predicts the rate, not the quality
    bar = tqdm(total=config.total_steps(use_pilots), disable=disabled(progress), unit="step",
               desc="overfit: pilots, fit, rate search")
    fits: list[Compressed] = []

    def measure(state: overfit.Fitted, lam: float, label: str) -> float:
        header, payload, values = overfit.encode(signal, state, lam)
        res = _result(overfit.METHOD, signal, header, payload, values, False)
        fits.append(res)
        bar.set_postfix(fit=label, lam=f"{lam:.2g}", bpp=f"{res.bpp:.3f}", psnr=f"{res.psnr:.2f}dB")
        return math.log(res.bpp) if bpp is not None else res.psnr

    pilot_points: list[tuple[float, float]] = []
    for k in range(config.pilots if use_pilots else 0):
        lam = math.exp(log_lam)
        state = overfit.fit(x, lam, config, steps=config.pilot_steps, on_step=lambda: bar.update(1))
        pilot_points.append((log_lam, measure(state, lam, f"pilot {k + 1}")))
        log_lam = _next_lambda(pilot_points, goal, slope)
    if len(pilot_points) >= 2:  # the pilots' secant slope is the prior for the corrections below
        slope = _secant_slope(pilot_points, slope)
    points: list[tuple[float, float]] = []
    state = None
    for k in range(config.search):
        lam = math.exp(log_lam)
        state = overfit.fit(x, lam, config, start=state, steps=config.steps if k == 0 else config.refit_steps,
                            on_step=lambda: bar.update(1))
        points.append((log_lam, measure(state, lam, f"{k + 1}/{config.search}")))
        log_lam = _next_lambda(points, goal, slope, max_step=0.5)  # warm starts follow small moves only
    bar.close()
    return _pick(fits, bpp, target)


def decode_work(data: bytes, *, base: coinpp.CoinppBase | pyramid.PyramidBase | None = None) -> int:
    """Multiply-adds that decoding ``data`` takes (`compress.work`), from its header alone."""
    method, header, _ = unpack(data)
    return _DECODE_WORK[method](header, base)[0]


def decompress(
    data: bytes, *, base: coinpp.CoinppBase | pyramid.PyramidBase | None = None, max_work: float | None = None,
    device: str | torch.device = "cpu",
) -> Signal:
    """The signal in a compressed file; `CodecError` (a ValueError) for anything unreadable.
    ``device``: where a COIN file's network is evaluated (COIN++ runs where ``base``'s network
    is); the signal comes back on the CPU.

    Before decoding, the work the header asks for (multiply-adds, `compress.work`) is checked
    against ``max_work``, by default ``max(2^34, 2^20 * len(data))``: a file over it raises
    `DecodeWorkError` (a `CodecError`) naming both numbers, without decoding anything.
    """
    method, header, payload = unpack(data)
    need, what = _DECODE_WORK[method](header, base)
    check_work(need, len(data), max_work, what)
    if method == "coin":
        return coin.decode(header, payload, device=device)
    if method == "coin++pyramid":
        return pyramid.decode(header, payload, base)
    if method == overfit.METHOD:
        return overfit.decode(header, payload)
    return coinpp.decode(header, payload, base)


_DECODE_WORK = {
    "coin": coin.decode_work, "coin++": coinpp.decode_work, "coin++pyramid": pyramid.decode_work,
    overfit.METHOD: overfit.decode_work,
}


def load_base(path, *, device: str | torch.device = "cpu") -> coinpp.CoinppBase | pyramid.PyramidBase:
    """Either kind of COIN++ base file, told apart by its safetensors metadata; its network is
    moved to ``device`` (where the files coded with it are then fitted and decoded)."""
    fmt = basefile.file_format(path)
    if fmt == pyramid.BASE_FORMAT:
        return pyramid.PyramidBase.load(path, device=device)
    return coinpp.CoinppBase.load(path, device=device)


def inspect(data: bytes) -> dict:
    """Method and header of a compressed file (checked like `decompress`, payload not decoded)."""
    method, header, payload = unpack(data)
    return {"method": method, "payload_bytes": len(payload), **header}


__all__ = [
    "COINPP_STEPS",
    "COIN_BPP_LADDER",
    "LAMBDA_RANGE",
    "CodecError",
    "Compressed",
    "DecodeWorkError",
    "compress",
    "decode_work",
    "decompress",
    "inspect",
    "load_base",
    "psnr",
]
