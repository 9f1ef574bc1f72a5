"""Convert the published INR datasets into zoos (no pickle is executed: ``weights_only=True``).

DWSNets (Navon et al. 2023; layout read from their ``experiments/mnist/generate_data_splits.py``,
``experiments/data.py`` and ``nn/inr.py``)::

    <root>/splits.json   (or the one *splits*.json there, e.g. mnist_splits.json)
        {"train": {"path": [...], "label": [...]}, "val": {...}, "test": {...}}
    <root>/.../<anything>.pth   one state dict per INR, keys seq.{0,1,2}.{weight,bias}

  Their INR is ``Siren(2, 32) -> Siren(32, 32) -> nn.Linear(32, 1)`` with sin(30 x) and
  ``forward = seq(x) + 0.5``. Their split files hold absolute paths of the machine that
  wrote them; a path is looked up as given, then relative to ``root``, then by its
  trailing components under ``root``. Labels are strings (``"7"``); numeric ones become
  ints, others are indexed in sorted order. Their coordinates come from
  ``np.meshgrid(x, y)`` (``indexing="xy"``): input 0 is the *column*, input 1 the *row*,
  while a zoo's are (row, column); with ``swap_xy=True`` (default) the two input
  columns of the first weight matrix are swapped, which makes the networks compute the
  same images under the zoo's coordinates (recorded in provenance).

NFN (Zhou et al. 2023; layout read from their ``experiments/data_utils.py::SirenDataset``,
``experiments/siren_utils.py`` and ``classify_siren.py``)::

    <root>/<prefix>_<d>s/net<i>.pth          one INR of image i, label d (prefix randinit_smaller)
    <root>/<prefix>_aug<k>_<d>s/net<i>.pth   another fit of image i from a different seed

  State dict keys ``net.0.linear.{weight,bias}``, ``net.1.linear.{weight,bias}``,
  ``net.2.{weight,bias}`` (two sine layers, linear output; outputs in [-1, 1]).
  Splits by image index: ``i < 45000`` train, ``< 50000`` val, else test
  (``split_points``). Augmented copies count for training images only (their protocol);
  others are skipped and counted. Their grid is ``torch.meshgrid`` with ``indexing="ij"``:
  the zoo's convention, so nothing is swapped. ``copy`` is 0 for the base fit and
  ``k + 1`` for ``aug<k>``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from weightspace._progress import disabled
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.inr.siren import DWSNETS, NFN
from weightspace.signals.images import IMAGE_COORDINATES
from weightspace.zoo.store import Zoo, ZooWriter

DWSNETS_KEY = re.compile(r"^seq\.(\d+)\.(weight|bias)$")
NFN_KEY = re.compile(r"^net\.(\d+)\.(?:linear\.)?(weight|bias)$")
SPLITS = ("train", "val", "test")


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; name the file
        raise ValueError(f"{path}: cannot load as a weights-only state dict ({e})") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return sd


class _Layout:
    """Which state-dict key holds which layer's weight and bias, learnt from the first file
    and then demanded of every other file (errors name the file and the key)."""

    def __init__(self, first: Path, sd: dict[str, torch.Tensor], pattern: re.Pattern[str]) -> None:
        layers: dict[int, dict[str, str]] = {}
        for key in sd:
            m = pattern.match(key)
            if m is None:
                raise ValueError(
                    f"{first}: unexpected key {key!r} (expected keys matching {pattern.pattern})"
                )
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = key
        order = sorted(layers)
        for i in order:
            for part in ("weight", "bias"):
                if part not in layers[i]:
                    raise ValueError(f"{first}: layer {i} has no {part} key")
        self.keys = tuple((layers[i]["weight"], layers[i]["bias"]) for i in order)
        self.shapes = {k: tuple(sd[k].shape) for pair in self.keys for k in pair}
        ws = [sd[w] for w, _ in self.keys]
        if any(w.dim() != 2 for w in ws):
            raise ValueError(f"{first}: weights must be matrices, got shapes {[tuple(w.shape) for w in ws]}")
        try:
            self.spec = NetworkSpec.siren(
                ws[0].shape[1], [w.shape[0] for w in ws[:-1]], ws[-1].shape[0], omega=30.0
            )
        except ValueError as e:
            raise ValueError(f"{first}: layer shapes do not chain ({e})") from None
        for (w, b), layer in zip(self.keys, self.spec.layers):
            if self.shapes[w] != layer.weight_shape or self.shapes[b] != (layer.out_features,):
                raise ValueError(
                    f"{first}: {w!r} {self.shapes[w]} / {b!r} {self.shapes[b]} do not form one layer"
                )

    def check(self, path: Path, sd: dict[str, torch.Tensor]) -> None:
        for key, shape in self.shapes.items():
            if key not in sd:
                raise ValueError(f"{path}: missing key {key!r}")
            if tuple(sd[key].shape) != shape:
                raise ValueError(f"{path}: {key!r} has shape {tuple(sd[key].shape)}, expected {shape}")
        extra = sorted(set(sd) - set(self.shapes))
        if extra:
            raise ValueError(f"{path}: unexpected keys {extra}")


def _write(
    out: str | os.PathLike[str],
    entries: list[dict[str, Any]],
    pattern: re.Pattern[str],
    provenance: Callable[[_Layout], dict[str, Any]],
    fix: Callable[[Weights], Weights],
    shard_size: int,
    progress: bool,
) -> Zoo:
    """Stream ``entries`` (each with a ``file`` and its table columns) into a zoo, shard by shard."""
    if not entries:
        raise ValueError("no INR files found")
    first = entries[0]["file"]
    layout = _Layout(first, _load(first), pattern)
    writer = ZooWriter(
        out, layout.spec, shard_size=shard_size, num_networks=len(entries), provenance=provenance(layout)
    )
    todo = [k for k in range(-(-len(entries) // shard_size)) if k not in writer.completed_shards()]
    for k in tqdm(todo, disable=disabled(progress), desc="importing", unit="shard"):
        chunk = entries[k * shard_size : (k + 1) * shard_size]
        sds = []
        for e in chunk:
            sd = _load(e["file"])
            layout.check(e["file"], sd)
            sds.append(sd)
        weights = fix(Weights.from_state_dicts(sds, layout.spec, keys=layout.keys))
        columns = {name: [e[name] for e in chunk] for name in chunk[0] if name != "file"}
        writer.write_shard(k, weights, columns)
    return writer.finalize()


# ---------------------------------------------------------------------- DWSNets
def _find_splits(root: Path, splits: str | os.PathLike[str] | None) -> Path:
    if splits is not None:
        path = Path(splits)
        path = path if path.is_absolute() or path.exists() else root / path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: splits file not found")
        return path
    if (root / "splits.json").is_file():
        return root / "splits.json"
    found = sorted(root.glob("*splits*.json"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"{root}: expected splits.json (or one *splits*.json), found {[f.name for f in found]}"
        )
    return found[0]


def _resolve(root: Path, given: str) -> Path:
    """An INR path from a split file: as given, relative to root, or by its tail under root."""
    p = Path(given)
    if p.is_absolute() and p.is_file():
        return p
    parts = p.parts[1:] if p.is_absolute() else p.parts
    for k in range(len(parts)):  # longest tail first: "/home/x/dataset/mnist-inrs/a/b.pth" -> "a/b.pth"
        candidate = root.joinpath(*parts[k:])
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{given}: listed in the splits file but not found (as given, or under {root})")


def import_dwsnets(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    splits: str | os.PathLike[str] | None = None,
    image_size: tuple[int, int] = (28, 28),
    swap_xy: bool = True,
    shard_size: int = 256,
    progress: bool = False,
) -> Zoo:
    """Convert a DWSNets INR dataset (module docstring) into a zoo at ``out``.

    Table columns: ``split``, ``label``, ``source_index`` (position in its split's list),
    ``path`` (relative to ``root`` where possible). Networks are in split-file order,
    train then val then test.
    """
    root = Path(root)
    split_file = _find_splits(root, splits)
    try:
        data = json.loads(split_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{split_file}: not JSON ({e})") from None
    raw = []
    for name in SPLITS:
        part = data.get(name, {"path": [], "label": []})
        if not isinstance(part, dict) or len(part.get("path", [])) != len(part.get("label", [])):
            raise ValueError(f"{split_file}: split {name!r} needs 'path' and 'label' lists of equal length")
        raw += [(name, i, str(p), str(lb)) for i, (p, lb) in enumerate(zip(part["path"], part["label"]))]
    names = sorted({lb for *_, lb in raw})
    numeric = all(n.lstrip("-").isdigit() for n in names)
    classes = [str(c) for c in sorted(int(n) for n in names)] if numeric else names
    entries = []
    for split, i, given, lb in raw:
        file = _resolve(root, given)
        rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else file.as_posix()
        entries.append(
            {
                "file": file,
                "split": split,
                "label": int(lb) if numeric else names.index(lb),
                "source_index": i,
                "path": rel,
            }
        )

    def provenance(layout: _Layout) -> dict[str, Any]:
        return {
            "kind": "inr",
            "recipe": DWSNETS.to_dict(),
            "dataset": f"dwsnets:{root.resolve()}",
            "signal_kind": "image",
            "signal_shape": [*image_size, layout.spec.out_features],
            "coordinates": IMAGE_COORDINATES
            if swap_xy
            else "DWSNets' own: inputs (column, row), np.meshgrid indexing='xy'",
            "classes": classes,
            "imported_from": {
                "format": "dwsnets",
                "root": str(root.resolve()),
                "splits_file": split_file.name,
                "keys": [list(k) for k in layout.keys],
                "input_axes_swapped": swap_xy,
            },
        }

    def fix(w: Weights) -> Weights:
        if not swap_xy or w.spec.in_features != 2:
            return w
        return Weights(w.spec, (w.weights[0][..., [1, 0]], *w.weights[1:]), w.biases)

    return _write(out, entries, DWSNETS_KEY, provenance, fix, shard_size, progress)


# ---------------------------------------------------------------------- NFN
def _nfn_entries(
    root: Path, prefix: str, val_point: int, test_point: int
) -> tuple[list[dict[str, Any]], int]:
    folder_re = re.compile(rf"^{re.escape(prefix)}(?:_aug(\d+))?_(\d+)s$")
    file_re = re.compile(r"^net(\d+)\.pth$")
    seen: dict[tuple[int, int], Path] = {}
    entries, skipped = [], 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        m = folder_re.match(folder.name)
        if m is None:
            continue
        copy, label = (int(m.group(1)) + 1 if m.group(1) is not None else 0), int(m.group(2))
        for file in sorted(folder.iterdir()):
            f = file_re.match(file.name)
            if f is None:
                continue
            idx = int(f.group(1))
            if copy > 0 and idx >= val_point:
                skipped += 1  # their protocol: augmented fits of training images only
                continue
            if (idx, copy) in seen:
                raise ValueError(f"{file}: image {idx} copy {copy} also in {seen[(idx, copy)]}")
            seen[(idx, copy)] = file
            split = "train" if idx < val_point else "val" if idx < test_point else "test"
            entries.append(
                {
                    "file": file,
                    "split": split,
                    "label": label,
                    "source_index": idx,
                    "copy": copy,
                    "path": file.relative_to(root).as_posix(),
                }
            )
    entries.sort(key=lambda e: (e["copy"], e["source_index"]))  # copy-major, like build_inr_zoo
    return entries, skipped


def import_nfn(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    prefix: str = "randinit_smaller",
    split_points: tuple[int, int] = (45000, 50000),
    image_size: tuple[int, int] | None = None,
    shard_size: int = 256,
    progress: bool = False,
) -> Zoo:
    """Convert an NFN SIREN dataset (module docstring) into a zoo at ``out``.

    Table columns: ``split``, ``label``, ``source_index`` (the image index ``i``), ``copy``,
    ``path``. ``image_size`` defaults to 28x28 for one output channel, 32x32 for three.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    entries, skipped = _nfn_entries(root, prefix, *split_points)
    if not entries:
        raise ValueError(f"{root}: no {prefix}_<d>s/net<i>.pth files")

    def provenance(layout: _Layout) -> dict[str, Any]:
        c = layout.spec.out_features
        size = image_size or ((28, 28) if c == 1 else (32, 32))
        return {
            "kind": "inr",
            "recipe": NFN.to_dict(),
            "dataset": f"nfn:{root.resolve()}",
            "signal_kind": "image",
            "signal_shape": [*size, c],
            "coordinates": IMAGE_COORDINATES,
            "imported_from": {
                "format": "nfn",
                "root": str(root.resolve()),
                "prefix": prefix,
                "split_points": list(split_points),
                "skipped_augmented_non_train": skipped,
                "keys": [list(k) for k in layout.keys],
            },
        }

    return _write(out, entries, NFN_KEY, provenance, lambda w: w, shard_size, progress)


__all__ = ["import_dwsnets", "import_nfn"]
