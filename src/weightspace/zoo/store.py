"""The zoo format: a directory holding a dataset of networks of one spec.

::

    zoo.json                   format, version, NetworkSpec, provenance, shard size, schema
    shards/NNNNN.safetensors   per parameter one tensor stacked over the shard's networks:
                               "layers.{i}.weight" [n, out, in, *kernel], "layers.{i}.bias" [n, out];
                               metadata "rows" holds the shard's table rows as JSON
    table.parquet              one row per network: id, shard, row, split, targets, seeds ...

Network ``id`` is ``shard * shard_size + row``, so a network's id follows from the work
order, not from when it was written. Writing a shard is atomic (temporary file, fsync,
rename); the table is rewritten atomically after each shard. A killed writer therefore
leaves whole shards, and a shard written just before the table is recovered from its
own metadata on resume. Reading memory-maps the shards (no unpickling, no copy until
a batch is gathered).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights

FORMAT_NAME = "weightspace-zoo"
FORMAT_VERSION = 1
RESERVED_COLUMNS = ("id", "shard", "row")
_MAX_HEADER = 64 * 1024 * 1024  # a safetensors header larger than this is not one we wrote
_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}


class ZooError(ValueError):
    """A zoo file is missing, damaged, truncated or not a weightspace zoo."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


# ---------------------------------------------------------------------- low-level I/O
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then fsync and rename over ``path``: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def shard_name(index: int) -> str:
    return f"{index:05d}.safetensors"


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """Parse and validate a safetensors header: (entries, data start offset).

    Every length and offset is checked against the file size before anything is mapped.
    """
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
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooError(path, f"damaged safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ZooError(path, "damaged safetensors header (not a JSON object)")
    start, end = 8 + n, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[entry["dtype"]]
            begin, stop = (int(v) for v in entry["data_offsets"])
            count = int(np.prod(entry["shape"], dtype=np.int64))
        except (KeyError, TypeError, ValueError):
            raise ZooError(path, f"damaged header entry {name!r}: {entry!r}") from None
        if stop - begin != count * np.dtype(dtype).itemsize or begin < 0:
            raise ZooError(path, f"tensor {name!r}: offsets {begin}..{stop} do not match shape {entry['shape']}")
        end = max(end, stop)
    if start + end != size:
        raise ZooError(path, f"truncated or padded: data should end at byte {start + end}, file has {size} bytes")
    return header, start


@dataclass
class _Shard:
    path: Path
    arrays: dict[str, np.memmap]
    rows: list[dict[str, Any]]


def _open_shard(path: Path, spec: NetworkSpec | None = None) -> _Shard:
    if not path.exists():
        raise ZooError(path, "shard file is missing")
    header, start = read_safetensors_header(path)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT_NAME:
        raise ZooError(path, "not a weightspace zoo shard (no 'format' metadata)")
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin = int(entry["data_offsets"][0])
        shape = tuple(entry["shape"])
        arrays[name] = np.memmap(path, dtype=_DTYPES[entry["dtype"]], mode="r", offset=start + begin, shape=shape)
    try:
        rows = json.loads(meta.get("rows", "[]"))
    except json.JSONDecodeError:
        raise ZooError(path, "damaged 'rows' metadata") from None
    if spec is not None:
        for i, layer in enumerate(spec.layers):
            for key, shape in ((f"layers.{i}.weight", layer.weight_shape), (f"layers.{i}.bias", (layer.out_features,))):
                if key == f"layers.{i}.bias" and not layer.bias:
                    continue
                if key not in arrays:
                    raise ZooError(path, f"missing tensor {key!r}")
                if tuple(arrays[key].shape[1:]) != shape or arrays[key].shape[0] != len(rows):
                    raise ZooError(path, f"tensor {key!r} has shape {tuple(arrays[key].shape)}, expected [{len(rows)}, *{shape}]")
    return _Shard(path, arrays, rows)


def _read_zoo_json(path: Path) -> dict[str, Any]:
    file = path / "zoo.json"
    if not file.exists():
        raise ZooError(file, "not a zoo directory (zoo.json is missing)")
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooError(file, f"damaged zoo.json ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ZooError(file, f"not a weightspace zoo (format is {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version", 0) > FORMAT_VERSION:
        raise ZooError(file, f"zoo format version {meta['version']} is newer than this library's {FORMAT_VERSION}")
    try:
        meta["spec"] = NetworkSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise ZooError(file, f"invalid spec ({e})") from None
    return meta


def _write_zoo_json(path: Path, meta: Mapping[str, Any]) -> None:
    data = {**meta, "spec": meta["spec"].to_dict()}
    _atomic_write(path / "zoo.json", lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values("id", kind="stable").reset_index(drop=True)
    _atomic_write(path / "table.parquet", lambda tmp: pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp))


def _read_table(path: Path) -> pd.DataFrame:
    file = path / "table.parquet"
    if not file.exists():
        return pd.DataFrame(columns=list(RESERVED_COLUMNS))
    try:
        return pq.read_table(file).to_pandas()
    except (pa.ArrowInvalid, OSError) as e:
        raise ZooError(file, f"damaged or not a parquet table ({e})") from None


# ---------------------------------------------------------------------- writer
class ZooWriter:
    """Writes a zoo shard by shard; reopening an existing zoo resumes it.

    >>> w = ZooWriter(path, spec, shard_size=256, provenance={"recipe": ...})
    >>> for k in range(num_shards):
    ...     if k not in w.completed_shards():
    ...         w.write_shard(k, weights, {"label": labels, "split": splits})
    >>> zoo = w.finalize()
    """

    def __init__(
        self,
        path: str | os.PathLike,
        spec: NetworkSpec,
        *,
        shard_size: int,
        provenance: Mapping[str, Any] | None = None,
        num_networks: int | None = None,
    ) -> None:
        self.path = Path(path)
        (self.path / "shards").mkdir(parents=True, exist_ok=True)
        self.spec, self.shard_size = spec, int(shard_size)
        if (self.path / "zoo.json").exists():
            meta = _read_zoo_json(self.path)
            if meta["spec"] != spec:
                raise ZooError(self.path / "zoo.json", f"exists with another spec ({meta['spec'].describe()}); not resuming")
            if meta["shard_size"] != self.shard_size:
                raise ZooError(self.path / "zoo.json", f"exists with shard_size {meta['shard_size']}, asked for {shard_size}")
            stored = meta.get("provenance", {})
            differ = sorted(k for k, v in (provenance or {}).items() if k in stored and stored[k] != v and k != "library")
            if differ:
                raise ZooError(
                    self.path / "zoo.json",
                    f"exists with different {', '.join(differ)}; not resuming (use another path or delete it)",
                )
            self.meta = meta
        else:
            self.meta = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "spec": spec,
                "shard_size": self.shard_size,
                "provenance": dict(provenance or {}),
                "num_networks": num_networks,
                "complete": False,
            }
            _write_zoo_json(self.path, self.meta)
        self._rows: dict[int, list[dict[str, Any]]] = {}
        self._recover()

    def _recover(self) -> None:
        for tmp in (self.path / "shards").glob(".*.tmp"):
            tmp.unlink()  # a shard that was being written when the writer died
        table = _read_table(self.path)
        for shard, group in table.groupby("shard"):
            self._rows[int(shard)] = group.drop(columns=list(RESERVED_COLUMNS)).to_dict("records")
        for file in sorted((self.path / "shards").glob("*.safetensors")):
            index = int(file.stem)
            shard = _open_shard(file, self.spec)
            if index not in self._rows:  # written, but the writer died before the table was
                self._rows[index] = shard.rows
        for index in self._rows:
            if not (self.path / "shards" / shard_name(index)).exists():
                raise ZooError(self.path / "shards" / shard_name(index), "listed in table.parquet but missing")
        if table.shape[0] != sum(map(len, self._rows.values())):
            self._flush_table()

    def completed_shards(self) -> set[int]:
        return set(self._rows)

    def write_shard(self, index: int, weights: Weights, columns: Mapping[str, Sequence[Any]]) -> None:
        """Write shard ``index`` with its networks and table columns (one value per network)."""
        if weights.spec != self.spec:
            raise ValueError("weights have a different spec than the zoo")
        if weights.channels != 1:
            raise ValueError(f"a zoo stores raw weights (C = 1), got C = {weights.channels}")
        n = len(weights)
        if not 0 < n <= self.shard_size:
            raise ValueError(f"a shard holds 1..{self.shard_size} networks, got {n}")
        for name, values in columns.items():
            if name in RESERVED_COLUMNS:
                raise ValueError(f"column {name!r} is reserved")
            if len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} values for {n} networks")
        for i, t in enumerate(weights.tensors()):
            if not torch.isfinite(t).all():
                raise ValueError(f"shard {index}: tensor {i} holds NaN or infinite values; nothing written")
        rows = [{name: _plain(values[r]) for name, values in columns.items()} for r in range(n)]
        tensors = {}
        for i, (w, b) in enumerate(zip(weights.weights, weights.biases)):
            tensors[f"layers.{i}.weight"] = w[:, 0].detach().to("cpu", torch.float32).contiguous()
            if b is not None:
                tensors[f"layers.{i}.bias"] = b[:, 0].detach().to("cpu", torch.float32).contiguous()
        meta = {"format": FORMAT_NAME, "shard": str(index), "rows": json.dumps(rows)}
        _atomic_write(self.path / "shards" / shard_name(index), lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        self._rows[index] = rows
        self._flush_table()

    def _flush_table(self) -> None:
        table = []
        for index in sorted(self._rows):
            for r, row in enumerate(self._rows[index]):
                table.append({"id": index * self.shard_size + r, "shard": index, "row": r, **row})
        _write_table(self.path, table)

    def finalize(self, **provenance: Any) -> Zoo:
        self.meta["provenance"].update(provenance)
        self.meta["num_networks"] = sum(map(len, self._rows.values()))
        self.meta["complete"] = True
        _write_zoo_json(self.path, self.meta)
        return Zoo.open(self.path)


def _plain(v: Any) -> Any:
    """JSON- and parquet-friendly scalars."""
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    return v


# ---------------------------------------------------------------------- reader
class Zoo:
    """A zoo opened for reading; shards are memory-mapped.

    ``table`` is a DataFrame with one row per network, in id order; positions into it
    (not ids) index `weights`.
    """

    def __init__(self, path: Path, meta: dict[str, Any], table: pd.DataFrame, shards: dict[int, _Shard]) -> None:
        self.path, self.meta, self.table, self._shards = path, meta, table, shards
        self.spec: NetworkSpec = meta["spec"]
        self._shard_of = table["shard"].to_numpy(np.int64)
        self._row_of = table["row"].to_numpy(np.int64)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Zoo:
        path = Path(path)
        meta = _read_zoo_json(path)
        table = _read_table(path)
        missing = [c for c in RESERVED_COLUMNS if c not in table.columns]
        if missing:
            raise ZooError(path / "table.parquet", f"missing columns {missing}")
        shards = {int(s): _open_shard(path / "shards" / shard_name(int(s)), meta["spec"]) for s in table["shard"].unique()}
        for s, shard in shards.items():
            n = int((table["shard"] == s).sum())
            if len(shard.rows) != n:
                raise ZooError(shard.path, f"holds {len(shard.rows)} networks, table.parquet lists {n}")
        return cls(path, meta, table.reset_index(drop=True), shards)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def provenance(self) -> dict[str, Any]:
        return self.meta.get("provenance", {})

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    def split(self, name: str) -> np.ndarray:
        """Table positions of split ``name`` (train / val / test)."""
        if "split" not in self.table.columns:
            raise KeyError(f"{self.path}: the table has no 'split' column")
        idx = np.flatnonzero(self.table["split"].to_numpy() == name)
        if len(idx) == 0:
            raise KeyError(f"{self.path}: no networks in split {name!r}; splits: {sorted(self.table['split'].unique())}")
        return idx

    def weights(self, positions: Iterable[int] | np.ndarray | None = None) -> Weights:
        """Gather networks at table ``positions`` (all if None) into a `Weights` batch."""
        pos = np.arange(len(self)) if positions is None else np.asarray(positions, dtype=np.int64).reshape(-1)
        if len(pos) and (pos.min() < 0 or pos.max() >= len(self)):
            raise IndexError(f"positions out of range for a zoo of {len(self)} networks")
        shard_of, row_of = self._shard_of[pos], self._row_of[pos]
        ws: list[list[np.ndarray]] = [[] for _ in self.spec.layers]
        bs: list[list[np.ndarray]] = [[] for _ in self.spec.layers]
        order = []
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            order.append(sel)
            rows = row_of[sel]
            arrays = self._shards[int(s)].arrays
            for i, layer in enumerate(self.spec.layers):
                ws[i].append(arrays[f"layers.{i}.weight"][rows])
                if layer.bias:
                    bs[i].append(arrays[f"layers.{i}.bias"][rows])
        # gathered shard by shard; put them back in the order asked for
        inverse = np.empty(len(pos), dtype=np.int64)
        inverse[np.concatenate(order) if order else np.zeros(0, np.int64)] = np.arange(len(pos))

        def stack(parts: list[np.ndarray], shape: tuple[int, ...]) -> torch.Tensor:
            a = np.concatenate(parts) if parts else np.zeros((0, *shape), np.float32)
            return torch.from_numpy(np.ascontiguousarray(a[inverse])).unsqueeze(1)

        return Weights(
            self.spec,
            tuple(stack(ws[i], layer.weight_shape) for i, layer in enumerate(self.spec.layers)),
            tuple(stack(bs[i], (layer.out_features,)) if layer.bias else None for i, layer in enumerate(self.spec.layers)),
        )

    def load(self, split: str | None = None) -> tuple[Weights, pd.DataFrame]:
        """All networks of ``split`` (or of the zoo) and their table rows."""
        pos = np.arange(len(self)) if split is None else self.split(split)
        return self.weights(pos), self.table.iloc[pos].reset_index(drop=True)

    def info(self) -> dict[str, Any]:
        """A summary for people: spec, counts, splits, columns, provenance."""
        splits = self.table["split"].value_counts().to_dict() if "split" in self.table.columns else {}
        return {
            "path": str(self.path),
            "spec": self.spec.describe(),
            "networks": len(self),
            "shards": len(self._shards),
            "complete": self.complete,
            "splits": {str(k): int(v) for k, v in sorted(splits.items())},
            "columns": {c: str(t) for c, t in self.table.dtypes.items()},
            "provenance": self.provenance,
        }


def assign_splits(n: int, fractions: Mapping[str, float], *, seed: int) -> np.ndarray:
    """A seeded split of ``n`` items: array of split names with the given fractions
    (the last split takes the rounding remainder)."""
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {dict(fractions)}")
    perm = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=object)
    start = 0
    names = list(fractions)
    for k, name in enumerate(names):
        stop = n if k == len(names) - 1 else start + round(fractions[name] * n)
        out[perm[start:stop]] = name
        start = stop
    return out.astype(str)
