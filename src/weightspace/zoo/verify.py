"""Verify a zoo before it is trusted: every problem found, named by its file, never a traceback.

Two depths (`Zoo.open` runs both by default, ``verify="cheap"`` the first):

* structure, from zoo.json, table.parquet and the shard headers only (no tensor bytes):
  each shard's header tiles its data exactly (no overlapping offsets, holes, truncation),
  holds the spec's tensors as F32 ``[n, *shape]`` and names the shard's own index and id
  range (`weightspace.zoo.shard_check.check_shard`); the table against the shards: ``id
  = shard * shard_size + row``, no row negative, past its shard's end, listed twice or
  left out, every column equal to the shard's own copy of its rows; a ``label`` column
  holds class labels (integers in ``[0, MAX_CLASSES)``);
* data, reading every tensor byte once: each shard's content hash against the one
  recorded when it was written, and every value finite (unless ``allow_nonfinite``).

What is recorded per shard and why a content hash: see `weightspace.zoo.shard_check`.
A zoo written before hashes were recorded verifies all the rest, with a warning.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from weightspace.zoo.shard_check import ShardInfo, check_shard, check_shard_data, read_manifest, shard_files
from weightspace.zoo.store import RESERVED_COLUMNS, ZooError, _read_table, _read_zoo_json, shard_name

MAX_CLASSES = 100_000  # a label column with more classes than this is almost surely not one
_SHOWN = 5  # offenders named in one problem line


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file of a zoo."""

    file: Path
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what}"


@dataclass
class VerifyReport:
    """What `verify_zoo` found; no ``problems``: the zoo is sound, at the depth checked."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    networks: int = 0
    hashes_checked: int = 0  # shards whose content hash was recomputed and compared
    values_checked: bool = False  # every value was read and found finite
    meta: dict[str, Any] | None = None  # zoo.json, spec parsed
    table: pd.DataFrame | None = None
    shards: dict[int, ShardInfo] = field(default_factory=dict)  # those that passed the structural checks

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "problems": [{"file": str(p.file), "problem": p.what} for p in self.problems],
            "warnings": self.warnings,
            "networks": self.networks,
            "shards": len(self.shards),
            "hashes_checked": self.hashes_checked,
            "values_checked": self.values_checked,
        }

    def raise_for_problems(self) -> None:
        """Raise `ZooError` naming the first problem (and how many more there are)."""
        if self.problems:
            first, more = self.problems[0], len(self.problems) - 1
            hint = f": run `weightspace zoo verify {self.path}`"
            tail = f" (and {more} more problem{'s' * (more > 1)}{hint})" if more else ""
            raise ZooError(first.file, first.what + tail)


# ---------------------------------------------------------------------- labels
def _show(v: Any) -> str:
    return repr(v.item() if isinstance(v, np.generic) else v)


def _is_class(v: Any) -> bool:
    if isinstance(v, bool | np.bool_):
        return False
    if isinstance(v, int | np.integer):
        return 0 <= v < MAX_CLASSES
    if isinstance(v, float | np.floating):
        return bool(np.isfinite(v)) and float(v).is_integer() and 0 <= v < MAX_CLASSES
    return False


def label_problem(values: pd.Series, column: str, ids: np.ndarray | None = None) -> str | None:
    """Why ``values`` are not class labels (integers in ``[0, MAX_CLASSES)``; booleans
    count as 0 / 1), or None. Names the column, the first bad value and its id."""
    s = pd.Series(values).reset_index(drop=True)
    if s.dtype.kind == "b" or len(s) == 0:
        return None
    if s.dtype.kind in "iu":
        bad = ((s < 0) | (s >= MAX_CLASSES)).to_numpy()
    elif s.dtype.kind == "f":
        v = s.to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(v) | (v != np.round(v)) | (v < 0) | (v >= MAX_CLASSES)
    else:
        bad = np.array([not _is_class(v) for v in s], dtype=bool)
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    at = f"id {int(ids[i])}" if ids is not None else f"position {i}"
    count = int(bad.sum())
    more = f" ({count} such values)" if count > 1 else ""
    return (f"column {column!r} holds {_show(s.iloc[i])} at {at}{more}: class labels must be integers "
            f"in [0, {MAX_CLASSES})")


# ---------------------------------------------------------------------- the zoo
def verify_zoo(path: str | os.PathLike, *, hashes: bool = True, values: bool = True,
               allow_nonfinite: bool = False, threads: int | None = None) -> VerifyReport:
    """Check the zoo at ``path`` (see the module docstring); ``hashes`` / ``values``: also
    recompute content hashes / check that every value is finite (one read of every byte,
    spread over ``threads`` threads, default up to 8). Never raises for bad input."""
    report = VerifyReport(Path(path))
    try:
        _verify(report, hashes=hashes, values=values and not allow_nonfinite, threads=threads)
    except Exception as e:  # a damage no check foresaw: still one line naming it, not a traceback
        report.problems.append(Problem(report.path, f"verification stopped: {type(e).__name__}: {e}"))
    return report


def _verify(report: VerifyReport, *, hashes: bool, values: bool, threads: int | None) -> None:
    path, add = report.path, report.problems.append
    try:
        meta = _read_zoo_json(path)
        manifest = read_manifest(meta)
    except ZooError as e:
        add(Problem(path / "zoo.json" if e.path == Path("zoo.json") else e.path, e.problem))
        return
    report.meta, spec, size = meta, meta["spec"], meta["shard_size"]
    on_disk, strays = shard_files(path / "shards")
    report.problems += [Problem(file, what) for file, what in strays]
    table_file = path / "table.parquet"
    if table_file.is_dir():  # pyarrow would read a directory as a (possibly empty) dataset
        add(Problem(table_file, "is a directory, not a parquet file"))
        return
    if table_file.exists():
        try:
            table = _read_table(path)
        except ZooError as e:
            add(Problem(e.path, e.problem))
            return
    elif manifest or (meta.get("complete") and on_disk):
        add(Problem(table_file, f"is missing, but zoo.json lists {len(manifest)} shards and "
                                f"{len(on_disk)} shard files are on disk"))
        return
    else:  # a writer stopped before writing its first table: nothing listed yet
        table = pd.DataFrame({c: np.zeros(0, np.int64) for c in RESERVED_COLUMNS})
    missing = [c for c in RESERVED_COLUMNS if c not in table.columns]
    if missing:
        add(Problem(table_file, f"missing columns {missing}"))
        return
    for c in RESERVED_COLUMNS:
        if table[c].dtype.kind not in "iu":
            what = "missing values" if table[c].isna().any() else f"dtype {table[c].dtype}"
            add(Problem(table_file, f"column {c!r} must hold integers, it has {what}"))
            return
    table = table.reset_index(drop=True)
    report.table, report.networks = table, len(table)
    shard_of = table["shard"].to_numpy(np.int64)
    listed = {int(s) for s in np.unique(shard_of) if s >= 0}

    for index in sorted(listed | set(on_disk) | set(manifest)):
        file = path / "shards" / shard_name(index)
        if index not in on_disk:
            who = "table.parquet" if index in listed else "zoo.json"
            add(Problem(file, f"is missing (listed in {who})"))
            continue
        try:
            report.shards[index] = check_shard(file, index, spec, size, manifest.get(index))
        except ZooError as e:
            add(Problem(e.path, e.problem))
            continue
        if index not in listed:
            text = "is not listed in table.parquet"
            if meta.get("complete"):
                add(Problem(file, text))
            else:
                report.warnings.append(f"{file}: {text} yet (a writer stopped before listing it; resuming recovers it)")

    if hashes or values:
        shards = list(report.shards.values())
        workers = max(1, min(threads or min(8, os.cpu_count() or 1), len(shards) or 1))
        with ThreadPoolExecutor(workers) as pool:  # hashlib and numpy release the GIL on big buffers
            found = list(pool.map(lambda s: check_shard_data(s, hashes=hashes, values=values), shards))
        for info, problem in zip(shards, found):
            if problem:
                add(Problem(info.path, problem))
        report.hashes_checked = sum(s.sha256 is not None for s in shards) if hashes else 0
        report.values_checked = values
        unhashed = len(shards) - report.hashes_checked
        if hashes and unhashed:
            report.warnings.append(
                f"{path}: {unhashed} of {len(shards)} shards were written without a content hash (by an older "
                "weightspace): their bytes cannot be verified, only their structure and values")

    _check_rows(report, table, size, table_file)
    if "label" in table.columns:
        problem = label_problem(table["label"], "label", table["id"].to_numpy())
        if problem:
            add(Problem(table_file, problem))
    if meta.get("complete") and isinstance(meta.get("num_networks"), int) and meta["num_networks"] != len(table):
        add(Problem(path / "zoo.json", f"records {meta['num_networks']} networks, table.parquet lists {len(table)}"))


def _some(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:_SHOWN])
    return shown + (f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else "")


def _check_rows(report: VerifyReport, table: pd.DataFrame, size: int, table_file: Path) -> None:
    """table.parquet against the shards: every (shard, row) valid, listed once, with its id,
    and the columns equal to the shard's own copy of its rows."""
    add, shards = report.problems.append, report.shards
    ids, sh, rw = (table[c].to_numpy(np.int64) for c in RESERVED_COLUMNS)
    lengths = {i: len(s.rows) for i, s in shards.items()}
    n_of = np.array([lengths.get(int(s), -1) for s in sh], dtype=np.int64)
    known = n_of >= 0
    negative = (sh < 0) | (rw < 0)
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        add(Problem(table_file, f"ids {_some(ids[negative])}: negative shard or row "
                                f"(id {ids[i]} is at shard {sh[i]} row {rw[i]})"))
    past = known & ~negative & (rw >= n_of)
    if past.any():
        i = int(np.flatnonzero(past)[0])
        add(Problem(table_file, f"ids {_some(ids[past])}: row past the end of the shard "
                                f"(id {ids[i]} is at row {rw[i]} of shard {sh[i]}, which holds {n_of[i]} networks)"))
    wrong = ~negative & (ids != sh * size + rw)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        add(Problem(table_file, f"ids {_some(ids[wrong])}: not the id of their shard and row "
                                f"(id {ids[i]} is at shard {sh[i]} row {rw[i]}, which is id {sh[i] * size + rw[i]})"))
    twice = pd.Series(ids).duplicated(keep=False).to_numpy()
    if twice.any():
        add(Problem(table_file, f"ids listed more than once: {_some(np.unique(ids[twice]))}"))
    same = pd.DataFrame({"s": sh, "r": rw}).duplicated(keep=False).to_numpy()
    if same.any():
        i = int(np.flatnonzero(same)[0])
        add(Problem(table_file, f"ids {_some(ids[same])}: several table rows name the same network "
                                f"(shard {sh[i]} row {rw[i]})"))
    valid = known & ~negative & ~past & ~same
    for index, info in shards.items():
        listed = np.zeros(len(info.rows), dtype=bool)
        listed[rw[valid & (sh == index)]] = True
        if (sh == index).any() and not listed.all():
            absent = np.flatnonzero(~listed)
            ids_absent = _some(absent + index * size)
            add(Problem(info.path, f"rows {_some(absent)} (ids {ids_absent}) are not in table.parquet"))
    _check_columns(report, table, valid, sh, rw, ids, table_file)


def _check_columns(report: VerifyReport, table: pd.DataFrame, valid: np.ndarray, sh: np.ndarray, rw: np.ndarray,
                   ids: np.ndarray, table_file: Path) -> None:
    pos = np.flatnonzero(valid)
    if len(pos) == 0:
        return
    own = pd.DataFrame.from_records([report.shards[int(s)].rows[int(r)] for s, r in zip(sh[pos], rw[pos])])
    columns = [c for c in table.columns if c not in RESERVED_COLUMNS]
    for c in sorted(set(columns) ^ set(own.columns)):
        where = "table.parquet" if c in columns else "the shards' own rows"
        report.problems.append(Problem(table_file, f"column {c!r} is only in {where}"))
    for c in columns:
        if c not in own.columns:
            continue
        a, b = table[c].to_numpy()[pos], own[c].to_numpy()
        na, nb = pd.isna(a), pd.isna(b)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns, not raises, on some elementwise failures
            try:  # elementwise in C; strings and numbers compare here
                eq = np.asarray(a == b, dtype=bool)
                if eq.shape != a.shape:
                    raise ValueError("not elementwise")
            except (ValueError, TypeError, Warning):  # lists (parquet gives arrays) and such
                eq = np.fromiter((_equal(x, y) for x, y in zip(a, b)), bool, len(a))
        differ = ~((eq & ~na & ~nb) | (na & nb))
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            report.problems.append(Problem(table_file, (
                f"column {c!r} differs from the shards' own copy of their rows at ids {_some(ids[pos][differ])} "
                f"(id {ids[pos][i]}: {_show(a[i])} in the table, {_show(b[i])} in shard {sh[pos][i]})")))


def _equal(x: Any, y: Any) -> bool:
    try:
        return bool(np.all(np.asarray(x == y)) and np.shape(x) == np.shape(y))
    except (TypeError, ValueError):  # values that do not compare: not equal
        return False
