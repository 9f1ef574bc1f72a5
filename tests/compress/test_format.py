"""The container: round trip, every documented check, and the docs' table against the bytes."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from weightspace.compress.format import MAX_HEADER_BYTES, METHODS, CodecError, pack, unpack

DOC = Path(__file__).resolve().parents[2] / "docs" / "format-coin.md"


def _file(payload: bytes = b"\x01\x02\x03", method: str = "coin") -> bytes:
    return pack(method, {"kind": "image", "shape": [2, 2, 1], "meta": {}}, payload)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_round_trip() -> None:
    for method in ("coin", "coin++"):
        m, h, p = unpack(_file(b"abc" * 50, method))
        assert (m, h, p) == (method, {"kind": "image", "shape": [2, 2, 1], "meta": {}}, b"abc" * 50)


def test_documented_layout_matches_the_bytes() -> None:
    text = DOC.read_text()
    rows = re.findall(r"^\| (\d+[+HL]*) \| (\w+) \| ([^|]+) \| ([^|]+) \|$", text, flags=re.MULTILINE)
    fields = {name.strip(): (off, size, val.strip()) for off, size, name, val in rows}
    data = _file(b"payload!", "coin++")
    head = json.dumps({"kind": "image", "shape": [2, 2, 1], "meta": {}}, separators=(",", ":"), sort_keys=True).encode()
    h, n = len(head), len(b"payload!")

    def at(expr: str) -> int:
        return eval(expr, {}, {"H": h, "L": n})  # offsets like "12+H" from the table

    magic = bytes.fromhex(re.search(r"`([0-9a-f ]+)`", fields["magic"][2]).group(1))
    assert data[at(fields["magic"][0]) : 4] == magic
    assert data[at(fields["format version"][0])] == int(fields["format version"][2].strip("`"))
    assert data[at(fields["method"][0])] == 2 and "`2` = COIN++" in fields["method"][2]
    documented = dict(re.findall(r"`(\d)` = ([^,]+)", fields["method"][2]))
    assert set(documented) == {str(k) for k in METHODS}  # every method id the reader knows, and no other
    assert struct.unpack_from("<H", data, at(fields["reserved"][0]))[0] == 0
    assert struct.unpack_from("<I", data, at(fields["header length `H`"][0]))[0] == h
    assert data[at(fields["header"][0]) : at(fields["header"][0]) + h] == head
    assert struct.unpack_from("<I", data, at(fields["payload length `L`"][0]))[0] == n
    assert data[at(fields["payload"][0]) : at(fields["payload"][0]) + n] == b"payload!"
    crc_at = at(fields["checksum"][0])
    assert struct.unpack_from("<I", data, crc_at)[0] == zlib.crc32(data[:crc_at]) and len(data) == 20 + h + n
    assert f"H <= {MAX_HEADER_BYTES}" in fields["header length `H`"][2]


def test_every_truncation_and_every_flipped_byte_is_rejected() -> None:
    data = _file()
    for k in range(len(data)):
        with pytest.raises(CodecError):
            unpack(data[:k])
    for k in range(len(data)):
        bad = bytearray(data)
        bad[k] ^= 0x40
        with pytest.raises(CodecError):
            unpack(bytes(bad))
    with pytest.raises(CodecError, match="trailing"):
        unpack(data + b"\x00")


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda b: b"PNG\x00" + b[4:], "magic"),
        (lambda b: b[:4] + b"\x02" + b[5:], "version"),
        (lambda b: b[:5] + b"\x09" + b[6:], "method"),
        (lambda b: b[:6] + b"\x01\x00" + b[8:], "reserved"),
        (lambda b: b[:8] + struct.pack("<I", 10**9) + b[12:], "header length"),
        (lambda b: b[:8] + struct.pack("<I", 4000) + b[12:], "header length"),
    ],
)
def test_clear_errors_even_with_a_valid_checksum(mutate, message) -> None:
    body = _file()[:-4]
    with pytest.raises(CodecError, match=message):
        unpack(_recrc(mutate(body)))


def test_payload_length_beyond_bound_or_file_is_refused_without_allocating() -> None:
    body = bytearray(_file()[:-4])
    h = struct.unpack_from("<I", body, 8)[0]
    for claimed, message in [(2**31, "exceeds the bound"), (2**20, "truncated")]:
        struct.pack_into("<I", body, 12 + h, claimed)
        with pytest.raises(CodecError, match=message):
            unpack(_recrc(bytes(body)))


@pytest.mark.parametrize("header,message", [(b"[1,2]", "not a JSON object"), (b"{bad", "JSON"),
                                            (b'{"a":NaN}', "JSON"), (b"\xff\xfe", "UTF-8")])
def test_bad_headers(header, message) -> None:
    body = b"WSC\x00\x01\x01\x00\x00" + struct.pack("<I", len(header)) + header + struct.pack("<I", 0)
    with pytest.raises(CodecError, match=message):
        unpack(_recrc(body))


def test_writer_refuses_oversized_parts() -> None:
    with pytest.raises(ValueError, match="header"):
        pack("coin", {"x": "a" * 5000}, b"")
    with pytest.raises(ValueError, match="unknown method"):
        pack("jpeg", {}, b"")
