"""The SIREN loss-and-gradient step as native code: `siren_kernel.c`, compiled on first use.

Why: a SIREN's points are independent until the loss sums them, so the whole forward and
backward pass can run tile by tile (16 points) with the tile's activations in L1, one network
per thread; the compiled PyTorch step (`weightspace.zoo.siren_grad`) instead streams
``[n, P, width]`` tensors through L3/DRAM between its fused loops and library matmuls. The
measured difference is in BENCHMARKS.md (fit_inrs).

The C file is compiled once per machine with the system's C compiler (``$CC``, else ``cc``)
at ``-O3 -march=native`` into ``$WEIGHTSPACE_CACHE_DIR`` (default ``~/.cache/weightspace``),
under a name that hashes the source, the flags, the compiler's version and the CPU's feature
flags, so a shared home directory on unlike machines gets one build per kind of CPU. It is
loaded with ctypes (which releases the GIL during the call); ``torch.get_num_threads()``
OpenMP threads each run a contiguous share of the networks, one network at a time (a compiler
without OpenMP gives a one-thread kernel). Without a compiler, on other
devices or dtypes, for widths other than 16/32/64/128, or with ``WEIGHTSPACE_NATIVE=0``,
`available` is False and callers use the compiled PyTorch step.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

_SOURCE = Path(__file__).with_name("siren_kernel.c")
_FLAGS = ["-O3", "-march=native", "-std=gnu11", "-shared", "-fPIC"]
_OPENMP = "-fopenmp"  # tried first; a compiler without OpenMP builds a one-thread kernel
WIDTHS = (16, 32, 64, 128)
MAX_LAYERS, MAX_DIMS = 16, 8

_lock = threading.Lock()
_lib: ctypes.CDLL | None | bool = None  # False once building or loading has failed


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def _build(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(b"\0".join([_SOURCE.read_bytes(), " ".join([*_FLAGS, _OPENMP]).encode(), version.encode(),
                                     _cpu_flags().encode(), platform.machine().encode()])).hexdigest()[:20]
    cache = Path(os.environ.get("WEIGHTSPACE_CACHE_DIR", Path.home() / ".cache" / "weightspace")) / "native"
    target = cache / f"siren_kernel-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # build beside the target and rename: concurrent processes (Ray workers) never load a half-written file
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        for extra in ([_OPENMP], []):
            done = subprocess.run([cc, *_FLAGS, *extra, "-o", tmp, str(_SOURCE), "-lm"], capture_output=True, text=True,
                                  check=False)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{cc} failed: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _library() -> ctypes.CDLL | None:
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                try:
                    cc = _compiler()
                    if cc is None:
                        raise RuntimeError("no C compiler found ($CC, cc, gcc, clang)")
                    lib = ctypes.CDLL(str(_build(cc)))
                    lib.siren_mse_grad.restype = ctypes.c_int
                    lib.siren_mse_grad.argtypes = [ctypes.c_int] * 8 + [ctypes.c_void_p] * 10
                    lib.siren_has_openmp.restype = ctypes.c_int
                    _lib = lib
                except Exception as e:  # noqa: BLE001 -- stay correct, only slower
                    warnings.warn(f"the native SIREN kernel is unavailable ({type(e).__name__}: {e}); "
                                  "using the compiled PyTorch step", stacklevel=3)
                    _lib = False
    return _lib or None


def supported(coords: Tensor, widths: list[int], n_hidden: int) -> bool:
    """Whether the native step applies: CPU float32, one hidden width among `WIDTHS`, at most
    16 sine layers and 8 input dimensions, and not switched off by ``WEIGHTSPACE_NATIVE=0``."""
    return (
        os.environ.get("WEIGHTSPACE_NATIVE", "1") != "0"
        and coords.device.type == "cpu" and coords.dtype == torch.float32
        and len(set(widths)) == 1 and widths[0] in WIDTHS
        and 1 <= n_hidden <= MAX_LAYERS and 1 <= coords.shape[1] <= MAX_DIMS
    )


def available() -> bool:
    """Whether the kernel is built and loaded (building it on the first call)."""
    return _library() is not None


def mse_and_grads(coords: Tensor, axes: tuple[Tensor, ...] | None, y: Tensor, ws: list[Tensor], bs: list[Tensor],
                  omegas: tuple[float, ...]) -> tuple[Tensor, list[Tensor]]:
    """Per-network MSE ``[n]`` and ``[dW_1, db_1, ..., dW_L, db_L]`` of its sum (the arithmetic of
    `weightspace.zoo.siren_grad._loss_and_grads`).

    coords ``[P, d]``; axes: the grid's axis values when coords is their row-major product
    (`siren_grad.grid_axes`), else None; y ``[n, P, c]``; ``ws[i] [n, out, in]``, ``bs[i] [n, out]``;
    all float32 on the CPU. Call only where `supported` and `available` hold.
    """
    lib = _library()
    if lib is None:
        raise RuntimeError("the native SIREN kernel is unavailable")
    n, p, c = y.shape
    width, n_hidden, d = ws[0].shape[1], len(ws) - 1, coords.shape[1]
    ws = [w.detach().contiguous() for w in ws]
    bs = [b.detach().contiguous() for b in bs]
    coords, y = coords.contiguous(), y.detach().contiguous()
    gws, gbs = [torch.empty_like(w) for w in ws], [torch.empty_like(b) for b in bs]
    mse = torch.empty(n, dtype=torch.float32)
    if axes is not None:
        sizes = torch.tensor([len(a) for a in axes], dtype=torch.int32)
        flat = torch.cat(axes).contiguous()
        sizes_p, axes_p = sizes.data_ptr(), flat.data_ptr()
    else:
        sizes_p = axes_p = None
    arr = ctypes.c_void_p * (n_hidden + 1)
    tables = [arr(*(x.data_ptr() for x in t)) for t in (ws, bs, gws, gbs)]  # pointer arrays, alive until the calls return
    w_p, b_p, gw_p, gb_p = map(ctypes.addressof, tables)
    om = torch.tensor(omegas, dtype=torch.float32)

    # one OpenMP thread per share of the networks, from the pool PyTorch's own CPU ops use (Python
    # threads here were slower: after each PyTorch op its idle OpenMP workers spin for a while,
    # competing with them for the cores: 13k vs 21k INR-steps/s in an ad-hoc A/B of whole fits on 2
    # cores, Python threads vs the same threads with PyTorch's own ops on one thread)
    code = lib.siren_mse_grad(width, torch.get_num_threads(), 0, n, n_hidden, d, c, p, coords.data_ptr(), sizes_p, axes_p,
                              w_p, b_p, om.data_ptr(), y.data_ptr(), gw_p, gb_p, mse.data_ptr())
    if code:
        raise RuntimeError(f"the native SIREN kernel refused its arguments (code {code})")
    grads = [g for pair in zip(gws, gbs) for g in pair]
    return mse, grads


__all__ = ["WIDTHS", "available", "mse_and_grads", "supported"]
