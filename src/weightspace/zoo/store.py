"""The zoo format: a directory holding a dataset of networks of one spec.

::

    zoo.json                   format, version, NetworkSpec, provenance, shard size, schema;
                               "shards": per shard its index, ids [first, stop) and sha256
    shards/NNNNN.safetensors   per parameter one F32 tensor stacked over the shard's networks:
                               "layers.{i}.weight" [n, out, in, *kernel], "layers.{i}.bias" [n, out];
                               metadata "rows" holds the shard's table rows as JSON, "shard" its
                               index, "ids" its id range, "sha256" its content hash
    table.parquet              one row per network: id, shard, row, split, targets, seeds ...

Network ``id`` is ``shard * shard_size + row``, so a network's id follows from the work
order, not from when it was written. Writing a shard is atomic (temporary file, fsync,
rename); the table and zoo.json are rewritten atomically after each shard. A killed
writer therefore leaves whole shards, and a shard written just before the table is
recovered from its own metadata on resume. Reading memory-maps the shards (no
unpickling, no copy until a batch is gathered). Opening and resuming verify the zoo
first (`weightspace.zoo.verify`; hashes were added within format version 1: older zoos
open, with a warning that their contents cannot be verified).
"""

from __future__ import annotations

import json
import os
import re
import warnings
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


class ZooWarning(UserWarning):
    """A zoo that opens, but not fully verified (no content hashes), or a resumed writer
    that set a damaged shard aside to write it again."""


# ---------------------------------------------------------------------- low-level I/O
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_shard(tensors: dict[str, torch.Tensor], tmp: Path, meta: dict[str, str]) -> None:
    """safetensors' `save_file`, with its I/O failures (a full disk) raised as the OSError they are:
    safetensors reports them as a SafetensorError whose text carries the OS error number."""
    try:
        save_file(tensors, str(tmp), metadata=meta)
    except OSError:
        raise
    except Exception as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(tmp)) from e


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then fsync and rename over ``path``: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk or a kill: give the half-written space back, keep the old file
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def shard_name(index: int) -> str:
    return f"{index:05d}.safetensors"


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """Parse and validate a safetensors header: (entries, data start offset); see
    `weightspace.zoo.shard_check.read_safetensors_header`."""
    from weightspace.zoo.shard_check import read_safetensors_header as read

    return read(path)


@dataclass
class _Shard:
    path: Path
    arrays: dict[str, np.memmap]
    rows: list[dict[str, Any]]


def _map_shard(path: Path, header: dict[str, Any], start: int, rows: list[dict[str, Any]]) -> _Shard:
    """Memory-map a shard whose header `weightspace.zoo.shard_check.check_shard` has checked."""
    arrays = {}
    for name, entry in header.items():
        if name != "__metadata__":
            begin, shape = entry["data_offsets"][0], tuple(entry["shape"])
            arrays[name] = np.memmap(path, dtype=_DTYPES[entry["dtype"]], mode="r", offset=start + begin, shape=shape)
    return _Shard(path, arrays, rows)


def _read_zoo_json(path: Path) -> dict[str, Any]:
    file = path / "zoo.json"
    if not file.exists():
        raise ZooError(file, "not a zoo directory (zoo.json is missing)")
    try:
        meta = json.loads(file.read_bytes())
    except OSError as e:
        raise ZooError(file, f"cannot be read ({e.strerror or e})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise ZooError(file, f"damaged zoo.json ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ZooError(file, f"not a weightspace zoo (format is {meta.get('format') if isinstance(meta, dict) else None!r})")
    version, size = meta.get("version"), meta.get("shard_size")
    if type(version) is not int or version < 1:
        raise ZooError(file, f"zoo format version is {version!r}, not a positive integer")
    if version > FORMAT_VERSION:
        raise ZooError(file, f"zoo format version {version} is newer than this library's {FORMAT_VERSION}")
    if type(size) is not int or size < 1:
        raise ZooError(file, f"shard_size is {size!r}, not a positive integer")
    try:
        meta["spec"] = NetworkSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ZooError(file, f"invalid spec ({type(e).__name__}: {str(e)[:120]})") from None
    return meta


def _write_zoo_json(path: Path, meta: Mapping[str, Any]) -> None:
    data = {**meta, "spec": meta["spec"].to_dict()}
    _atomic_write(path / "zoo.json", lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    # an empty zoo's table still has the reserved columns (every shard set aside on resume)
    df = pd.DataFrame(rows) if rows else pd.DataFrame({c: np.zeros(0, np.int64) for c in RESERVED_COLUMNS})
    if len(df):
        df = df.sort_values("id", kind="stable").reset_index(drop=True)
    _atomic_write(path / "table.parquet", lambda tmp: pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp))


def _read_table(path: Path) -> pd.DataFrame:
    file = path / "table.parquet"
    if not file.exists():
        return pd.DataFrame(columns=list(RESERVED_COLUMNS))
    try:
        return pq.read_table(file).to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError) as e:  # pyarrow's errors for foreign bytes vary
        raise ZooError(file, f"damaged or not a parquet table ({type(e).__name__}: {str(e)[:120]})") from None


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
        self._entries: dict[int, dict[str, Any]] = {}  # zoo.json's "shards": index, ids [first, stop), sha256
        self._recover()

    def _recover(self) -> None:
        """Count as done only the shards that verify in full (structure, content hash,
        values; `shard_check.recover_shards` sets damaged ones aside to be written again)
        and rebuild the table and zoo.json's shard list from them: each shard's own
        hash-checked copy of its rows is the source, so a damaged table heals too."""
        from weightspace.zoo.shard_check import recover_shards

        for tmp in (self.path / "shards").glob(".*.tmp"):
            tmp.unlink()  # a shard that was being written when the writer died
        for info in recover_shards(self.path, self.spec, self.shard_size, self.meta):
            self._rows[info.index], self._entries[info.index] = info.rows, info.entry()
        if self._rows or (self.path / "table.parquet").exists():
            self._flush()

    def completed_shards(self) -> set[int]:
        return set(self._rows)

    def write_shard(self, index: int, weights: Weights, columns: Mapping[str, Sequence[Any]]) -> None:
        """Write shard ``index`` with its networks and table columns (one value per network)."""
        if weights.spec != self.spec:
            raise ValueError("weights have a different spec than the zoo")
        if weights.channels != 1:
            raise ValueError(f"a zoo stores raw weights (C = 1), got C = {weights.channels}")
        n = len(weights)
        if not 0 < n <= self.shard_size or index < 0:
            raise ValueError(f"a shard has an index >= 0 and holds 1..{self.shard_size} networks, got {index}, {n}")
        for name, values in columns.items():
            if name in RESERVED_COLUMNS:
                raise ValueError(f"column {name!r} is reserved")
            if len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} values for {n} networks")
        for i, t in enumerate(weights.tensors()):
            if not torch.isfinite(t).all():
                raise ValueError(f"shard {index}: tensor {i} holds NaN or infinite values; nothing written")
        rows = [{name: _plain(values[r]) for name, values in columns.items()} for r in range(n)]
        from weightspace.zoo.shard_check import shard_digest
        from weightspace.zoo.verify import label_problem

        ids = [index * self.shard_size, index * self.shard_size + n]
        if "label" in columns:  # the rule readers apply: refused here, not discovered when the zoo is opened
            problem = label_problem(pd.Series([r["label"] for r in rows]), "label", np.arange(*ids))
            if problem:
                raise ValueError(f"shard {index}: {problem}; nothing written")
        tensors = {}
        for i, (w, b) in enumerate(zip(weights.weights, weights.biases)):
            tensors[f"layers.{i}.weight"] = w[:, 0].detach().to("cpu", torch.float32).contiguous()
            if b is not None:
                tensors[f"layers.{i}.bias"] = b[:, 0].detach().to("cpu", torch.float32).contiguous()
        meta = {"format": FORMAT_NAME, "shard": str(index), "ids": json.dumps(ids), "rows": json.dumps(rows)}
        meta["sha256"] = shard_digest(meta, {k: t.numpy() for k, t in tensors.items()})
        _atomic_write(self.path / "shards" / shard_name(index), lambda tmp: _save_shard(tensors, tmp, meta))
        self._rows[index] = rows
        self._entries[index] = {"index": index, "ids": ids, "sha256": meta["sha256"]}
        self._flush()

    def _flush(self) -> None:
        """Rewrite the table, then zoo.json's shard list, from the shards written so far."""
        table = []
        for index in sorted(self._rows):
            for r, row in enumerate(self._rows[index]):
                table.append({"id": index * self.shard_size + r, "shard": index, "row": r, **row})
        _write_table(self.path, table)
        self.meta["shards"] = [self._entries[i] for i in sorted(self._entries)]
        _write_zoo_json(self.path, self.meta)

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

    def __init__(self, path: Path, meta: dict[str, Any], table: pd.DataFrame, shards: dict[int, _Shard],
                 *, check_values: bool = False) -> None:
        self.path, self.meta, self.table, self._shards = path, meta, table, shards
        self.spec: NetworkSpec = meta["spec"]
        self._shard_of = table["shard"].to_numpy(np.int64)
        self._row_of = table["row"].to_numpy(np.int64)
        self._check_values = check_values  # values not verified at open: refuse NaN / inf as they are gathered

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: str = "full", allow_nonfinite: bool = False,
             allow_incomplete: bool = False) -> Zoo:
        """Open the zoo at ``path`` after `weightspace.zoo.verify.verify_zoo` found no problem
        (else `ZooError` naming the first). ``verify="full"`` (default) checks the structure,
        every shard's content hash and that every value is finite (reads every byte once);
        ``"cheap"`` the structure only (zoo.json, table, shard headers), and then refuses
        NaN / inf in `weights` as networks are gathered. ``allow_nonfinite`` lets NaN / inf
        through. A zoo written without content hashes opens with a `ZooWarning`. A zoo whose
        build has not finished is refused (`require_complete`) unless ``allow_incomplete``."""
        from weightspace.zoo.verify import verify_zoo

        if verify not in ("full", "cheap"):
            raise ValueError(f"verify must be 'full' or 'cheap', got {verify!r}")
        full = verify == "full"
        report = verify_zoo(path, hashes=full, values=full, allow_nonfinite=allow_nonfinite)
        report.raise_for_problems()
        for line in report.warnings:
            warnings.warn(line, ZooWarning, stacklevel=2)
        table, listed = report.table, set(report.table["shard"].tolist())
        shards = {i: _map_shard(s.path, s.header, s.start, s.rows) for i, s in report.shards.items()
                  if i in listed}  # a shard not yet listed in the table is not part of the zoo
        zoo = cls(Path(path), report.meta, table, shards, check_values=not (full or allow_nonfinite))
        return require_complete(zoo, allow_incomplete)

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

        out = Weights(
            self.spec,
            tuple(stack(ws[i], layer.weight_shape) for i, layer in enumerate(self.spec.layers)),
            tuple(stack(bs[i], (layer.out_features,)) if layer.bias else None for i, layer in enumerate(self.spec.layers)),
        )
        for t in out.tensors() if self._check_values else ():
            bad = ~torch.isfinite(t.flatten(1)).all(1)
            if bad.any():
                p = int(pos[int(bad.nonzero()[0, 0])])
                s, r = int(self._shard_of[p]), int(self._row_of[p])
                raise ZooError(self._shards[s].path, f"row {r} (id {self.table['id'].iat[p]}) holds NaN or inf; "
                                                     "pass allow_nonfinite=True to read it anyway")
        return out

    def load(self, split: str | None = None) -> tuple[Weights, pd.DataFrame]:
        """All networks of ``split`` (or of the zoo) and their table rows."""
        pos = np.arange(len(self)) if split is None else self.split(split)
        return self.weights(pos), self.table.iloc[pos].reset_index(drop=True)

    def to_hf(self, split: str | None = None):
        """The networks (of ``split``) as a Hugging Face `datasets.Dataset` (`weightspace.zoo.export`)."""
        from weightspace.zoo.export import to_hf

        return to_hf(self, split, allow_incomplete=True)  # opening already decided about completeness

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


def require_complete(zoo: Zoo, allow_incomplete: bool = False) -> Zoo:
    """``zoo`` if its build finished (or ``allow_incomplete``), else `ZooError` saying how much is there.

    A half-built zoo is a biased sample when its build order is not shuffled (older zoos were
    fitted class by class), and always a smaller one than its recipe says; readers use one only
    when asked (``--allow-incomplete``)."""
    if zoo.complete or allow_incomplete:
        return zoo
    planned = zoo.meta.get("num_networks")
    size = int(zoo.meta.get("shard_size") or 1)
    of = f" of {planned} networks planned are written ({len(zoo._shards)} of {-(-int(planned) // size)} shards)" \
        if planned else " networks are written so far"
    raise ZooError(zoo.path, f"incomplete: {len(zoo)}{of}; finish it by running its build command again "
                             "(it resumes), or pass --allow-incomplete (allow_incomplete=True) to use what is there")


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
