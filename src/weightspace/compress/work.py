"""How much work decoding a file may ask for: multiply-adds, bounded by the file's size.

A `.wsc` file is small and its decoder is a network evaluated at every output point, so
a header inside the format's bounds can still ask for hours: a 25 KB COIN file describing a
4096x4096 image through a SIREN with hidden widths [256]*4 at 1 bit per weight needs
16.8M points x 197k multiply-adds = 3.3e12 multiply-adds. `codec.decompress` therefore
computes a file's decode work from its header *before* decoding (each method's
``decode_work``) and refuses the file when it exceeds

    limit = max(WORK_FLOOR, WORK_PER_BYTE * file_bytes)      (multiply-adds)

unless the caller passes its own ``max_work``. Units are multiply-adds of the networks'
layers (a ``[n_in] -> [n_out]`` layer at one point costs ``n_in * n_out``; a convolution
``c_in * c_out * 3^d`` per output position; interpolation one per tap); activations, biases
and entropy decoding are left out (each at most a few per multiply-add counted).

The two constants: ``WORK_FLOOR = 2^34`` (1.7e10: any file may ask for that) and
``WORK_PER_BYTE = 2^20`` (1.05e6 per byte of file). Decoding runs at about 3e9
multiply-adds/s on the 2-core development CPU (a 1024x1024 COIN file, float32, 2 threads:
1.31e10 in 4.2 s), so the floor is ~6 s there and each byte buys ~0.3 ms: the crafted file
above is refused at 2.6e10, and a 2 MB file may take ~12 min at most. What passes: a COIN file
spends ``bits`` bits per weight, so its work per byte is ``8 P / bits`` for ``P`` points; every
16-bit COIN file up to 1448x1448 pixels, every 8-bit one up to 1024x1024 (and any file under
the floor). Encoding such an image takes ~3000x its decode work (1000 fitting steps, each a
forward and backward pass), so larger legitimate files are rare. A COIN++ file at ``b`` bits
per point through a base of ``m`` multiply-adds per point needs ``8 m / b`` per byte: 2.2e5
for the default 64-64-64 patch base at 0.3 bpp. Larger files decode with an explicit
``max_work`` (``--max-work`` on the command line).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from weightspace.compress.format import CodecError

WORK_FLOOR = 1 << 34  # multiply-adds any file may ask for
WORK_PER_BYTE = 1 << 20  # multiply-adds allowed per byte of file, where that exceeds the floor


class DecodeWorkError(CodecError):
    """A file whose decoding would take more multiply-adds than allowed (`work_limit` or ``max_work``)."""


def work_limit(file_bytes: int) -> int:
    """The default bound on a file's decode work: ``max(WORK_FLOOR, WORK_PER_BYTE * file_bytes)``."""
    return max(WORK_FLOOR, WORK_PER_BYTE * int(file_bytes))


def mlp_macs(sizes: Sequence[int]) -> int:
    """Multiply-adds of one point through dense layers ``sizes[0] -> sizes[1] -> ...``."""
    return sum(a * b for a, b in pairwise(sizes))


def check_work(need: int, file_bytes: int, max_work: float | None = None, what: str = "") -> None:
    """Raise `DecodeWorkError` if ``need`` multiply-adds exceed ``max_work`` (default: `work_limit`)."""
    if max_work is None:
        limit, source = work_limit(file_bytes), f"the limit for a {file_bytes}-byte file, max(2^34, 2^20 per byte)"
    else:
        if not max_work >= 0:
            raise ValueError(f"max_work must be a non-negative number of multiply-adds, got {max_work!r}")
        limit, source = max_work, "the given max_work"
    if need > limit:
        detail = f" ({what})" if what else ""
        raise DecodeWorkError(
            f"decoding needs {need:.3g} multiply-adds{detail}, over {limit:.3g}, {source}; "
            "pass max_work (--max-work) to decode it anyway"
        )


__all__ = ["WORK_FLOOR", "WORK_PER_BYTE", "DecodeWorkError", "check_work", "mlp_macs", "work_limit"]
