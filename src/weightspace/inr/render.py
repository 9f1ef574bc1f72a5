"""Decode the INRs of a zoo back to their signals, and look at them.

Everything needed is in the zoo: the recipe (``provenance.recipe``: decode offset and
range) and the signal's kind and shape (``provenance.signal_kind``, ``signal_shape``,
``signal_meta``). The source signals are optional: when the zoo records how they were
loaded (``provenance.source``, written by the CLI) or they are passed in, the figure shows
originals too and the PSNR is recomputed from the decoded networks, which must equal the
PSNR stored in the table (the tests check it).

Images decode on their pixel grid; shapes on a ``resolution^3`` grid (a mid-slice for the
figure, marching cubes for a mesh); audio on its sample grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightspace.core.functional import forward
from weightspace.inr.siren import SirenRecipe
from weightspace.signals.base import SignalDataset, grid_coordinates
from weightspace.zoo.store import Zoo


def recipe_of(zoo: Zoo) -> SirenRecipe:
    """The `SirenRecipe` recorded in a zoo's provenance (for its decode path)."""
    d = zoo.provenance.get("recipe")
    if not isinstance(d, dict):
        raise ValueError(f"{zoo.path}: provenance holds no recipe; cannot decode its networks")
    known = set(SirenRecipe.__dataclass_fields__)
    d = {k: v for k, v in d.items() if k in known}
    return SirenRecipe(
        **{
            **d,
            "hidden": tuple(d.get("hidden", ())),
            "target_range": tuple(d.get("target_range", (-1.0, 1.0))),
        }
    )


def signal_of(zoo: Zoo) -> tuple[str, tuple[int, ...], dict[str, Any]]:
    """(kind, signal_shape, meta) of the signals a zoo's networks represent."""
    prov = zoo.provenance
    if "signal_shape" not in prov:
        raise ValueError(f"{zoo.path}: provenance has no signal_shape; cannot lay out decoded signals")
    shape = tuple(int(s) for s in prov["signal_shape"])
    kind = prov.get("signal_kind") or ("image" if len(shape) == 3 else "grid")
    return kind, shape, dict(prov.get("signal_meta") or {})


def decode_grid(
    kind: str, shape: tuple[int, ...], meta: dict[str, Any], resolution: int | None
) -> tuple[int, ...]:
    """The grid to decode on: the signal's own grid, or ``resolution^3`` for shapes if given
    (scattered-point shapes need one: default ``meta['resolution']`` or 32)."""
    if kind == "shape":
        grid_dims = len(shape) - 1 == 3
        r = resolution or (shape[0] if grid_dims else int(meta.get("resolution", 32)))
        return (r, r, r)
    if resolution is not None:
        raise ValueError(f"--resolution applies to shapes, not {kind} signals")
    return shape[:-1]


@dataclass(frozen=True)
class Reconstruction:
    """Decoded networks of a zoo.

    values: ``[n, *grid, C]`` in [0, 1]; originals: the same layout, or None when the source
    signals are unknown or not on that grid; psnr: recomputed against the source signals
    where given, else the table's; table_psnr: as stored.
    """

    positions: np.ndarray
    values: Tensor
    originals: Tensor | None
    psnr: list[float]
    table_psnr: list[float]
    labels: list[Any]
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)


def reconstruct(
    zoo: Zoo,
    positions: Sequence[int] | np.ndarray,
    *,
    dataset: SignalDataset | None = None,
    resolution: int | None = None,
    device: str | torch.device = "cpu",
) -> Reconstruction:
    """Decode the networks at table ``positions`` (and compare with ``dataset`` if given) on
    ``device``; the values come back on the CPU."""
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    recipe = recipe_of(zoo)
    kind, shape, meta = signal_of(zoo)
    grid = decode_grid(kind, shape, meta, resolution)
    weights = zoo.weights(pos).to(device)
    rows = zoo.table.iloc[pos]
    values = recipe.render(weights, grid_coordinates(grid).to(device)).cpu().reshape(len(pos), *grid, shape[-1])
    table_psnr = [float(v) for v in rows["psnr"]] if "psnr" in rows else [float("nan")] * len(pos)
    originals, psnr = None, table_psnr
    if dataset is not None:
        if tuple(dataset.signal_shape) != shape:
            raise ValueError(
                f"dataset {dataset.name} has signal shape {tuple(dataset.signal_shape)}, the zoo {shape}"
            )
        src = torch.from_numpy(rows["source_index"].to_numpy(np.int64).copy())
        target = dataset.targets()[src]  # [n, P, C]
        with torch.no_grad():
            raw = forward(weights, dataset.coordinates().to(device, weights.dtype))
        # the fitting loss, exactly: raw output vs target in the recipe's range minus the offset
        mse = (raw - (recipe.encode_targets(target.to(device)) - recipe.output_offset)).square().mean(dim=(1, 2)).cpu()
        psnr = recipe.psnr(mse).tolist()
        if getattr(dataset, "grid", True) and tuple(grid) == shape[:-1]:
            originals = target.reshape(len(pos), *grid, shape[-1])
    labels = rows["label"].tolist() if "label" in rows else [None] * len(pos)
    # class names where the zoo (or its source data) records them: "7", "torus", not a bare index
    classes = zoo.provenance.get("classes") or (list(dataset.classes) if dataset is not None else None)
    if classes:
        labels = [classes[int(lb)] if lb is not None and 0 <= int(lb) < len(classes) else lb for lb in labels]
    return Reconstruction(pos, values, originals, psnr, table_psnr, labels, kind, meta)


def mid_slice(volume: Tensor, axis: int = 2) -> Tensor:
    """``[n, R, R, R, C]`` -> the middle slice along grid ``axis``: ``[n, R, R, C]``."""
    return volume.select(axis + 1, volume.shape[axis + 1] // 2)


def save_figure(rec: Reconstruction, path: str | Path) -> Path:
    """Grid of reconstructions (over originals where known) with their PSNR, as an image file."""
    from weightspace.plots import plot_reconstructions, plot_waveforms

    if rec.kind == "audio" or rec.values.dim() == 3:
        return plot_waveforms(rec.originals, rec.values, rec.psnr, path, labels=rec.labels)
    if rec.kind == "shape":
        originals = mid_slice(rec.originals) if rec.originals is not None else None
        return plot_reconstructions(originals, mid_slice(rec.values), rec.psnr, path, labels=rec.labels)
    if rec.values.dim() != 4:
        raise ValueError(f"no figure for {rec.values.dim() - 2}-d {rec.kind} signals")
    return plot_reconstructions(rec.originals, rec.values, rec.psnr, path, labels=rec.labels)


def marching_cubes(
    volume: Tensor | np.ndarray, level: float, *, inside_high: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Surface of a field on a ``[R, R, R]`` grid over ``[-1, 1]^3``: vertices ``[V, 3]`` in
    grid-axis order and faces ``[F, 3]``, outward-facing. ``inside_high``: the field is
    larger inside (occupancy) rather than smaller (signed or unsigned distance)."""
    try:
        from skimage.measure import marching_cubes as _mc
    except ImportError:
        raise ImportError(
            "meshes need scikit-image: pip install 'weightspace[shapes]' (or pip install scikit-image)"
        ) from None
    vol = np.asarray(volume, dtype=np.float32)
    if not vol.min() <= level <= vol.max():
        raise ValueError(
            f"the field never crosses the surface level {level:.3f} "
            f"(range {vol.min():.3f}..{vol.max():.3f}): no surface"
        )
    step = 2.0 / (vol.shape[0] - 1)
    verts, faces, _, _ = _mc(
        vol,
        level=level,
        spacing=(step, step, step),
        gradient_direction="ascent" if inside_high else "descent",
    )
    return verts - 1.0, faces


def write_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a triangle mesh as Wavefront ``.obj`` or ASCII ``.ply`` (by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    v_lines = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices)
    if path.suffix.lower() == ".obj":
        path.write_text(
            "".join(f"v {line}" for line in v_lines.splitlines(True))
            + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces)
        )
    elif path.suffix.lower() == ".ply":
        header = (
            f"ply\nformat ascii 1.0\nelement vertex {len(vertices)}\n"
            "property float x\nproperty float y\nproperty float z\n"
            f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
        )
        path.write_text(header + v_lines + "".join(f"3 {a} {b} {c}\n" for a, b, c in faces))
    else:
        raise ValueError(f"{path}: mesh files must end in .obj or .ply")
    return path


def select_positions(
    zoo: Zoo, *, indices: Sequence[int] | None = None, split: str | None = None, count: int = 8
) -> np.ndarray:
    """Table positions to render: the networks with these ids, or the first ``count`` of ``split``."""
    if indices is not None:
        ids = zoo.table["id"].to_numpy()
        where = {int(i): p for p, i in enumerate(ids)}
        missing = [i for i in indices if int(i) not in where]
        if missing:
            raise ValueError(f"{zoo.path}: no networks with id {missing} (ids run 0..{int(ids.max())})")
        return np.array([where[int(i)] for i in indices], dtype=np.int64)
    pos = zoo.split(split) if split is not None else np.arange(len(zoo))
    return pos[:count]


def source_dataset(zoo: Zoo) -> SignalDataset | None:
    """Load the source signals as recorded in the zoo, or None (with a warning) if unavailable."""
    record = zoo.provenance.get("source")
    if not isinstance(record, dict):
        return None
    from weightspace.signals.load import load_from_record

    try:
        return load_from_record(record)
    except (ValueError, FileNotFoundError, ImportError) as e:
        warnings.warn(
            f"cannot load the zoo's source signals ({e}); showing reconstructions only", stacklevel=2
        )
        return None


def mesh_destination(mesh: Path, count: int) -> bool:
    """Whether ``--mesh`` names a directory (True) or one mesh file (False) for ``count``
    networks; raises ValueError, before any decoding, for a file name with several networks
    or an unknown suffix."""
    if mesh.suffix.lower() in (".obj", ".ply") and not mesh.is_dir():
        if count != 1:
            raise ValueError(f"--mesh {mesh} names one file but {count} networks are rendered: give a directory "
                             "(one <id>-<label>.obj per network is written there) or render one network")
        return False
    if mesh.suffix and not mesh.is_dir():
        raise ValueError(f"--mesh {mesh}: a mesh file ends in .obj or .ply; a directory has no suffix")
    if mesh.exists() and not mesh.is_dir():
        raise ValueError(f"--mesh {mesh} is a file; meshes of several networks go into a directory")
    return True


def _file_safe(label: object) -> str:
    """A label as part of a file name: letters, digits, '-' and '_' kept, the rest '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(label))


def render_zoo(
    zoo: Zoo,
    figure: str | Path,
    positions: np.ndarray,
    *,
    dataset: SignalDataset | None = None,
    resolution: int | None = None,
    mesh: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Reconstruction, list[Path]]:
    """Decode ``positions``, write the figure and, for shapes, a marching-cubes mesh per
    network if ``mesh`` is given: a ``.obj``/``.ply`` file for one network, a directory for
    any number (``<id>-<label>.obj`` in it, ``<id>.obj`` unlabelled, created if missing). Returns the reconstruction
    and the files written."""
    if mesh is not None:
        mesh = Path(mesh)
        mesh_dir = mesh_destination(mesh, len(positions))
    rec = reconstruct(zoo, positions, dataset=dataset, resolution=resolution, device=device)
    written = [save_figure(rec, figure)]
    if mesh is not None:
        if rec.kind != "shape":
            raise ValueError(f"meshes are for shape zoos; this one holds {rec.kind} signals")
        level = float(rec.meta.get("surface_level", 0.5))
        ids = zoo.table["id"].to_numpy()[rec.positions]
        if mesh_dir:
            mesh.mkdir(parents=True, exist_ok=True)
        for i, label, vol in zip(ids, rec.labels, rec.values[..., 0]):
            name = f"{int(i)}.obj" if label is None else f"{int(i)}-{_file_safe(label)}.obj"
            out = mesh / name if mesh_dir else mesh
            try:
                verts, faces = marching_cubes(vol, level, inside_high=rec.meta.get("field") == "occupancy")
            except ValueError as e:
                if len(ids) == 1:
                    raise
                warnings.warn(f"network {int(i)}: {e}; no mesh written", stacklevel=2)
                continue
            written.append(write_mesh(out, verts, faces))
    return rec, written


__all__ = [
    "Reconstruction",
    "decode_grid",
    "marching_cubes",
    "mid_slice",
    "recipe_of",
    "reconstruct",
    "mesh_destination",
    "render_zoo",
    "save_figure",
    "select_positions",
    "signal_of",
    "source_dataset",
    "write_mesh",
]
