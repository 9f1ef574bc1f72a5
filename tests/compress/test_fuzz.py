"""Fuzzing the decoder: random, mutated and re-checksummed files give a signal or a CodecError."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightspace.compress.format import pack
from weightspace.compress.fuzz import decode_or_clean_error, fuzz_bases, seed_corpus, with_crc

BASES = fuzz_bases()
CORPUS = seed_corpus(*BASES)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_seed_corpus_decodes() -> None:
    assert all(decode_or_clean_error(f, *BASES) == "ok" for f in CORPUS)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    decode_or_clean_error(data, *BASES)
    decode_or_clean_error(b"WSC\x00\x01" + data, *BASES)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@FUZZ
@given(mutated(), st.booleans())
def test_mutated_files(data: bytes, fix_crc: bool) -> None:
    decode_or_clean_error(with_crc(data) if fix_crc else data, *BASES)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    st.sampled_from(["coin", "coin++"]),
    st.sampled_from(CORPUS),
    st.dictionaries(st.sampled_from(["kind", "shape", "meta", "hidden", "omega", "bits", "base", "step"]),
                    json_values, max_size=4),
    st.binary(max_size=300),
    st.booleans(),
)
def test_well_formed_containers_with_hostile_headers(method, seed_file, changes, payload, keep_payload) -> None:
    # start from a valid header so single-field changes reach the deepest checks
    h = struct.unpack_from("<I", seed_file, 8)[0]
    header = {**json.loads(seed_file[12 : 12 + h]), **changes}
    if keep_payload:
        payload = seed_file[16 + h : -4]
    try:
        data = pack(method, header, payload)
    except ValueError:  # the writer refuses an oversized header: nothing to decode
        return
    decode_or_clean_error(data, *BASES)


@pytest.mark.parametrize("shape", [[65536, 65536, 1], [2**24 + 1, 1], [4096, 4097, 1]])
def test_huge_claimed_signals_are_refused_before_any_allocation(shape) -> None:
    h = struct.unpack_from("<I", CORPUS[0], 8)[0]
    header = {**json.loads(CORPUS[0][12 : 12 + h]), "shape": shape}
    if len(shape) == 2:
        header["kind"], header["meta"] = "audio", {"sample_rate": 8000}
    assert decode_or_clean_error(pack("coin", header, CORPUS[0][16 + h : -4]), *BASES) == "error"


def test_a_stream_ending_in_a_zero_word_is_a_clean_error() -> None:
    """Found by atheris (benchmarks/fuzz_codec.py): a latent-pyramid file whose payload ends
    in a zero word made the entropy coder's constructor raise a bare ValueError."""
    import base64

    crash = base64.b64decode(
        "V1NDAAEDAABEAAAAeyJiYXNlIjoiMmYzOTk0MTkxNmMyZGM5NiIsImtpbmQiOiJpbWFnZSIsIm1ldGEiOnt9LCJzaGFwZSI6WzIsMSwxXX0"
        "MAAAArJhd4mOBZxYAAAAAAAAAMQ=="
    )
    assert BASES[1].id == "2f39941916c2dc96"  # the base the file names: decoding reaches the coder
    assert decode_or_clean_error(with_crc(crash), *BASES) == "error"
