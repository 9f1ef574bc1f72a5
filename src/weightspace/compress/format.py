"""The ``.wsc`` container: magic, version, method, bounded JSON header, payload, CRC-32.

Layout (all integers little-endian; documented byte by byte in ``docs/format-coin.md``)::

    offset   size  field
    0        4     magic b"WSC\\x00"
    4        1     format version (FORMAT_VERSION = 1)
    5        1     method: 1 = COIN, 2 = COIN++ (patch modulations), 3 = COIN++ (latent pyramid),
                   4 = overfit (per-image latent pyramid, `compress.overfit`)
    6        2     reserved, zero
    8        4     header length H, 2 <= H <= MAX_HEADER_BYTES
    12       H     header: a UTF-8 JSON object (what the method needs to decode)
    12+H     4     payload length L, L <= MAX_PAYLOAD_BYTES
    16+H     L     payload (method-specific bytes)
    16+H+L   4     CRC-32 (zlib.crc32) of every preceding byte

A file is exactly ``20 + H + L`` bytes. `unpack` checks, in this order: minimum size,
magic, version, method, reserved bytes, each length field against its bound *and* against
the bytes actually present (so nothing is ever sized by a length field alone), the total
size, the checksum, then the header's JSON. Every failure is a `CodecError` naming it.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

MAGIC = b"WSC\x00"
FORMAT_VERSION = 1
METHODS: dict[int, str] = {1: "coin", 2: "coin++", 3: "coin++pyramid", 4: "overfit"}
METHOD_IDS: dict[str, int] = {v: k for k, v in METHODS.items()}
MAX_HEADER_BYTES = 4096
MAX_PAYLOAD_BYTES = 1 << 28
_PREFIX = struct.Struct("<4sBBHI")  # magic, version, method, reserved, header length
_U32 = struct.Struct("<I")
OVERHEAD_BYTES = _PREFIX.size + 2 * _U32.size  # 20: everything but header and payload


class CodecError(ValueError):
    """A file the decoder will not read (corrupted, truncated, foreign or inconsistent)."""


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a header")


def pack(method: str, header: dict[str, Any], payload: bytes) -> bytes:
    """Bytes of a container holding ``header`` (JSON-able) and ``payload`` for ``method``."""
    if method not in METHOD_IDS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHOD_IDS)}")
    head = json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"header of {len(head)} bytes exceeds the format's bound of {MAX_HEADER_BYTES}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the format's bound of {MAX_PAYLOAD_BYTES}")
    body = (
        _PREFIX.pack(MAGIC, FORMAT_VERSION, METHOD_IDS[method], 0, len(head))
        + head
        + _U32.pack(len(payload))
        + bytes(payload)
    )
    return body + _U32.pack(zlib.crc32(body))


def unpack(data: bytes) -> tuple[str, dict[str, Any], bytes]:
    """``(method, header, payload)`` of a container; `CodecError` on anything else."""
    data = bytes(data)
    if len(data) < OVERHEAD_BYTES + 2:
        raise CodecError(f"truncated: {len(data)} bytes, a file has at least {OVERHEAD_BYTES + 2}")
    magic, version, method_id, reserved, h = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise CodecError(f"not a weightspace compressed file (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise CodecError(f"format version {version} is not supported (this library reads {FORMAT_VERSION})")
    if method_id not in METHODS:
        raise CodecError(f"unknown method id {method_id}")
    if reserved != 0:
        raise CodecError("reserved bytes are not zero")
    if not 2 <= h <= MAX_HEADER_BYTES:
        raise CodecError(f"header length {h} out of bounds [2, {MAX_HEADER_BYTES}]")
    if _PREFIX.size + h + _U32.size > len(data):
        raise CodecError(f"truncated: header length {h} runs past the end of the file")
    (p,) = _U32.unpack_from(data, _PREFIX.size + h)
    if p > MAX_PAYLOAD_BYTES:
        raise CodecError(f"payload length {p} exceeds the bound {MAX_PAYLOAD_BYTES}")
    end = _PREFIX.size + h + _U32.size + p
    if end + _U32.size != len(data):
        raise CodecError(
            f"file is {len(data)} bytes but its length fields say {end + _U32.size} "
            f"({'truncated' if end + _U32.size > len(data) else 'trailing bytes'})"
        )
    (crc,) = _U32.unpack_from(data, end)
    if zlib.crc32(data[:end]) != crc:
        raise CodecError("checksum mismatch: the file is corrupted")
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + h].decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise CodecError(f"header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise CodecError("header is not a JSON object")
    return METHODS[method_id], header, data[_PREFIX.size + h + _U32.size : end]


__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MAX_PAYLOAD_BYTES",
    "METHODS",
    "OVERHEAD_BYTES",
    "CodecError",
    "pack",
    "unpack",
]
