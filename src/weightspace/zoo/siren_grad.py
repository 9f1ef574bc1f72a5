"""The MSE loss of many sine MLPs and its gradient, written out by hand.

Fitting a SIREN is dominated by elementwise passes over activations ``[n, P, width]``
(sin, cos, products), not by its small matmuls. Autograd spends extra passes and a fresh
allocation on each of them (``cos(z)`` then ``grad * cos``, omega as its own multiply,
the loss's broadcast backward). Here a step is the minimum: per sine layer one matmul
with omega in its epilogue and one ``sin`` forward; one ``cos`` (in place, over the
saved pre-activation) and one multiply backward, and the weight/bias gradients as
matmuls. All buffers are allocated once, for the largest batch, and reused as views
while finished networks leave it.

Sine and cosine of a pre-activation are computed together (`sincos`): one range reduction
``z = k*pi + r`` and two short polynomials in ``r``, about three times cheaper than
``torch.sin`` plus ``torch.cos`` on CPU once compiled and within ~3e-7 of them; the cosine
is kept for the backward pass instead of the pre-activation.

On CPU in float32 the whole loss-and-gradient (`_loss_and_grads`: the same arithmetic as
above, as a pure function) is compiled by `torch.compile` into one region: the matmuls stay
library calls, and the elementwise work between them (bias, omega, the polynomials, the
products with the cosine, the bias sums) becomes a few fused loops with no per-op dispatch.
Python floats (omega, the coefficients) are compiled in as constants (`weightspace._compile`).
Compiling happens once per process and network shape (a one-network batch runs as two,
since compiled code specialises size 1): on the 2-core CPU ~35 s for the grid step and ~24 s
for the dense one with Inductor's disk cache cold (measured with
``TORCHINDUCTOR_FORCE_DISABLE_CACHES=1``), seconds once the cache holds the kernels. Where compiling is impossible (no C++ compiler) or
switched off (``WEIGHTSPACE_COMPILE=0``), on GPUs and in float64, the buffered eager step
runs, with ``torch.sin`` / ``torch.cos``.

Grids (images, volumes: coordinates that are the row-major product of per-axis values,
`grid_axes`): the first layer's pre-activation is a sum over axes, ``z = om (W x + b) =
sum_t om W[:, t] a_t[i_t] + om b``, so the compiled step evaluates sin/cos only on the axis
values (56 per unit for a 28 x 28 image instead of 784) and forms ``sin z`` and ``cos z`` by
the angle-sum identities (`_grid_first_layer`), with no matmul against the 2-wide input; the
cosine is re-formed in the backward pass instead of stored. Same arithmetic up to float32
rounding (tests compare both with float64 autograd). ``WEIGHTSPACE_GRID_IDENTITY=0`` turns
it off. Measured on the 2-core CPU (28 x 28 images, 52 networks per batch, interleaved in one
process): 1.13x the INR-steps/s of the dense first layer, median of the rounds of the recorded
run of `benchmarks/fit_inrs.py` (single rounds 1.08-1.31x).

On CPU in float32, where `weightspace.zoo.siren_native` applies (hidden widths of 16, 32, 64
or 128) and its C kernel builds, `SirenMSEGrad` calls that kernel instead: the same arithmetic
(polynomial sin/cos, the angle-sum first layer on grids), one network per thread, tile by tile
in L1. The compiled step above is the fallback (``WEIGHTSPACE_NATIVE=0`` selects it), the
eager buffered step the fallback's.

Applies to specs whose layers are all linear with bias, every hidden layer ``sine`` and
the last ``identity`` (both published SIREN recipes); `supports` says whether a spec
qualifies, and `weightspace.zoo.fit_inr` falls back to autograd otherwise.
"""

from __future__ import annotations

import math
import os
import types
import warnings

import torch
from torch import Tensor

from weightspace._compile import compile_kernel
from weightspace.core.spec import NetworkSpec
from weightspace.zoo import siren_native

# pi in three parts (Cody & Waite): k * _PI_A is exact in float32 for |k| < 2^12, so the
# reduced argument keeps full precision for |z| up to ~10^4 (SIREN pre-activations stay
# far below: omega = 30 times a unit-scale dot product).
_PI_A = 3.140625
_PI_B = float(torch.tensor(math.pi - _PI_A, dtype=torch.float32))
_PI_C = math.pi - _PI_A - _PI_B
# Taylor coefficients; on |r| <= pi/2 the truncation error is below 6e-8 (sin, degree 11)
# and 7e-9 (cos, degree 12), under float32 rounding.
_SIN = [(-1) ** i / math.factorial(2 * i + 1) for i in range(6)]
_COS = [(-1) ** i / math.factorial(2 * i) for i in range(7)]


def _sincos_poly(z: Tensor) -> tuple[Tensor, Tensor]:
    k = torch.round(z * (1.0 / math.pi))
    r = z - k * _PI_A
    r = r - k * _PI_B
    r = r - k * _PI_C
    sign = 1.0 - 2.0 * (k - 2.0 * torch.floor(k * 0.5))  # (-1)^k
    r2 = r * r
    s = _SIN[-1]
    for a in reversed(_SIN[:-1]):
        s = a + r2 * s
    c = _COS[-1]
    for a in reversed(_COS[:-1]):
        c = a + r2 * c
    return r * s * sign, c * sign


def _sincos_torch(z: Tensor) -> tuple[Tensor, Tensor]:
    return torch.sin(z), torch.cos(z)


_compiled = None  # the compiled polynomial, or _sincos_torch once compiling has failed


def _use_compiled(z: Tensor) -> bool:
    # the polynomials are accurate to float32, not beyond; GPUs have fast sin/cos of their own
    return z.device.type == "cpu" and z.dtype == torch.float32 and os.environ.get("WEIGHTSPACE_COMPILE", "1") != "0"


def sincos(z: Tensor) -> tuple[Tensor, Tensor]:
    """``(sin z, cos z)``, same shape as ``z``; see the module docstring for how."""
    global _compiled
    if not _use_compiled(z):
        return _sincos_torch(z)
    if _compiled is None:
        fn = compile_kernel(_sincos_poly)
        try:
            out = fn(z)
        except Exception as e:  # noqa: BLE001 -- no compiler, unsupported platform: stay correct, only slower
            warnings.warn(f"torch.compile of the fused sin/cos failed ({type(e).__name__}: {e}); "
                          "using torch.sin and torch.cos", stacklevel=2)
            _compiled = _sincos_torch
            return _sincos_torch(z)
        _compiled = fn
        return out
    return _compiled(z)


def grid_axes(coords: Tensor) -> tuple[Tensor, ...] | None:
    """The axis values ``(a_0 [A_0], ..., a_(d-1) [A_(d-1)])`` when ``coords [P, d]`` is exactly
    their row-major Cartesian product (the layout of `grid_coordinates`, any spacing), with
    d >= 2 and every A_t >= 2; otherwise None."""
    p, d = coords.shape
    if d < 2 or p < 4:
        return None
    sizes = [int(torch.unique(coords[:, t]).numel()) for t in range(d)]
    if math.prod(sizes) != p or min(sizes) < 2:
        return None
    axes, stride = [], p
    for t, a in enumerate(sizes):
        stride //= a
        axes.append(coords[::stride, t][:a].contiguous())
    mesh = torch.meshgrid(*axes, indexing="ij")
    if not torch.equal(torch.stack([m.reshape(-1) for m in mesh], dim=1), coords):
        return None
    return tuple(axes)


def _outer(s: Tensor, c: Tensor, s2: Tensor, c2: Tensor) -> tuple[Tensor, Tensor]:
    """sin and cos of every sum ``u + v`` from those of ``u`` ``[n, Q, k]`` and ``v`` ``[n, R, k]``:
    ``[n, Q*R, k]`` (angle-sum identities, row-major over (Q, R))."""
    s, c, s2, c2 = s.unsqueeze(2), c.unsqueeze(2), s2.unsqueeze(1), c2.unsqueeze(1)
    return (s * c2 + c * s2).flatten(1, 2), (c * c2 - s * s2).flatten(1, 2)


def _grid_first_layer(axes: tuple[Tensor, ...], w: Tensor, b: Tensor, om: float):
    """``h = sin(om (W x + b))`` ``[n, P, k]`` for the points of a grid, by the angle-sum identity.

    On a grid the pre-activation is a sum over axes, ``z = sum_t om W[:, t] a_t[i_t]`` (+ om b on
    axis 0), so sin/cos are evaluated only on the axis values (``sum_t A_t`` per unit, not
    ``prod_t A_t``) and combined by products, and no matmul with the K = d input is needed.
    Returns ``h``, what the backward needs (sin/cos of all but the last axis combined, and of the
    last axis), and every table built (returned by the step so that they are computed once, not
    re-derived inside the loops that read them)."""
    parts = []
    for t, a in enumerate(axes):
        z = w[:, None, :, t] * a[None, :, None]
        parts.append(_sincos_poly((z + b.unsqueeze(1) if t == 0 else z) * om))  # [n, A_t, k]
    (s, c), tables = parts[0], [*parts[0]]
    for s2, c2 in parts[1:-1]:
        s, c = _outer(s, c, s2, c2)
        tables += [s, c]
    sl, cl = parts[-1]
    tables += [sl, cl]
    h = _outer(s, c, sl, cl)[0]
    return h, (s, c, sl, cl), tables


def _grid_first_layer_grads(axes: tuple[Tensor, ...], g_h: Tensor, saved, om: float) -> tuple[Tensor, Tensor]:
    """``(dW [n, k, d], db [n, k])`` of the first layer on a grid from ``g_h = d/dh`` ``[n, P, k]``."""
    s, c, sl, cl = saved
    n, k = s.shape[0], s.shape[2]
    cos = c.unsqueeze(2) * cl.unsqueeze(1) - s.unsqueeze(2) * sl.unsqueeze(1)  # [n, Q, A_last, k], not stored
    g = (g_h.reshape(n, s.shape[1], sl.shape[1], k) * cos).reshape(n, *(a.shape[0] for a in axes), k)
    d = len(axes)
    per_axis = [g.sum(dim=[1 + u for u in range(d) if u != t]) for t in range(d)]  # [n, A_t, k]
    dw = torch.stack([(g_t * a[None, :, None]).sum(dim=1) for g_t, a in zip(per_axis, axes)], dim=-1)
    return dw * om, per_axis[0].sum(dim=1) * om


def _loss_and_grads(x: Tensor | tuple[Tensor, ...], y: Tensor, ws: list[Tensor], bs: list[Tensor],
                    omegas: tuple[float, ...]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Per-network MSE ``[n]``, the gradients of its sum, ``[dW_1, db_1, ..., dW_L, db_L]``, and
    tables to discard: the arithmetic of `SirenMSEGrad` as one pure function, for `torch.compile`.
    ``x`` is the coordinates ``[P, d]``, or a grid's axis values (`grid_axes`)."""
    _, p, c = y.shape
    grid = isinstance(x, tuple)
    if grid:
        h, saved, tables = _grid_first_layer(x, ws[0], bs[0], omegas[0])
        hs, coss = [h], [None]
    else:
        h, hs, coss, tables = x, [], [], []
    for w, b, om in zip(ws[len(hs):-1], bs[len(hs):-1], omegas[len(hs):]):
        h, cz = _sincos_poly((torch.matmul(h, w.transpose(1, 2)) + b.unsqueeze(1)) * om)
        hs.append(h)
        coss.append(cz)
    if c == 1:  # a reduction over the width that fuses into the last sin/cos loop, not a GEMV re-reading h
        r = ((h * ws[-1]).sum(dim=-1) + bs[-1] - y[..., 0]).unsqueeze(1)  # residual [n, 1, P]
    else:
        r = torch.bmm(ws[-1], h.transpose(1, 2)) + bs[-1].unsqueeze(2) - y.transpose(1, 2)  # residual [n, c, P]
    mse = r.square().mean(dim=(1, 2))
    r = r * (2.0 / (p * c))
    grads = [r.sum(dim=2), torch.bmm(r, h)]  # db, dW from the last layer back, reversed below
    g_h = r.transpose(1, 2) * ws[-1] if c == 1 else torch.bmm(r.transpose(1, 2), ws[-1])
    for i in range(len(hs) - 1, -1, -1):
        om = omegas[i]
        if i == 0 and grid:
            g_w, g_b = _grid_first_layer_grads(x, g_h, saved, om)
            grads += [g_b, g_w]
            break
        g_z = g_h * coss[i]
        g_w = torch.bmm(g_z.transpose(1, 2), hs[i - 1]) if i > 0 else torch.matmul(x.T, g_z).transpose(1, 2)
        grads += [g_z.sum(dim=1) * om, g_w * om]
        if i > 0:
            g_h = torch.bmm(g_z, ws[i]) * om
    return mse, grads[::-1], tables


# Compiled steps, one per network shape: (input dims or ("grid", axes), layer shapes, channels,
# omegas) -> the compiled function, or False once compiling has failed.
_steps: dict[tuple, object] = {}
_CANONICAL_N, _CANONICAL_P = 2, 64
_CANONICAL_AXES = (5, 6, 7, 8)  # distinct sizes: no equality between a grid's axes is assumed

def _compiled_step(x: Tensor | tuple[Tensor, ...], y: Tensor, ws: list[Tensor], bs: list[Tensor],
                   omegas: tuple[float, ...]):
    """`_loss_and_grads` compiled, or None when compiling fails (warned once per shape).

    Inductor picks its loop and reduction strategies from the sizes it first compiles for,
    so a compiled step's rounding could depend on what a process fitted before. Each network
    shape therefore gets its own copy of the function (its own Dynamo cache), compiled at one
    canonical size (2 networks; 64 points, or a grid of 5 x 6 (x 7 x 8)) before its first real
    call: every process — a Ray worker, a resumed run — builds the same kernels, and fits are
    bitwise reproducible.
    """
    if y.shape[0] == 1:  # compiled code specialises size 1: run a one-network batch as two
        # (copies, not stride-0 views: the compiled code is specialised to contiguous inputs)
        out = _compiled_step(x, y.repeat(2, 1, 1), [w.repeat(2, 1, 1) for w in ws], [b.repeat(2, 1) for b in bs], omegas)
        return None if out is None else (out[0][:1], [g[:1] for g in out[1]])
    grid = isinstance(x, tuple)
    key = (("grid", len(x)) if grid else x.shape[1], tuple(tuple(w.shape[1:]) for w in ws), y.shape[2], omegas)
    fn = _steps.get(key)
    if fn is False:
        return None
    if fn is None:
        # a fresh code object: Dynamo keeps its compiled variants per code object
        copy = types.FunctionType(_loss_and_grads.__code__.replace(), _loss_and_grads.__globals__, "_loss_and_grads")
        fn = compile_kernel(copy)
        if grid:
            x0 = tuple(torch.linspace(-1.0, 1.0, m) for m in _CANONICAL_AXES[: len(x)])
            p0 = math.prod(_CANONICAL_AXES[: len(x)])
        else:
            x0, p0 = torch.zeros(_CANONICAL_P, x.shape[1]), _CANONICAL_P
        n, c = _CANONICAL_N, y.shape[2]
        try:
            fn(x0, torch.zeros(n, p0, c), [torch.zeros(n, *w.shape[1:]) for w in ws],
               [torch.zeros(n, *b.shape[1:]) for b in bs], omegas)
        except Exception as e:  # noqa: BLE001 -- no compiler, unsupported platform: stay correct, only slower
            warnings.warn(f"torch.compile of the SIREN step failed ({type(e).__name__}: {e}); "
                          "using the eager step with torch.sin and torch.cos", stacklevel=3)
            _steps[key] = False
            return None
        _steps[key] = fn
    mse, grads, _ = fn(x, y, ws, bs, omegas)
    return mse, grads


def supports(spec: NetworkSpec) -> bool:
    *hidden, last = spec.layers
    return (
        all(layer.kind == "linear" and layer.bias for layer in spec.layers)
        and all(layer.activation == "sine" for layer in hidden)
        and last.activation == "identity"
    )


class SirenMSEGrad:
    """``loss_and_grad(params, y)`` for stacked networks.

    params: ``[W_1, b_1, ..., W_L, b_L]`` with ``W_i [n, out_i, in_i]``, ``b_i [n, out_i]``;
    coords: ``[P, d]`` shared by all networks; y: ``[n, P, c]`` (target minus the recipe's
    output offset). Returns the per-network MSE ``[n]`` (mean over points and channels)
    of the parameters as given, and writes ``grad`` of the summed MSE into each
    parameter's ``.grad`` (so every network gets its own gradient).
    """

    def __init__(self, spec: NetworkSpec, coords: Tensor, max_networks: int) -> None:
        if not supports(spec):
            raise ValueError("SirenMSEGrad needs linear layers with bias, sine hidden layers and an identity last layer")
        self.spec, self.coords = spec, coords
        *hidden, last = spec.layers
        # the native kernel (`siren_native`) where it applies and builds, else the compiled step
        self.native = siren_native.supported(coords, [layer.out_features for layer in hidden], len(hidden)) \
            and siren_native.available()
        # on a grid both evaluate the first layer's sines per axis (`_grid_first_layer`)
        use_grid = os.environ.get("WEIGHTSPACE_GRID_IDENTITY", "1") != "0" and (self.native or _use_compiled(coords))
        self.axes = grid_axes(coords) if use_grid else None
        p = coords.shape[0]
        kw = {"device": coords.device, "dtype": coords.dtype}
        self.omegas = [layer.omega for layer in hidden]
        self._sizes = [(max_networks, p, layer.out_features) for layer in hidden], (max_networks, last.out_features, p), kw
        self._z: list[Tensor] = []  # the eager step's buffers, allocated on its first call

    def _buffers(self) -> None:
        hidden, out, kw = self._sizes
        # z_i = omega * (W h + b); (h_i, cos_i) = (sin z_i, cos z_i), cos kept for the backward
        self._z = [torch.empty(s, **kw) for s in hidden]
        self._g = [torch.empty(s, **kw) for s in hidden]
        # the output is computed transposed, [n, c, P]: W_L h^T is a faster bmm than h W_L^T
        # when c is 1 or 3
        self._out = torch.empty(out, **kw)

    @torch.no_grad()
    def __call__(self, params: list[Tensor], y: Tensor) -> Tensor:
        n, p, c = y.shape
        ws, bs = params[0::2], params[1::2]
        if self.native and y.dtype == torch.float32 and y.device.type == "cpu":
            mse, grads = siren_native.mse_and_grads(self.coords, self.axes, y, ws, bs, tuple(self.omegas))
            for t, g in zip(params, grads):
                t.grad = g
            return mse
        if _use_compiled(y):
            x = self.axes if self.axes is not None else self.coords
            out = _compiled_step(x, y, [w.detach() for w in ws], [b.detach() for b in bs], tuple(self.omegas))
            if out is not None:
                mse, grads = out
                for t, g in zip(params, grads):
                    t.grad = g
                return mse
        if not self._z:
            self._buffers()
        x = self.coords.unsqueeze(0).expand(n, *self.coords.shape)  # stride-0 batch view

        # ---- forward
        h, hs, coss = x, [], []
        for w, b, z, om in zip(ws, bs, self._z, self.omegas):
            z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2), beta=om, alpha=om, out=z[:n])
            h, cz = _sincos_torch(z)  # the eager step runs where the compiled one cannot
            hs.append(h)
            coss.append(cz)
        r = torch.baddbmm(bs[-1].unsqueeze(2), ws[-1], h.transpose(1, 2), out=self._out[:n])
        r.sub_(y.transpose(1, 2))  # residual [n, c, P]
        mse = r.square().mean(dim=(1, 2))

        # ---- backward of sum_n mse_n: d/d out = 2 r / (P c)
        r.mul_(2.0 / (p * c))
        grads: list[Tensor] = [torch.empty(0)] * len(params)
        grads[-2] = torch.bmm(r, h)  # [n, c, width]
        grads[-1] = r.sum(dim=2)
        g_h = self._g[-1][:n]  # d/d h_(L-1) = r^T W_L  [n, P, width]
        if c == 1:  # an outer product: a broadcast multiply beats a bmm with k = 1
            torch.mul(r.transpose(1, 2), ws[-1], out=g_h)
        else:
            torch.bmm(r.transpose(1, 2), ws[-1], out=g_h)
        for i in range(len(hs) - 1, -1, -1):
            om = self.omegas[i]
            g_z = g_h.mul_(coss[i])  # d/d (W h + b), up to the factor omega
            if i > 0:
                grads[2 * i] = torch.bmm(g_z.transpose(1, 2), hs[i - 1]).mul_(om)
            else:  # the shared input: one [d, P] x [n, P, width] product, not n strided ones
                grads[0] = torch.matmul(self.coords.T, g_z).transpose(1, 2).mul_(om)
            grads[2 * i + 1] = g_z.sum(dim=1).mul_(om)
            if i > 0:
                g_h = torch.baddbmm(self._g[i - 1][:n], g_z, ws[i], beta=0.0, alpha=om, out=self._g[i - 1][:n])
        for t, g in zip(params, grads):
            t.grad = g
        return mse
