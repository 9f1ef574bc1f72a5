"""Fault injection for zoos: the damage a disk, a copy or a careless hand does to a zoo.

Each entry of `DAMAGE` changes a zoo in place and names the file the damage is in. They are
used by the verification tests (``tests/zoo/test_verify.py``, with the message each must
produce) and by ``benchmarks/reliability.py`` (every reader must refuse each one with one
line). The cases assume a zoo of at least 3 shards of 4 networks whose spec has two
equally shaped biases ``layers.0.bias`` and ``layers.1.bias`` (a SIREN with equal hidden
widths), and are deterministic.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np


def shard_file(path: Path, k: int) -> Path:
    return Path(path) / "shards" / f"{k:05d}.safetensors"


def parse_header(data: bytes) -> tuple[dict, int]:
    """(safetensors header, data start) of a file's bytes."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), 8 + n


def header(file: Path) -> tuple[dict, int]:
    return parse_header(Path(file).read_bytes())


def rewrite_header(file: Path, edit: Callable[[dict], dict]) -> None:
    """Replace a shard's header by ``edit(header)``, keeping its data bytes."""
    head, start = header(file)
    data = Path(file).read_bytes()[start:]
    raw = json.dumps(edit(head)).encode()
    raw += b" " * (-len(raw) % 8)
    Path(file).write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def poke(file: Path, name: str, row: int, element: int, value: float) -> None:
    """Overwrite element ``element`` of network ``row`` of F32 tensor ``name`` in place."""
    head, start = header(file)
    per_row = int(np.prod(head[name]["shape"][1:]))
    at = start + head[name]["data_offsets"][0] + 4 * (row * per_row + element)
    data = bytearray(Path(file).read_bytes())
    data[at:at + 4] = struct.pack("<f", value)
    Path(file).write_bytes(bytes(data))


def resave(file: Path, dtype) -> None:
    """Write the shard again with tensor layers.0.weight converted to ``dtype``, same metadata."""
    from safetensors.torch import load_file, save_file

    head, _ = header(file)
    tensors = load_file(str(file))
    tensors["layers.0.weight"] = tensors["layers.0.weight"].to(dtype)
    save_file(tensors, str(file), metadata=head["__metadata__"])


def edit_table(path: Path, edit: Callable) -> None:
    import pandas as pd

    t = pd.read_parquet(Path(path) / "table.parquet")
    edit(t).to_parquet(Path(path) / "table.parquet", index=False)


def exponent_flip(path: Path) -> None:
    """Flip the top exponent bit of a weight below 1 in magnitude: the value stays finite."""
    file = shard_file(path, 1)
    head, start = header(file)
    at = start + head["layers.1.weight"]["data_offsets"][0]
    values = np.frombuffer(file.read_bytes()[at:at + 64 * 4], dtype="<f4")
    j = int(np.flatnonzero(np.abs(values) < 1)[0])
    data = bytearray(file.read_bytes())
    data[at + 4 * j + 3] ^= 0x40  # bit 30: the exponent's most significant bit
    file.write_bytes(bytes(data))


def flip_bytes(path: Path) -> None:
    """20 random bytes of shard 2's tensor data changed (seeded)."""
    file = shard_file(path, 2)
    _, start = header(file)
    data = bytearray(file.read_bytes())
    rng = np.random.default_rng(0)
    for at in rng.choice(np.arange(start, len(data)), 20, replace=False):
        data[at] ^= int(rng.integers(1, 256))
    file.write_bytes(bytes(data))


def swap_shards(path: Path) -> None:
    a, b = shard_file(path, 1), shard_file(path, 2)
    tmp = a.with_name("tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def overlap(head: dict) -> dict:
    """Point layers.1.bias at layers.0.bias's bytes (equal shapes)."""
    head["layers.1.bias"]["data_offsets"] = head["layers.0.bias"]["data_offsets"]
    return head


def duplicate_row(t):
    """id 5's row becomes a second copy of id 4's: network 5 disappears."""
    import pandas as pd

    return pd.concat([t.iloc[:5], t.iloc[[4]], t.iloc[6:]]).reset_index(drop=True)


def set_cell(column: str, position: int, value) -> Callable:
    def edit(t):
        t.loc[position, column] = value
        return t
    return edit


def bump_label(position: int) -> Callable:
    """The table's label at ``position`` becomes another class (label + 1)."""
    def edit(t):
        t.loc[position, "label"] = int(t.loc[position, "label"]) + 1
        return t
    return edit


def directory_shard(path: Path) -> None:
    shard_file(path, 1).unlink()
    shard_file(path, 1).mkdir()


def nested_json(path: Path) -> None:
    (Path(path) / "zoo.json").write_text("[" * 100_000 + "]" * 100_000)


def nested_spec(path: Path) -> None:
    meta = json.loads((Path(path) / "zoo.json").read_text())
    text = json.dumps({**meta, "spec": "@"})
    (Path(path) / "zoo.json").write_text(text.replace('"@"', "[" * 100_000 + "]" * 100_000))


def string_version(path: Path) -> None:
    meta = json.loads((Path(path) / "zoo.json").read_text())
    (Path(path) / "zoo.json").write_text(json.dumps({**meta, "version": "2"}))


def _truncate(path: Path) -> None:
    f = shard_file(path, 2)
    f.write_bytes(f.read_bytes()[:-6])


def _dtype(name: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        import torch

        resave(shard_file(path, 1), getattr(torch, name))
    return apply


# damage name -> (apply(zoo path), the file it damages, relative to the zoo)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "nan": (lambda p: poke(shard_file(p, 1), "layers.1.weight", 2, 5, float("nan")), "shards/00001.safetensors"),
    "inf": (lambda p: poke(shard_file(p, 0), "layers.2.bias", 3, 0, float("-inf")), "shards/00000.safetensors"),
    "exponent_bit": (exponent_flip, "shards/00001.safetensors"),
    "random_bytes": (flip_bytes, "shards/00002.safetensors"),
    "swapped_shards": (swap_shards, "shards/00001.safetensors"),
    "overlapping_offsets": (lambda p: rewrite_header(shard_file(p, 1), overlap), "shards/00001.safetensors"),
    "f16": (_dtype("float16"), "shards/00001.safetensors"),
    "f64": (_dtype("float64"), "shards/00001.safetensors"),
    "i32": (_dtype("int32"), "shards/00001.safetensors"),
    "duplicated_row": (lambda p: edit_table(p, duplicate_row), "table.parquet"),
    "negative_row": (lambda p: edit_table(p, set_cell("row", 11, -1)), "table.parquet"),
    "row_past_end": (lambda p: edit_table(p, set_cell("row", 11, 7)), "table.parquet"),
    "missing_row": (lambda p: edit_table(p, lambda t: t.drop(index=6)), "shards/00001.safetensors"),
    "label_in_table_changed": (lambda p: edit_table(p, bump_label(7)), "table.parquet"),
    "table_deleted": (lambda p: (Path(p) / "table.parquet").unlink(), "table.parquet"),
    "zoo_json_nested": (nested_json, "zoo.json"),
    "spec_nested": (nested_spec, "zoo.json"),
    "version_string": (string_version, "zoo.json"),
    "shard_is_directory": (directory_shard, "shards/00001.safetensors"),
    "shard_missing": (lambda p: shard_file(p, 2).unlink(), "shards/00002.safetensors"),
    "truncated": (_truncate, "shards/00002.safetensors"),
}
