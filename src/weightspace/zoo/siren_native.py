"""The SIREN loss-and-gradient step as native code: `siren_kernel.c`, compiled on first use.

Why: a SIREN's points are independent until the loss sums them, so the whole forward and
backward pass can run tile by tile (16 points) with the tile's activations in L1, one network
per thread; the compiled PyTorch step (`weightspace.zoo.siren_grad`) instead streams
``[n, P, width]`` tensors through L3/DRAM between its fused loops and library matmuls. The
measured difference is in BENCHMARKS.md (fit_inrs).

The C file is compiled once per machine with the system's C compiler (``$CC``, else ``cc``)
at ``-O3 -march=native`` into ``$WEIGHTSPACE_CACHE_DIR/native`` (default
``~/.cache/weightspace/native``), under a name that hashes the source, the flags, the
compiler's version and the CPU's feature flags, so a shared home directory on unlike machines
gets one build per kind of CPU.

Loading a shared library runs its code, and that name is public (anyone can compute it), so
the cache is trusted only as far as its permissions say (`_untrusted`): missing directories are
created with mode 0700; a cached library is loaded only if both the ``native`` directory and
the file are owned by this user and writable by neither group nor others, and the file is a
regular file (not a symlink). The checks are made on open descriptors and the library is
loaded through ``/proc/self/fd`` where it exists, so what was checked is what runs. An
untrusted directory is not used at all: the kernel is built into a private temporary
directory (mode 0700, removed once loaded); an untrusted file in a trusted directory is
rebuilt over it. Either way a one-line warning says why. Builds are written atomically
(a temporary file beside the target, then a rename), so concurrent processes (Ray workers)
never load a half-written file. The library is then
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
import stat
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


def _cache_dir() -> Path:
    """Where built kernels are kept: ``$WEIGHTSPACE_CACHE_DIR/native``."""
    return Path(os.environ.get("WEIGHTSPACE_CACHE_DIR", Path.home() / ".cache" / "weightspace")) / "native"


def _library_name(cc: str) -> str:
    """The cached library's file name: a hash of everything the build depends on (all public)."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(b"\0".join([_SOURCE.read_bytes(), " ".join([*_FLAGS, _OPENMP]).encode(), version.encode(),
                                     _cpu_flags().encode(), platform.machine().encode()])).hexdigest()[:20]
    return f"siren_kernel-{key}.so"


def _compile(cc: str, out: str) -> None:
    """Compile the kernel into the file ``out`` (with OpenMP if the compiler has it)."""
    for extra in ([_OPENMP], []):
        done = subprocess.run([cc, *_FLAGS, *extra, "-o", out, str(_SOURCE), "-lm"], capture_output=True, text=True,
                              check=False)
        if done.returncode == 0:
            return
    raise RuntimeError(f"{cc} failed: {done.stderr.strip()[-2000:]}")


def _untrusted(st: os.stat_result, what: str) -> str | None:
    """Why a file or directory with status ``st`` must not be trusted with code, or None.

    Trusted: owned by this (effective) user and writable by neither group nor others; anyone
    else who can write it can replace the library with their own. Platforms without POSIX
    owners (no ``os.geteuid``) trust everything, as before.
    """
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    if uid is None:
        return None
    if st.st_uid != uid:
        return f"{what} is owned by uid {st.st_uid}, not by this user (uid {uid})"
    if st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002)) if st.st_mode & bit)
        return f"{what} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700; existing ones are left as they are."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # a concurrent process made it first: checked like any other
            pass


_held_fds: list[int] = []  # descriptors of libraries loaded through /proc/self/fd, open for good


def _dlopen(fd: int, path: Path) -> ctypes.CDLL:
    """Load the library open at ``fd``: through /proc/self/fd, the very file checked, where Linux has it.

    The loader remembers a library by the name it was opened with and hands the same handle
    back for that name, so the descriptor behind the name is duplicated and never closed: its
    number, and with it the name, can then never come to mean another file.
    """
    if not os.path.isdir("/proc/self/fd"):
        return ctypes.CDLL(str(path))
    held = os.dup(fd)
    try:
        lib = ctypes.CDLL(f"/proc/self/fd/{held}")
    except BaseException:
        os.close(held)
        raise
    _held_fds.append(held)
    return lib


def _build_into(cc: str, directory: Path, name: str) -> ctypes.CDLL:
    """Build beside ``directory / name`` then rename onto it (atomic); load the bytes just built."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)  # the compiler writes the file by name
    try:
        _compile(cc, tmp)
        os.chmod(tmp, 0o755)  # not the umask's choice: a group-writable build would be refused next time
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.replace(tmp, directory / name)
            return _dlopen(fd, directory / name)
        finally:
            os.close(fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(cc: str) -> ctypes.CDLL:
    """Load the cached kernel if the cache may be trusted, else build it again (see the module doc)."""
    name, cache = _library_name(cc), _cache_dir()
    _make_private_dirs(cache)
    dir_fd = os.open(cache, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        why = _untrusted(os.fstat(dir_fd), f"cache directory {cache}")
        if why is not None:
            warnings.warn(f"not using the native-kernel cache: {why}; building in a private temporary directory",
                          stacklevel=4)
            private = tempfile.mkdtemp(prefix="weightspace-native-")  # mode 0700, this user's
            try:
                return _build_into(cc, Path(private), name)
            finally:
                shutil.rmtree(private, ignore_errors=True)  # loaded already: the mapping outlives the file
        try:  # O_NOFOLLOW: a symlink fails here (ELOOP) instead of leading elsewhere
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=dir_fd)
        except FileNotFoundError:
            return _build_into(cc, cache, name)
        except OSError as e:
            why = f"cached library {cache / name} cannot be opened safely ({e.strerror})"
        else:
            try:
                st = os.fstat(fd)
                why = _untrusted(st, f"cached library {cache / name}")
                if why is None and not stat.S_ISREG(st.st_mode):
                    why = f"cached library {cache / name} is not a regular file"
                if why is None:
                    return _dlopen(fd, cache / name)
            finally:
                os.close(fd)
        warnings.warn(f"not loading the cached native kernel: {why}; rebuilding it", stacklevel=4)
        return _build_into(cc, cache, name)
    finally:
        os.close(dir_fd)


def _library() -> ctypes.CDLL | None:
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                try:
                    cc = _compiler()
                    if cc is None:
                        raise RuntimeError("no C compiler found ($CC, cc, gcc, clang)")
                    lib = _load(cc)
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
