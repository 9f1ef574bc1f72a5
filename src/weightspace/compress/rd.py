"""Rate-distortion curve arithmetic: Bjontegaard deltas and matched-rate lookups.

Curves are sequences of ``(bits per pixel, PSNR dB)`` points, in any order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Curve = Sequence[tuple[float, float]]


def _clean(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """``(log rates, psnrs)`` sorted by PSNR, keeping the lower rate of equal PSNRs."""
    pts = sorted((float(p), float(r)) for r, p in curve if r > 0 and math.isfinite(p))
    psnr, lr = [], []
    for p, r in pts:
        if psnr and abs(p - psnr[-1]) < 1e-9:
            lr[-1] = min(lr[-1], math.log(r))
            continue
        psnr.append(p)
        lr.append(math.log(r))
    return np.array(lr), np.array(psnr)


def bd_rate(test: Curve, reference: Curve) -> float | None:
    """Bjontegaard delta rate: the mean rate change of ``test`` against ``reference`` at equal
    PSNR over their common PSNR range, in percent (negative: ``test`` needs fewer bits).

    Each curve's log-rate is interpolated as a function of PSNR by a monotone piecewise-cubic
    (PCHIP, as in the VCEG-AL22 update of the method) rather than one cubic polynomial, so a
    curve with more than four points does not oscillate. None when the PSNR ranges do not
    overlap or a curve has fewer than two distinct points."""
    from scipy.interpolate import PchipInterpolator

    (lt, pt), (lr, pr) = _clean(test), _clean(reference)
    if len(pt) < 2 or len(pr) < 2:
        return None
    lo, hi = max(pt[0], pr[0]), min(pt[-1], pr[-1])
    if not hi > lo:
        return None
    ft, fr = PchipInterpolator(pt, lt), PchipInterpolator(pr, lr)
    mean_diff = (ft.integrate(lo, hi) - fr.integrate(lo, hi)) / (hi - lo)
    return 100.0 * (math.exp(mean_diff) - 1.0)


def psnr_at(curve: Curve, bpp: float) -> float | None:
    """A codec's PSNR at rate ``bpp``, linear in log rate between the curve's neighbouring
    points (the upper envelope: the best PSNR at or below each rate); None outside its range."""
    pts = sorted((float(r), float(p)) for r, p in curve if r > 0)
    env: list[tuple[float, float]] = []
    for r, p in pts:  # upper envelope: keep points that beat every cheaper one
        if not env or p > env[-1][1]:
            env.append((r, p))
    if not env or bpp < env[0][0] or bpp > env[-1][0]:
        return None
    for (r0, p0), (r1, p1) in zip(env, env[1:]):
        if r0 <= bpp <= r1:
            t = (math.log(bpp) - math.log(r0)) / (math.log(r1) - math.log(r0)) if r1 > r0 else 0.0
            return p0 + t * (p1 - p0)
    return env[-1][1]


__all__ = ["bd_rate", "psnr_at"]
