"""Zoos out of and back into the zoo format: Hugging Face datasets (parquet) and numpy.

Layout of an exported row (one network): its table columns (``id``, ``label``, ``split``, ...)
and one column per parameter tensor, named as in the shards (``layers.0.weight``, ...) and
holding the tensor flattened in row-major order as a fixed-size list of float32. The
`NetworkSpec` (which gives every tensor's shape) and the zoo's provenance travel in the Arrow
schema metadata under ``weightspace``, next to the ``huggingface`` entry that tells
`datasets` the features, so:

- ``weightspace zoo export ZOO --format hf -o DIR`` writes ``DIR/data/<split>-00000-of-00001.parquet``
  and ``DIR/weightspace.json`` (the spec and provenance again, for readers that drop schema
  metadata) (the Hugging Face Hub layout: ``datasets.load_dataset(str(DIR))`` gives a `DatasetDict` by
  split, ``val`` named ``validation`` there as HF names it, while each row's ``split`` column
  keeps the zoo's name; upload the folder as a dataset repository as it is);
- `Zoo.to_hf` / `to_hf` return a `datasets.Dataset` in memory (the optional ``hf`` extra);
- ``weightspace zoo import hf DIR -o ZOO`` / `import_hf` read such a folder, a parquet file or
  a `datasets.Dataset` back into a zoo, whose networks and table equal the original's
  (``tests/zoo/test_export.py``);
- ``--format numpy -o FILE.npz`` writes one array per tensor (``[N, *shape]``) and per column,
  loadable with ``numpy.load(FILE, allow_pickle=False)``; ``__spec__`` holds the spec as JSON.

Reading checks what it reads: the metadata's spec, every tensor column's length against the
spec, finite values and unique ids; problems are `ZooError` / `ValueError` naming the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.zoo.store import Zoo, ZooWriter, require_complete

META_KEY = b"weightspace"
_ROWS_PER_GROUP = 1024  # parquet row groups: readers fetch networks in pieces this size


def tensor_names(spec: NetworkSpec) -> list[str]:
    """Shard tensor names in `Weights.tensors` order."""
    names = []
    for i, layer in enumerate(spec.layers):
        names.append(f"layers.{i}.weight")
        if layer.bias:
            names.append(f"layers.{i}.bias")
    return names


_HF_DTYPES = {"double": "float64", "float": "float32", "halffloat": "float16", "string": "string",
              "large_string": "large_string", "bool": "bool"}


def _hf_features(schema: pa.Schema) -> dict[str, Any]:
    """The ``huggingface`` schema metadata: the features in `datasets`' JSON form."""
    def feature(t: pa.DataType) -> dict[str, Any]:
        if pa.types.is_fixed_size_list(t):
            return {"feature": feature(t.value_type), "length": t.list_size, "_type": "Sequence"}
        return {"dtype": _HF_DTYPES.get(str(t), str(t)), "_type": "Value"}  # int64, int32, ... keep their names
    return {"info": {"features": {f.name: feature(f.type) for f in schema}}}


def to_arrow(zoo: Zoo, positions: Iterable[int] | np.ndarray | None = None, *, chunk: int = 4096) -> pa.Table:
    """The networks at table ``positions`` (all if None) as an Arrow table (module docstring)."""
    pos = np.arange(len(zoo)) if positions is None else np.asarray(positions, dtype=np.int64)
    rows = zoo.table.iloc[pos].drop(columns=[c for c in ("shard", "row") if c in zoo.table.columns])
    columns: dict[str, list[pa.Array]] = {name: [] for name in tensor_names(zoo.spec)}
    for start in range(0, len(pos), chunk):  # gathered in pieces: a zoo larger than memory streams through
        w = zoo.weights(pos[start:start + chunk])
        for name, t in zip(columns, w.tensors()):
            flat = t.reshape(len(t), -1).numpy().astype(np.float32, copy=False)
            columns[name].append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1]))
    table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
    for name, parts in columns.items():
        size = int(np.prod(_shape(zoo.spec, name)))
        arr = pa.chunked_array(parts, type=pa.list_(pa.float32(), size)) if parts else pa.chunked_array(
            [], type=pa.list_(pa.float32(), size))
        table = table.append_column(name, arr)
    return table.replace_schema_metadata({META_KEY: json.dumps(_metadata(zoo), default=str).encode(),
                                          b"huggingface": json.dumps(_hf_features(table.schema)).encode()})


def _metadata(zoo: Zoo) -> dict[str, Any]:
    """What an exported row set carries besides its rows: the spec, the provenance, the source."""
    return {"format": "weightspace-zoo-rows", "version": 1, "spec": zoo.spec.to_dict(), "provenance": zoo.provenance,
            "source": str(zoo.path)}


def _shape(spec: NetworkSpec, name: str) -> tuple[int, ...]:
    _, i, kind = name.split(".")
    layer = spec.layers[int(i)]
    return tuple(layer.weight_shape) if kind == "weight" else (layer.out_features,)


def _split_positions(zoo: Zoo, split: str | None) -> dict[str, np.ndarray]:
    if split is not None:
        return {split: zoo.split(split)}
    if "split" not in zoo.table.columns:
        return {"train": np.arange(len(zoo))}
    return {str(s): zoo.split(str(s)) for s in zoo.table["split"].unique()}


def export_hf(zoo: Zoo, out: str | Path, *, split: str | None = None, allow_incomplete: bool = False) -> list[Path]:
    """Write ``out/data/<split>-00000-of-00001.parquet`` per split; returns the files."""
    require_complete(zoo, allow_incomplete)
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    # the spec beside the data, for readers that drop schema metadata
    (out / "weightspace.json").write_text(json.dumps(_metadata(zoo), indent=2, default=str))
    written = []
    for name, pos in _split_positions(zoo, split).items():
        f = out / "data" / f"{name}-00000-of-00001.parquet"
        tmp = f.with_name("." + f.name + ".tmp")
        pq.write_table(to_arrow(zoo, pos), tmp, row_group_size=_ROWS_PER_GROUP)
        tmp.replace(f)
        written.append(f)
    return written


def to_hf(zoo: Zoo, split: str | None = None, *, allow_incomplete: bool = False):
    """A `datasets.Dataset` of the zoo's networks (of ``split``), in memory; needs ``datasets``."""
    require_complete(zoo, allow_incomplete)
    try:
        import datasets
    except ImportError as e:
        raise ImportError("Zoo.to_hf needs Hugging Face datasets: pip install 'weightspace[hf]' "
                          "(or export with `weightspace zoo export --format hf` and load the folder)") from e
    pos = np.arange(len(zoo)) if split is None else zoo.split(split)
    table = to_arrow(zoo, pos)
    # `datasets` keeps its own info, not the schema's metadata: the spec goes in its description
    info = datasets.DatasetInfo(description=table.schema.metadata[META_KEY].decode())
    return datasets.Dataset(table, info=info)


def export_numpy(zoo: Zoo, out: str | Path, *, split: str | None = None, allow_incomplete: bool = False) -> Path:
    """Write ``out`` (.npz): one array per tensor ``[N, *shape]`` and per table column, ``__spec__``."""
    require_complete(zoo, allow_incomplete)
    pos = np.arange(len(zoo)) if split is None else zoo.split(split)
    w = zoo.weights(pos)
    arrays: dict[str, np.ndarray] = {name: t.squeeze(1).numpy() for name, t in zip(tensor_names(zoo.spec), w.tensors())}
    for c in zoo.table.columns:
        if c in ("shard", "row"):
            continue
        v = zoo.table[c].to_numpy()[pos]
        if v.dtype == object:  # strings: fixed-width unicode, which numpy loads without pickle
            v = np.asarray([str(x) for x in v], dtype=str)
        arrays[f"table.{c}"] = v
    arrays["__spec__"] = np.asarray(zoo.spec.to_json())
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"{out}: the numpy export is one .npz file")
    tmp = out.with_name("." + out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    return out


# ---------------------------------------------------------------------- import
def _tables_of(source: Any) -> list[tuple[str, pa.Table]]:
    """(where, Arrow table) for a folder of parquet files, one parquet file, or a `datasets` object."""
    if hasattr(source, "data") and hasattr(source.data, "table"):  # datasets.Dataset
        return [("<datasets.Dataset>", source.data.table)]
    if hasattr(source, "values") and all(hasattr(d, "data") for d in source.values()):  # datasets.DatasetDict
        return [(f"<DatasetDict[{k}]>", d.data.table) for k, d in source.items()]
    path = Path(source)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise ValueError(f"{path}: no .parquet files found")
    else:
        raise ValueError(f"{path}: no such file or directory")
    tables = []
    for f in files:
        try:
            tables.append((str(f), pq.read_table(f)))
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"{f}: cannot read parquet ({e})") from e
    return tables


def _spec_of(where: str, table: pa.Table, fallback: dict | None) -> tuple[NetworkSpec, dict]:
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None and fallback is None:
        raise ValueError(f"{where}: no weightspace metadata in the schema (`datasets.load_dataset` drops it); "
                         "pass spec= (the zoo's NetworkSpec), or import the exported folder itself")
    try:
        meta = json.loads(raw) if raw is not None else fallback
        return NetworkSpec.from_dict(meta["spec"]), meta
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: damaged weightspace metadata ({e})") from e


def import_hf(source: Any, out: str | Path, *, shard_size: int = 256, spec: NetworkSpec | None = None) -> Zoo:
    """A zoo at ``out`` from exported rows (a folder, a parquet file, or a `datasets` object),
    in id order; every tensor column is checked against the spec and for finite values.

    The spec comes from the rows' schema metadata, else from the folder's ``weightspace.json``
    (written by `export_hf`), else from a `datasets` object's description (`to_hf` puts it
    there), else from ``spec`` (needed for a `datasets` object made by ``load_dataset``, which
    drops schema metadata)."""
    tables = _tables_of(source)
    fallback = None if spec is None else {"spec": spec.to_dict()}
    sidecar = Path(source) / "weightspace.json" if isinstance(source, (str, Path)) else None
    if fallback is None and sidecar is not None and sidecar.is_file():
        try:
            fallback = json.loads(sidecar.read_text())
        except (ValueError, OSError, RecursionError) as e:
            raise ValueError(f"{sidecar}: damaged ({type(e).__name__}: {str(e)[:80]})") from None
    if fallback is None:  # a datasets object made by to_hf: the spec is in its description
        first = next(iter(source.values())) if hasattr(source, "values") and not hasattr(source, "info") else source
        description = getattr(getattr(first, "info", None), "description", None) or ""
        try:
            fallback = json.loads(description) if description.startswith("{") else None
        except ValueError:
            fallback = None
    spec, meta = _spec_of(*tables[0], fallback)
    for where, t in tables[1:]:
        if _spec_of(where, t, fallback)[0] != spec:
            raise ValueError(f"{where}: another NetworkSpec than {tables[0][0]}")
    table = pa.concat_tables([t.replace_schema_metadata(None) for _, t in tables], promote_options="default")
    names = tensor_names(spec)
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise ValueError(f"{tables[0][0]}: tensor columns {missing} missing for spec {spec.describe()}")
    df = table.drop_columns(names).to_pandas()
    if "id" in df.columns:
        ids = df["id"].to_numpy()
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{tables[0][0]}: ids listed more than once")
        order = np.argsort(ids, kind="stable")
    else:
        order = np.arange(len(df))
    arrays = {}
    for n in names:
        col = table.column(n).combine_chunks()
        size = int(np.prod(_shape(spec, n)))
        if not pa.types.is_fixed_size_list(col.type) and not pa.types.is_list(col.type):
            raise ValueError(f"{tables[0][0]}: column {n!r} is {col.type}, not a list of floats")
        if pa.types.is_list(col.type):  # every row its own length: totals alone could pair values with wrong rows
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            if col.null_count or (lengths != size).any():
                raise ValueError(f"{tables[0][0]}: column {n!r} has rows of other lengths than {size} "
                                 f"(shape {list(_shape(spec, n))}) or empty rows")
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        if flat.size != len(df) * size:
            raise ValueError(f"{tables[0][0]}: column {n!r} holds {flat.size} values, expected {len(df)} x {size} "
                             f"for shape {list(_shape(spec, n))}")
        if not np.isfinite(flat).all():
            raise ValueError(f"{tables[0][0]}: column {n!r} holds NaN or inf")
        arrays[n] = flat.reshape(len(df), *_shape(spec, n))[order]
    df = df.iloc[order].drop(columns=["id"], errors="ignore").reset_index(drop=True)
    import torch

    provenance = {**meta.get("provenance", {}), "imported_from": {"format": "weightspace-zoo-rows",
                                                                  "source": meta.get("source")}}
    writer = ZooWriter(out, spec, shard_size=shard_size, num_networks=len(df), provenance=provenance)
    for k in range(math.ceil(len(df) / shard_size)):
        if k in writer.completed_shards():
            continue
        sl = slice(k * shard_size, (k + 1) * shard_size)
        tensors = [torch.from_numpy(np.ascontiguousarray(arrays[n][sl])) for n in names]
        writer.write_shard(k, Weights.from_tensors(spec, tensors), {c: df[c].iloc[sl].tolist() for c in df.columns})
    return writer.finalize()


__all__ = ["export_hf", "export_numpy", "import_hf", "tensor_names", "to_arrow", "to_hf"]

