"""Checking one zoo shard: its safetensors header, its metadata, its content hash, its values.

What `ZooWriter` records per shard, in the shard's own metadata and again in zoo.json's
``shards`` list: its index (``shard``), its id range (``ids``: ``[first, stop)``, first =
index * shard_size) and ``sha256``, a hash of the shard's *content*: its metadata (except
the hash) and each tensor's name, dtype, shape and bytes, in name order. Why content and
not the file's bytes: a file cannot hold a hash of its own bytes, and a shard must carry
its hash itself, since one renamed into place just before a crash (before the table and
zoo.json list it) is verified from its own header on resume. The rest of the header
(offsets, padding) is checked structurally instead: the tensors must tile the data
exactly. zoo.json's copy of the hash catches a shard replaced by another self-consistent
one; the table is covered by comparing it with the shards' own (hashed) rows.

`weightspace.zoo.verify` runs these checks over a whole zoo; `ZooWriter` runs them on
resume (`recover_shards`) so that a damaged shard is written again, not counted as done.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightspace.core.spec import NetworkSpec
from weightspace.zoo.store import (
    _DTYPES,
    _MAX_HEADER,
    FORMAT_NAME,
    ZooError,
    ZooWarning,
    _read_table,
    shard_name,
)

_CHUNK = 8 << 20  # bytes read (and hashed) at a time; a multiple of 4, so F32 values never straddle two


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """Parse and validate a safetensors header: (entries, data start offset).

    Every length and offset is checked against the file size before anything is mapped,
    and the tensors must tile the data exactly, as the format requires: two tensors that
    share bytes, or bytes that belong to none, mean a damaged header.
    """
    if path.is_dir():
        raise ZooError(path, "is a directory, not a safetensors file")
    size = path.stat().st_size
    if size < 8:
        raise ZooError(path, f"truncated: {size} bytes, too short for a safetensors header")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(_MAX_HEADER, size - 8):
            raise ZooError(path, f"not a safetensors file or truncated: header claims {n} bytes, file has {size}")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise ZooError(path, f"damaged safetensors header ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(header, dict):
        raise ZooError(path, "damaged safetensors header (not a JSON object)")
    start, spans = 8 + n, []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ZooError(path, "damaged safetensors header (metadata is not a map of strings)")
            continue
        try:
            itemsize = np.dtype(_DTYPES[entry["dtype"]]).itemsize
            begin, stop = entry["data_offsets"]
            if not all(type(v) is int and v >= 0 for v in (begin, stop, *entry["shape"])):
                raise TypeError
            count = int(np.prod(entry["shape"], dtype=np.int64))
        except (KeyError, TypeError, ValueError):
            raise ZooError(path, f"damaged header entry {name!r}: {str(entry)[:200]}") from None
        if stop - begin != count * itemsize:
            raise ZooError(path, f"tensor {name!r}: offsets {begin}..{stop} do not match shape {entry['shape']}")
        spans.append((begin, stop, name))
    end, last = 0, None
    for begin, stop, name in sorted(spans):
        if begin < end:
            raise ZooError(path, f"damaged header: tensors {last!r} and {name!r} overlap (bytes {begin}..{end})")
        if begin > end:
            raise ZooError(path, f"damaged header: data bytes {end}..{begin} belong to no tensor")
        end, last = stop, name
    if start + end != size:
        raise ZooError(path, f"truncated or padded: data should end at byte {start + end}, file has {size} bytes")
    return header, start


@dataclass
class ShardInfo:
    """A shard that passed the structural checks (`check_shard`)."""

    index: int
    path: Path
    header: dict[str, Any]  # safetensors header: name -> {dtype, shape, data_offsets}; "__metadata__"
    start: int  # byte offset of the tensor data
    rows: list[dict[str, Any]]  # the shard's own copy of its n table rows
    first_id: int  # its networks are ids first_id .. first_id + n - 1
    sha256: str | None  # content hash recorded when written; None: written before they were

    def entry(self) -> dict[str, Any]:
        """Its item of zoo.json's ``shards`` list."""
        return {"index": self.index, "ids": [self.first_id, self.first_id + len(self.rows)], "sha256": self.sha256}


def spec_tensors(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    """Tensor name -> per-network shape, as `ZooWriter` stores a network of ``spec``."""
    out = {}
    for i, layer in enumerate(spec.layers):
        out[f"layers.{i}.weight"] = tuple(layer.weight_shape)
        if layer.bias:
            out[f"layers.{i}.bias"] = (layer.out_features,)
    return out


def _loads(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


def check_shard(file: Path, index: int, spec: NetworkSpec, shard_size: int,
                entry: Mapping[str, Any] | None) -> ShardInfo:
    """The structural checks of shard ``index`` (header; its own index, id range and rows;
    the spec's tensors, F32, ``[n, *shape]``; zoo.json's ``entry`` for it, if any). Reads
    the header only; raises `ZooError` naming the first problem."""
    if not file.exists():
        raise ZooError(file, "shard file is missing")
    header, start = read_safetensors_header(file)
    meta = header.setdefault("__metadata__", {})
    if meta.get("format") != FORMAT_NAME:
        raise ZooError(file, "not a weightspace zoo shard (no 'format' metadata)")
    if meta.get("shard") != str(index):
        raise ZooError(file, f"is shard {meta.get('shard')} by its own metadata, not shard {index}: "
                             "shard files exchanged, renamed or copied from another zoo")
    rows = _loads(meta.get("rows"))
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ZooError(file, "damaged 'rows' metadata (not a JSON list of rows)")
    n, first = len(rows), index * shard_size
    if not 0 < n <= shard_size:
        raise ZooError(file, f"holds {n} networks; a shard of this zoo holds 1..{shard_size}")
    if "ids" in meta and _loads(meta["ids"]) != [first, first + n]:
        raise ZooError(file, f"records ids {meta['ids']}, but shard {index} of {n} networks "
                             f"holds [{first}, {first + n}]")
    expected, names = spec_tensors(spec), set(header) - {"__metadata__"}
    for name in sorted(set(expected) - names):
        raise ZooError(file, f"missing tensor {name!r}")
    for name in sorted(names - set(expected)):
        raise ZooError(file, f"unexpected tensor {name!r}: not a parameter of the zoo's spec")
    for name, shape in expected.items():
        got = header[name]
        if got["dtype"] != "F32":
            raise ZooError(file, f"tensor {name!r} is {got['dtype']}, the zoo stores F32")
        if tuple(got["shape"]) != (n, *shape):
            raise ZooError(file, f"tensor {name!r} has shape {got['shape']}, expected {[n, *shape]} ({n} networks)")
    recorded = meta.get("sha256")
    if entry is not None:
        if entry.get("ids") != [first, first + n]:
            raise ZooError(file, f"holds ids [{first}, {first + n}], zoo.json records {entry.get('ids')}")
        if recorded and entry.get("sha256") and entry["sha256"] != recorded:
            raise ZooError(file, "its content hash is not the one zoo.json records: replaced by another shard file")
        recorded = recorded or entry.get("sha256")
    return ShardInfo(index, file, header, start, rows, first, recorded)


# ---------------------------------------------------------------------- content hash and values
def _digest_start(meta: Mapping[str, str]) -> Any:
    h = hashlib.sha256(b"weightspace-zoo-shard\0")
    h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    return h


def _tensor_prefix(name: str, dtype: str, shape: list[int] | tuple[int, ...]) -> bytes:
    return b"\0" + json.dumps([name, dtype, [int(d) for d in shape]]).encode() + b"\0"


def shard_digest(meta: Mapping[str, str], arrays: Mapping[str, np.ndarray]) -> str:
    """The content hash of a shard about to be written: ``arrays`` its F32 tensors,
    ``meta`` its metadata. Equals what `check_shard_data` recomputes from the file."""
    h = _digest_start(meta)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name], dtype="<f4")
        h.update(_tensor_prefix(name, "F32", a.shape))
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def check_shard_data(info: ShardInfo, *, hashes: bool = True, values: bool = True) -> str | None:
    """One pass over a structurally sound shard's tensor bytes: the content hash against
    the recorded one (if ``hashes``) and every value finite (if ``values``). Returns the
    problem, or None."""
    # no recorded hash (a zoo written before they were): nothing to compare a hash with, so none is computed
    h = _digest_start(info.header["__metadata__"]) if hashes and info.sha256 is not None else None
    if h is None and not values:
        return None
    first_bad, bad_count = None, 0
    buf = memoryview(bytearray(_CHUNK))
    try:
        with open(info.path, "rb") as f:
            for name in sorted(k for k in info.header if k != "__metadata__"):
                entry = info.header[name]
                begin, stop = entry["data_offsets"]
                per_row = int(np.prod(entry["shape"][1:], dtype=np.int64)) or 1
                if h is not None:
                    h.update(_tensor_prefix(name, entry["dtype"], entry["shape"]))
                f.seek(info.start + begin)
                done = 0
                while done < stop - begin:
                    k = f.readinto(buf[: min(_CHUNK, stop - begin - done)])
                    if not k:
                        return f"truncated while reading tensor {name!r}"
                    if h is not None:
                        h.update(buf[:k])
                    if values:  # check_shard made every tensor F32
                        x = np.frombuffer(buf[:k], dtype="<f4")
                        finite = np.isfinite(x)
                        if not finite.all():
                            bad = np.flatnonzero(~finite)
                            bad_count += len(bad)
                            if first_bad is None:
                                kind = "NaN" if np.isnan(x[bad[0]]) else "inf"
                                first_bad = (name, kind, (done // 4 + int(bad[0])) // per_row)
                    done += k
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    changed = None
    if h is not None and info.sha256 is not None and h.hexdigest() != info.sha256:
        changed = (f"content hash mismatch: the shard changed after it was written "
                   f"(sha256 {h.hexdigest()[:12]}…, recorded {info.sha256[:12]}…)")
    if first_bad is None:
        return changed
    name, kind, row = first_bad
    where = (f"tensor {name!r} holds {bad_count} NaN/inf value{'s' * (bad_count > 1)}, the first {kind} "
             f"at row {row} (id {info.first_id + row})")
    return f"{changed}; {where}" if changed else f"{where}; allow_nonfinite=True (--allow-nonfinite) reads it anyway"


# ---------------------------------------------------------------------- the shard directory
def read_manifest(meta: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """zoo.json's ``shards`` list as index -> entry ({} for zoos written before it was
    recorded); raises `ZooError` when it is malformed."""
    entries = meta.get("shards", [])
    ok = isinstance(entries, list) and all(
        isinstance(e, dict) and type(e.get("index")) is int and isinstance(e.get("ids"), list)
        and isinstance(e.get("sha256"), str | None) for e in entries
    )
    if not ok:
        raise ZooError("zoo.json", "damaged 'shards' list")
    return {e["index"]: e for e in entries}


def shard_files(directory: Path) -> tuple[dict[int, Path], list[tuple[Path, str]]]:
    """The shard files in ``directory`` (index -> path; directories included, so that one
    in a shard's place is reported) and the stray ``*.safetensors`` names with why."""
    found, strays = {}, []
    if not directory.is_dir():
        return found, strays
    for file in sorted(directory.iterdir()):
        if not file.name.endswith(".safetensors") or file.name.startswith("."):
            continue
        stem = file.name[: -len(".safetensors")]
        if stem.isdigit() and shard_name(int(stem)) == file.name:
            found[int(stem)] = file
        else:
            strays.append((file, "not a shard file name (NNNNN.safetensors)"))
    return found, strays


def recover_shards(path: Path, spec: NetworkSpec, shard_size: int, meta: Mapping[str, Any]) -> list[ShardInfo]:
    """For a resuming `ZooWriter`: the shards of the zoo at ``path`` that verify in full
    (structure, content hash, values). Each damaged one is moved aside to
    ``NNNNN.safetensors.damaged`` with a `ZooWarning`, so that it is written again; a
    shard listed (in zoo.json or the table) but missing is warned about too."""
    try:
        manifest = read_manifest(meta)
    except ZooError:
        manifest = {}  # the writer rebuilds it from the shards themselves
    try:
        listed = set(manifest) | {int(s) for s in _read_table(path).get("shard", [])}
    except (ZooError, ValueError, TypeError):
        listed = set(manifest)
    files, good = shard_files(path / "shards")[0], []
    for index in sorted(listed - set(files)):
        warnings.warn(f"{path / 'shards' / shard_name(index)}: listed but missing; its networks will be written again",
                      ZooWarning, stacklevel=4)
    for index, file in files.items():
        try:
            info = check_shard(file, index, spec, shard_size, manifest.get(index))
            problem = check_shard_data(info)
        except ZooError as e:
            problem = e.problem
        if problem:
            aside = _set_aside(file)
            warnings.warn(f"{file}: {problem}; moved to {aside.name}, its networks will be written again",
                          ZooWarning, stacklevel=4)
        else:
            good.append(info)
    return good


def _set_aside(file: Path) -> Path:
    """Rename a damaged shard to NNNNN.safetensors.damaged[K]: readers skip it, people can look."""
    for k in itertools.count():
        aside = file.with_name(f"{file.name}.damaged{k or ''}")
        if not aside.exists():
            os.replace(file, aside)
            return aside
    raise AssertionError("unreachable: itertools.count() never ends")
