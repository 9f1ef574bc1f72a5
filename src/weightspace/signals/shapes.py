"""Procedural 3D shapes as distance or occupancy fields, for fitting 3D INRs.

Twelve classes, each a closed-form signed distance function (Inigo Quilez's primitives),
with per-shape parameters, scale, rotation and translation drawn from a seed. The shape
``j`` of class ``c`` depends only on ``(seed, c, j)``, so asking for more shapes per class
keeps the earlier ones.

Sign convention: SDF < 0 inside, > 0 outside. Values handed to INR fitting lie in [0, 1]:

- ``"sdf"``: truncated SDF, ``0.5 + 0.5 * clip(sdf / truncation, -1, 1)``; the surface is 0.5.
- ``"udf"``: unsigned, ``clip(|sdf| / truncation, 0, 1)``; the surface is 0.
- ``"occupancy"``: ``1`` inside (sdf <= 0), ``0`` outside; the surface is the 0.5 crossing.

Most primitives are exact distances; ``ellipsoid``, ``tri_prism`` and ``cross`` (inside) are
bounds: right sign and zero set, 1-Lipschitz, distance under-estimated away from the surface.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from weightspace.signals.base import SignalSet, grid_coordinates, seeded_split

Field = Literal["sdf", "udf", "occupancy"]
FIELDS: tuple[str, ...] = ("sdf", "udf", "occupancy")


# ---------------------------------------------------------------------- primitives
# Each takes local points p [P, 3] and returns the signed distance [P]; y is "up".
def _len(x: Tensor) -> Tensor:
    return x.norm(dim=-1)


def _relu_len(x: Tensor) -> Tensor:
    return x.clamp_min(0).norm(dim=-1)


def _sphere(p: Tensor, r: float) -> Tensor:
    return _len(p) - r


def _ellipsoid(p: Tensor, radii: Sequence[float]) -> Tensor:
    # (|p / r| - 1) * min(r): exact zero set and sign, 1-Lipschitz; IQ's k0 (k0 - 1) / k1
    # is closer to the true distance far out but is 0 at the centre, so it loses the sign there
    r = p.new_tensor(radii)
    return (_len(p / r) - 1.0) * r.min()


def _box(p: Tensor, half: Sequence[float]) -> Tensor:
    q = p.abs() - p.new_tensor(half)
    return _relu_len(q) + q.amax(dim=-1).clamp_max(0)


def _box_frame(p: Tensor, half: Sequence[float], edge: float) -> Tensor:
    p = p.abs() - p.new_tensor(half)
    q = (p + edge).abs() - edge
    px, py, pz = p.unbind(-1)
    qx, qy, qz = q.unbind(-1)

    def part(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        v = torch.stack([a, b, c], dim=-1)
        return _relu_len(v) + v.amax(dim=-1).clamp_max(0)

    return torch.minimum(torch.minimum(part(px, qy, qz), part(qx, py, qz)), part(qx, qy, pz))


def _torus(p: Tensor, major: float, minor: float) -> Tensor:
    q = torch.stack([_len(p[:, [0, 2]]) - major, p[:, 1]], dim=-1)
    return _len(q) - minor


def _cylinder(p: Tensor, r: float, h: float) -> Tensor:
    d = torch.stack([_len(p[:, [0, 2]]) - r, p[:, 1].abs() - h], dim=-1)
    return d.amax(dim=-1).clamp_max(0) + _relu_len(d)


def _cone(p: Tensor, h: float, r_bottom: float, r_top: float) -> Tensor:
    # IQ's capped cone, axis y from -h (radius r_bottom) to +h (radius r_top).
    qx, qy = _len(p[:, [0, 2]]), p[:, 1]
    k1 = p.new_tensor([r_top, h])
    k2 = p.new_tensor([r_top - r_bottom, 2.0 * h])
    ca = torch.stack([qx - torch.minimum(qx, torch.where(qy < 0, r_bottom, r_top)), qy.abs() - h], dim=-1)
    q = torch.stack([qx, qy], dim=-1)
    t = (((k1 - q) * k2).sum(-1) / (k2 * k2).sum()).clamp(0.0, 1.0)
    cb = q - k1 + k2 * t[:, None]
    s = torch.where((cb[:, 0] < 0) & (ca[:, 1] < 0), -1.0, 1.0)
    return s * torch.minimum((ca * ca).sum(-1), (cb * cb).sum(-1)).sqrt()


def _capsule(p: Tensor, h: float, r: float) -> Tensor:
    p = p.clone()
    p[:, 1] = p[:, 1] - p[:, 1].clamp(-h, h)
    return _len(p) - r


def _octahedron(p: Tensor, s: float) -> Tensor:
    p = p.abs()
    m = p.sum(-1) - s
    x, y, z = p.unbind(-1)
    # rotate the coordinates so that q.x is the axis whose face region the point is in
    q = torch.where(
        (3 * x < m)[:, None],
        p,
        torch.where((3 * y < m)[:, None], torch.stack([y, z, x], -1), torch.stack([z, x, y], -1)),
    )
    k = (0.5 * (q[:, 2] - q[:, 1] + s)).clamp(0.0, s)
    near = _len(torch.stack([q[:, 0], q[:, 1] - s + k, q[:, 2] - k], dim=-1))
    interior = (3 * x >= m) & (3 * y >= m) & (3 * z >= m)
    return torch.where(interior, m * 0.57735027, near)


def _hex_prism(p: Tensor, r: float, h: float) -> Tensor:
    k = p.new_tensor([-0.8660254, 0.5, 0.57735])
    p = p.abs()
    xy = p[:, :2] - 2.0 * (p[:, :2] @ k[:2]).clamp_max(0)[:, None] * k[:2]
    x, y = xy.unbind(-1)
    edge = torch.stack([x - x.clamp(-k[2] * r, k[2] * r), y - r], dim=-1)
    d = torch.stack([_len(edge) * torch.sign(y - r), p[:, 2] - h], dim=-1)
    return d.amax(dim=-1).clamp_max(0) + _relu_len(d)


def _tri_prism(p: Tensor, r: float, h: float) -> Tensor:
    q = p.abs()
    return torch.maximum(q[:, 2] - h, torch.maximum(q[:, 0] * 0.866025 + p[:, 1] * 0.5, -p[:, 1]) - r * 0.5)


def _cross(p: Tensor, arm: float, width: float) -> Tensor:
    # union of three orthogonal bars: min of exact box distances (exact outside, a bound inside)
    bars = [_box(p, [arm if i == a else width for i in range(3)]) for a in range(3)]
    return torch.minimum(torch.minimum(bars[0], bars[1]), bars[2])


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# class name -> (SDF, parameter sampler); every shape fits in a ball of radius 0.7 before posing
_CLASSES: dict[str, tuple[Callable[..., Tensor], Callable[[np.random.Generator], dict[str, Any]]]] = {
    "sphere": (_sphere, lambda g: {"r": _u(g, 0.45, 0.7)}),
    "ellipsoid": (
        _ellipsoid,
        lambda g: {"radii": sorted((_u(g, 0.25, 0.7), _u(g, 0.25, 0.7), _u(g, 0.25, 0.7)))},
    ),
    "box": (_box, lambda g: {"half": [_u(g, 0.2, 0.4) for _ in range(3)]}),
    "box_frame": (
        _box_frame,
        lambda g: {"half": [_u(g, 0.28, 0.4) for _ in range(3)], "edge": _u(g, 0.04, 0.08)},
    ),
    "torus": (_torus, lambda g: {"major": _u(g, 0.35, 0.5), "minor": _u(g, 0.08, 0.18)}),
    "cylinder": (_cylinder, lambda g: {"r": _u(g, 0.2, 0.4), "h": _u(g, 0.25, 0.5)}),
    "cone": (
        _cone,
        lambda g: {"h": _u(g, 0.3, 0.45), "r_bottom": _u(g, 0.3, 0.5), "r_top": _u(g, 0.0, 0.08)},
    ),
    "capsule": (_capsule, lambda g: {"h": _u(g, 0.15, 0.4), "r": _u(g, 0.15, 0.3)}),
    "octahedron": (_octahedron, lambda g: {"s": _u(g, 0.45, 0.7)}),
    "hex_prism": (_hex_prism, lambda g: {"r": _u(g, 0.25, 0.4), "h": _u(g, 0.2, 0.45)}),
    "tri_prism": (_tri_prism, lambda g: {"r": _u(g, 0.4, 0.6), "h": _u(g, 0.15, 0.3)}),
    "cross": (_cross, lambda g: {"arm": _u(g, 0.45, 0.6), "width": _u(g, 0.07, 0.15)}),
}
SHAPE_CLASSES: tuple[str, ...] = tuple(_CLASSES)


@dataclass(frozen=True)
class ProceduralShape:
    """One posed primitive: ``sdf(x) = scale * sdf_local(rotation.T @ (x - translation) / scale)``.

    Uniform scale and a rigid motion keep an exact distance exact.
    """

    cls: str
    params: dict[str, Any]
    rotation: tuple[tuple[float, ...], ...]  # 3x3, proper (det +1)
    scale: float
    translation: tuple[float, float, float]

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance ``[P]`` at ``points`` ``[P, 3]`` (float32, any range)."""
        fn = _CLASSES[self.cls][0]
        rot = points.new_tensor(self.rotation)
        local = (
            (points - points.new_tensor(self.translation)) @ rot / self.scale
        )  # row-vector form of R^T (x - t)
        return fn(local, **self.params) * self.scale


def make_shape(cls: str, seed: int | Sequence[int]) -> ProceduralShape:
    """Shape of class ``cls`` with parameters and pose drawn from ``seed``.

    Scale in [0.75, 1], translation in [-0.1, 0.1]^3, rotation uniform on SO(3): the
    surface stays inside [-0.9, 0.9]^3, so the whole shape lies in the coordinate cube.
    """
    if cls not in _CLASSES:
        raise ValueError(f"unknown shape class {cls!r}; known: {', '.join(SHAPE_CLASSES)}")
    g = np.random.default_rng(seed)
    params = _CLASSES[cls][1](g)
    q, r = np.linalg.qr(g.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))  # Haar-uniform orthogonal matrix
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return ProceduralShape(
        cls,
        params,
        tuple(tuple(float(v) for v in row) for row in q),
        _u(g, 0.75, 1.0),
        tuple(float(v) for v in g.uniform(-0.1, 0.1, 3)),  # type: ignore[arg-type]
    )


def encode_field(sdf: Tensor, field: Field, truncation: float) -> Tensor:
    """Signed distances -> values in [0, 1] for INR fitting (module docstring)."""
    if field == "sdf":
        return 0.5 + 0.5 * (sdf / truncation).clamp(-1.0, 1.0)
    if field == "udf":
        return (sdf.abs() / truncation).clamp(0.0, 1.0)
    if field == "occupancy":
        return (sdf <= 0).to(sdf.dtype)
    raise ValueError(f"unknown field {field!r}; expected one of {FIELDS}")


def field_meta(field: Field, truncation: float, resolution: int) -> dict[str, Any]:
    """How a field's [0, 1] values read back as a surface (recorded in zoo.json)."""
    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}; expected one of {FIELDS}")
    cell = 2.0 / max(resolution - 1, 1)
    # a UDF has no sign change: a level of one grid cell gives a thin closed shell
    level = {"sdf": 0.5, "occupancy": 0.5, "udf": min(0.5, cell / truncation)}[field]
    encoding = {
        "sdf": "0.5 + 0.5 * clip(sdf / truncation, -1, 1); sdf < 0 inside",
        "udf": "clip(|sdf| / truncation, 0, 1)",
        "occupancy": "1 inside (sdf <= 0), 0 outside",
    }[field]
    return {"field": field, "truncation": truncation, "encoding": encoding, "surface_level": level}


def load_shapes(
    n_per_class: int = 50,
    resolution: int = 32,
    field: Field = "sdf",
    *,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    truncation: float = 0.25,
    points: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> SignalSet:
    """Procedural shapes as a `SignalSet` of kind ``"shape"``.

    Values are float32 ``[N, P, 1]`` in [0, 1] with ``N = n_per_class * len(classes)``
    (class-major order). With ``points=None`` they are sampled on the ``resolution^3``
    grid (`grid_coordinates`, axes x, y, z); with ``points=M`` at ``M`` seeded uniform
    points in ``[-1, 1]^3`` shared by every shape. The split is seeded by ``seed``.
    """
    classes = tuple(classes or SHAPE_CLASSES)
    if n_per_class < 1 or resolution < 2:
        raise ValueError(f"need n_per_class >= 1 and resolution >= 2, got {n_per_class}, {resolution}")
    meta = field_meta(field, truncation, resolution)
    if points is None:
        coords, shape, grid = grid_coordinates((resolution,) * 3), (resolution,) * 3 + (1,), True
    else:
        gen = torch.Generator().manual_seed(seed)
        coords, shape, grid = torch.rand(points, 3, generator=gen) * 2 - 1, (points, 1), False
    values, labels = [], []
    for c, name in enumerate(classes):
        if name not in SHAPE_CLASSES:
            raise ValueError(f"unknown shape class {name!r}; known: {', '.join(SHAPE_CLASSES)}")
        for j in range(n_per_class):
            # keyed by the class's global index, so choosing fewer classes keeps each shape
            shape_seed = (seed, SHAPE_CLASSES.index(name), j)
            values.append(encode_field(make_shape(name, shape_seed).sdf(coords), field, truncation))
            labels.append(c)
    n = len(values)
    return SignalSet(
        torch.stack(values)[..., None].contiguous(),
        coords,
        torch.tensor(labels, dtype=torch.int64),
        tuple(seeded_split(n, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)),
        f"shapes:{field}",
        classes,
        "shape",
        shape,
        grid,
        {**meta, "resolution": resolution, "seed": seed},
    )


__all__ = [
    "FIELDS",
    "SHAPE_CLASSES",
    "ProceduralShape",
    "encode_field",
    "field_meta",
    "load_shapes",
    "make_shape",
]
