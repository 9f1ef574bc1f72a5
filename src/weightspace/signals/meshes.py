"""Triangle meshes as distance or occupancy fields (for users who have meshes).

trimesh (optional extra ``weightspace[shapes]``) only reads the files and gives vertices
and faces; distances and inside/outside are computed here in torch, so no spatial-index
packages are needed:

- unsigned distance: the minimum over triangles of the exact point-triangle distance;
- sign: the generalised winding number (sum of the solid angles the triangles subtend,
  divided by 4 pi) is ~1 inside a closed mesh and ~0 outside; it degrades gracefully on
  meshes with small holes, unlike ray parity.

Fields are encoded into [0, 1] exactly as for the procedural shapes (`encode_field`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightspace.signals.base import SignalSet, grid_coordinates, seeded_split
from weightspace.signals.shapes import Field, encode_field, field_meta

MESH_SUFFIXES = frozenset({".obj", ".stl", ".ply", ".off", ".glb", ".gltf"})
_PAIR_BUDGET = 1 << 20  # point-triangle pairs per chunk: bounds memory at ~100 MB of temporaries


def _require_trimesh():
    try:
        import trimesh
    except ImportError:
        raise ImportError(
            "reading meshes needs trimesh, an optional extra: "
            "pip install 'weightspace[shapes]' (or pip install trimesh)"
        ) from None
    return trimesh


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


class _Triangles:
    """Per-triangle constants, so that every point-triangle quantity below is an affine
    function of the point plus ``|p|^2``: one matmul per quantity instead of [P, F, 3]
    temporaries (float64 keeps the expanded distance forms accurate near the surface)."""

    def __init__(self, vertices: Tensor, faces: Tensor, dtype: torch.dtype = torch.float64) -> None:
        tri = vertices.to(dtype)[faces.long()]  # [F, 3, 3]
        self.a, self.b, self.c = tri[:, 0], tri[:, 1], tri[:, 2]
        self.edges = [(self.a, self.b - self.a), (self.b, self.c - self.b), (self.c, self.a - self.c)]
        self.nor = torch.cross(self.b - self.a, self.a - self.c, dim=-1)
        # sum of cross products: det(a-p, b-p, c-p) = det(a, b, c) - p . (b x c + c x a + a x b)
        self.cross_sum = (
            torch.cross(self.b, self.c, dim=-1)
            + torch.cross(self.c, self.a, dim=-1)
            + torch.cross(self.a, self.b, dim=-1)
        )
        self.det = _dot(self.a, torch.cross(self.b, self.c, dim=-1))

    @staticmethod
    def _affine(p: Tensor, w: Tensor, v: Tensor) -> Tensor:
        """``(p - v) . w`` for every point and triangle: ``[P, F]``."""
        return p @ w.T - _dot(v, w)

    def sq_distance(self, p: Tensor, p2: Tensor) -> Tensor:
        """Squared point-triangle distance ``[P, F]`` (IQ's udTriangle): to the plane when the
        point projects inside the triangle, else to the nearest edge."""
        inside = torch.zeros((), dtype=p.dtype)
        to_edges = None
        for v, e in self.edges:
            inside = inside + torch.sign(self._affine(p, torch.cross(e, self.nor, dim=-1), v))
            s = self._affine(p, e, v)  # e . (p - v)
            ee = _dot(e, e).clamp_min(1e-30)
            t = (s / ee).clamp(0.0, 1.0)
            q2 = p2 - 2 * p @ v.T + _dot(v, v)  # |p - v|^2
            d = (q2 - 2 * t * s + t * t * ee).clamp_min(0.0)
            to_edges = d if to_edges is None else torch.minimum(to_edges, d)
        to_plane = self._affine(p, self.nor, self.a).square() / _dot(self.nor, self.nor).clamp_min(1e-30)
        assert to_edges is not None
        return torch.where(inside < 2.0, to_edges, to_plane)

    def winding(self, p: Tensor, p2: Tensor) -> Tensor:
        """Generalised winding number ``[P]``: sum of signed solid angles / 4 pi
        (Van Oosterom & Strackee: tan(omega / 2) = det / (|x||y||z| + (x.y)|z| + (y.z)|x| + (z.x)|y|))."""

        def length(v: Tensor) -> Tensor:
            return (p2 - 2 * p @ v.T + _dot(v, v)).clamp_min(0.0).sqrt()

        def inner(u: Tensor, v: Tensor) -> Tensor:  # (u - p) . (v - p)
            return _dot(u, v) - p @ (u + v).T + p2

        la, lb, lc = length(self.a), length(self.b), length(self.c)
        det = self.det - p @ self.cross_sum.T
        den = (
            la * lb * lc
            + inner(self.a, self.b) * lc
            + inner(self.b, self.c) * la
            + inner(self.c, self.a) * lb
        )
        return (2.0 * torch.atan2(det, den)).sum(dim=1) / (4 * math.pi)


def mesh_sdf(vertices: Tensor, faces: Tensor, points: Tensor, *, band: float | None = None) -> Tensor:
    """Signed distance ``[P]`` (negative inside) from ``points`` ``[P, 3]`` to a closed mesh.

    vertices: float ``[V, 3]``; faces: int ``[F, 3]`` (orientation does not matter: the
    sign comes from the magnitude of the winding number). Cost is O(P F).

    band: if given, exact distances are computed only where they can be below ``band``;
    farther points get a lower bound that is itself above ``band`` (all a truncated field
    needs). The bound is distance to the nearest vertex minus the longest edge.
    """
    points = points.to(torch.float32)
    faces = faces.long()
    # the sign needs only ~0.5 accuracy of the winding number: float32 is enough and 2x faster
    wind_tris = _Triangles(vertices, faces, torch.float32)
    step = max(1, _PAIR_BUDGET // max(len(faces), 1))
    inside = torch.cat([wind_tris.winding(p, _dot(p, p)[:, None]).abs() > 0.5 for p in points.split(step)])
    dist = torch.empty(len(points), dtype=torch.float64)
    exact = torch.ones(len(points), dtype=torch.bool)
    if band is not None:
        v = vertices.to(torch.float64)
        edges = v[faces[:, [1, 2, 0]]] - v[faces]
        lower = torch.cdist(points.to(torch.float64), v).amin(dim=1) - edges.norm(dim=-1).max()
        exact = lower <= band
        dist[~exact] = lower[~exact]
    tris = _Triangles(vertices, faces, torch.float64)
    sel = exact.nonzero().flatten()
    for idx in sel.split(step):
        p = points[idx].to(torch.float64)
        dist[idx] = tris.sq_distance(p, _dot(p, p)[:, None]).amin(dim=1).sqrt()
    return torch.where(inside, -dist, dist).to(torch.float32)


def normalise_mesh(vertices: Tensor, radius: float = 0.9) -> Tensor:
    """Centre the bounding box at 0 and scale so the farthest vertex lies at ``radius``."""
    v = vertices.to(torch.float64)
    v = v - (v.amax(dim=0) + v.amin(dim=0)) / 2
    return (v * (radius / v.norm(dim=1).max().clamp_min(1e-12))).to(vertices.dtype)


def read_mesh(path: str | os.PathLike[str]) -> tuple[Tensor, Tensor]:
    """Vertices float32 ``[V, 3]`` and faces int64 ``[F, 3]`` of a mesh file (via trimesh)."""
    trimesh = _require_trimesh()
    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as e:  # trimesh raises many types for foreign or damaged files
        raise ValueError(f"{path}: cannot read mesh ({e})") from e
    if len(mesh.faces) == 0:
        raise ValueError(f"{path}: mesh has no faces")
    return torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32), torch.as_tensor(
        np.asarray(mesh.faces), dtype=torch.int64
    )


def load_meshes(
    root: str | os.PathLike[str],
    resolution: int = 32,
    field: Field = "sdf",
    *,
    seed: int = 0,
    truncation: float = 0.25,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> SignalSet:
    """Meshes under ``root/<class>/*.{obj,stl,ply,off,glb,gltf}`` as a `SignalSet` of kind ``"shape"``.

    Each mesh is normalised (`normalise_mesh`) and its field sampled on the
    ``resolution^3`` grid: values ``[N, resolution^3, 1]`` in [0, 1]. Classes are the
    sorted sub-folder names; ``limit`` keeps at most that many meshes per class.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = []
    for label, cls in enumerate(classes):
        found = [
            f for f in sorted((root / cls).iterdir()) if f.is_file() and f.suffix.lower() in MESH_SUFFIXES
        ]
        files += [(f, label) for f in found[:limit]]
    if not files:
        raise ValueError(f"{root}: no meshes in class sub-folders (suffixes {sorted(MESH_SUFFIXES)})")
    coords = grid_coordinates((resolution,) * 3)
    values = []
    for f, _ in files:
        v, faces = read_mesh(f)
        values.append(
            encode_field(mesh_sdf(normalise_mesh(v), faces, coords, band=truncation), field, truncation)
        )
    meta: dict[str, Any] = {
        **field_meta(field, truncation, resolution),
        "resolution": resolution,
        "normalised_radius": 0.9,
    }
    return SignalSet(
        torch.stack(values)[..., None].contiguous(),
        coords,
        torch.tensor([lb for _, lb in files], dtype=torch.int64),
        tuple(seeded_split(len(files), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)),
        f"meshes:{root.resolve()}",
        classes,
        "shape",
        (resolution,) * 3 + (1,),
        True,
        meta,
    )


def is_mesh_folder(root: str | os.PathLike[str]) -> bool:
    """True if some class sub-folder of ``root`` holds a mesh file."""
    root = Path(root)
    return root.is_dir() and any(
        f.suffix.lower() in MESH_SUFFIXES for d in root.iterdir() if d.is_dir() for f in d.iterdir()
    )


__all__ = ["MESH_SUFFIXES", "is_mesh_folder", "load_meshes", "mesh_sdf", "normalise_mesh", "read_mesh"]
