"""What every COIN++ base file shares: a safetensors file whose metadata names its format
and holds a JSON description, and a content id that compressed files name their base by."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor


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


__all__ = ["StoredBase", "content_id", "file_format", "read", "write"]
