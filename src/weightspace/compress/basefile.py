"""What both COIN++ layouts share: a base file (safetensors whose metadata names its format
and holds a JSON description), the content id a compressed file names its base by, and the
checks of such a file's header and entropy-coded payload."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from weightspace.compress.format import CodecError
from weightspace.compress.signal import check_layout


def content_id(description: dict[str, Any], tensors: dict[str, Tensor]) -> str:
    """16 hex digits of SHA-256 over the description and every tensor (sorted by name)."""
    h = hashlib.sha256(json.dumps(description, sort_keys=True).encode())
    for k, v in sorted(tensors.items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()[:16]


def write(path: str | Path, fmt: str, description: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": fmt, "base": json.dumps(description)})


class StoredBase:
    """Mixin of a base class with ``describe()`` and ``_tensors()``: its id and its file."""

    FORMAT: ClassVar[str]

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def _tensors(self) -> dict[str, Tensor]:
        raise NotImplementedError

    @property
    def id(self) -> str:
        """16 hex digits of SHA-256 over the description and every tensor: a file names its base by it."""
        return content_id(self.describe(), self._tensors())

    def save(self, path: str | Path) -> None:
        write(path, self.FORMAT, self.describe(), self._tensors())


def file_format(path: str | Path) -> str | None:
    """The ``format`` a base file's metadata names (None if it names none)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except (OSError, SafetensorError) as e:
        raise ValueError(f"{path}: cannot read COIN++ base ({e})") from e


def read(path: str | Path, fmt: str, what: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(description, tensors)`` of a base file of format ``fmt``; ValueError naming ``what``
    was expected for anything else."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != fmt:
                raise ValueError(f"{path}: not a {what} file")
            desc = json.loads(meta["base"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (OSError, KeyError, json.JSONDecodeError, SafetensorError) as e:
        raise ValueError(f"{path}: cannot read COIN++ base ({e})") from e
    if not isinstance(desc, dict):
        raise ValueError(f"{path}: the base description is not a JSON object")  # noqa: TRY004 (a bad file, not a bad argument)
    return desc, tensors


def check_header(header: dict[str, Any], base: Any, cls: type, layout: str) -> tuple[str, tuple[int, ...], dict[str, float]]:
    """``(kind, shape, meta)`` of a COIN++ file's header after checking that ``base`` is the
    ``cls`` base (``layout`` names it in messages) whose id the header names and that it
    codes this kind and channel count; `CodecError` naming the problem otherwise."""
    kind, shape, meta = check_layout(header.get("kind"), header.get("shape"), header.get("meta"))
    base_id = header.get("base")
    if not isinstance(base_id, str) or len(base_id) != 16:
        raise CodecError(f"COIN++ header: base must be a 16-hex-digit id, got {base_id!r}")
    if base is None:
        raise CodecError(f"this COIN++ file needs its base network (id {base_id}); pass --base")
    if not isinstance(base, cls):
        raise CodecError(f"this COIN++ file was made with a {layout} base (id {base_id}), not with the given kind of base")
    if base.id != base_id:
        raise CodecError(f"this COIN++ file was made with base {base_id}, not with the given base {base.id}")
    if kind != base.kind or shape[-1] != base.channels:
        raise CodecError(f"COIN++ header: a {kind} with {shape[-1]} channels does not fit the base")
    return kind, shape, meta


def coded_words(payload: bytes) -> np.ndarray:
    """The 32-bit little-endian words of an ANS payload (`CodecError` if it is not a whole, non-empty number)."""
    if len(payload) % 4 or not payload:
        raise CodecError("COIN++ payload must be a non-empty sequence of 32-bit words")
    return np.frombuffer(payload, dtype="<u4").astype(np.uint32)


@contextmanager
def stream_errors() -> Iterator[None]:
    """Turn what the entropy coder raises on a bad stream (its constructor included, e.g. for a
    last word of zero) into `CodecError`."""
    try:
        yield
    except CodecError:
        raise
    except (ValueError, RuntimeError, AssertionError) as e:
        raise CodecError(f"COIN++ payload is not a valid entropy-coded stream ({e})") from None


def check_empty(coder: Any) -> None:
    if not coder.is_empty():
        raise CodecError("COIN++ payload holds more data than its latents")


__all__ = ["StoredBase", "check_empty", "check_header", "coded_words", "content_id", "file_format", "read", "stream_errors", "write"]
