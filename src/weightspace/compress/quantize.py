"""Uniform quantisation of weight tensors, bit packing, and the straight-through estimator.

A tensor is stored as ``bits``-bit integer codes ``q`` in ``[0, 2^bits - 1]`` with a
float32 offset ``lo`` (its minimum) and float32 ``step = (max - min) / (2^bits - 1)``;
``dequantize(q) = lo + q * step`` in float32, computed the same way by encoder and decoder
so the encoder measures exactly what the decoder will render.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MAX_BITS = 16


def check_bits(bits: int) -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in [1, {MAX_BITS}], got {bits!r}")
    return bits


def quantize(x: Tensor, bits: int) -> tuple[Tensor, float, float]:
    """``(codes int64 like x, lo, step)``; lo and step are float32-representable."""
    check_bits(bits)
    x = x.detach()
    lo = float(np.float32(x.min()))
    hi = float(x.max())
    step = float(np.float32((hi - lo) / (2**bits - 1))) if hi > lo else 1.0
    if step == 0.0:  # a range below float32 resolution
        step = 1.0
    q = torch.round((x.float() - lo) / step).clamp_(0, 2**bits - 1).to(torch.int64)
    return q, lo, step


def dequantize(q: Tensor, lo: float, step: float) -> Tensor:
    """Float32 values of codes ``q`` (the decoder's arithmetic)."""
    return torch.tensor(lo, dtype=torch.float32) + q.to(torch.float32) * torch.tensor(step, dtype=torch.float32)


def fake_quantize(x: Tensor, bits: int) -> Tensor:
    """Quantise-dequantise in the forward pass, identity in the backward pass (straight-through)."""
    q, lo, step = quantize(x, bits)  # the range is a constant of the backward pass
    return x + (dequantize(q, lo, step).to(x.dtype) - x).detach()


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Non-negative integers ``< 2^bits`` -> ``ceil(n * bits / 8)`` bytes, little-endian bit order."""
    check_bits(bits)
    c = np.asarray(codes, dtype=np.uint32).reshape(-1)
    if c.size and int(c.max()) >= 2**bits:
        raise ValueError(f"a code does not fit in {bits} bits")
    b = ((c[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(b.reshape(-1), bitorder="little").tobytes()


def packed_size(count: int, bits: int) -> int:
    return -(-count * bits // 8)


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_bits`; ``data`` must hold exactly ``packed_size(count, bits)`` bytes
    (checked before anything is allocated)."""
    check_bits(bits)
    if len(data) != packed_size(count, bits):
        raise ValueError(f"{len(data)} bytes cannot hold exactly {count} codes of {bits} bits")
    b = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: count * bits]
    return (b.reshape(count, bits).astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)


__all__ = ["MAX_BITS", "check_bits", "dequantize", "fake_quantize", "pack_bits", "packed_size", "quantize", "unpack_bits"]
