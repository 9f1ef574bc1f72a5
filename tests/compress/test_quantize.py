"""Quantisation and bit packing: exact round trips, error within half a step, STE gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightspace.compress.quantize import (
    dequantize,
    fake_quantize,
    pack_bits,
    packed_size,
    quantize,
    unpack_bits,
)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 16), n=st.integers(0, 300), seed=st.integers(0, 2**31 - 1))
def test_bit_packing_round_trip(bits: int, n: int, seed: int) -> None:
    codes = np.random.default_rng(seed).integers(0, 2**bits, size=n)
    data = pack_bits(codes, bits)
    assert len(data) == packed_size(n, bits)
    assert np.array_equal(unpack_bits(data, bits, n), codes)


def test_wrong_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="fit"):
        pack_bits(np.array([4]), 2)
    with pytest.raises(ValueError, match="exactly"):
        unpack_bits(b"\x00" * 3, 8, 4)
    with pytest.raises(ValueError, match="bits"):
        quantize(torch.zeros(3), 17)


@pytest.mark.parametrize("bits", [2, 5, 8, 16])
def test_quantisation_error_is_at_most_half_a_step(bits: int, gen) -> None:
    x = torch.randn(1000, generator=gen) * 3
    q, lo, step = quantize(x, bits)
    assert int(q.min()) == 0 and int(q.max()) == 2**bits - 1
    err = (dequantize(q, lo, step) - x).abs().max()
    assert err <= step / 2 * (1 + 1e-3) + 1e-6
    q2, lo2, step2 = quantize(torch.full((4,), 1.5), bits)  # constant tensors survive
    assert torch.equal(dequantize(q2, lo2, step2), torch.full((4,), 1.5))


def test_straight_through_gradient_is_identity(gen) -> None:
    x = torch.randn(50, generator=gen, requires_grad=True)
    y = fake_quantize(x, 3)
    assert len(torch.unique(y.detach())) <= 8
    (y * torch.arange(50.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(50.0))
