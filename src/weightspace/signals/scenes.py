"""Procedural multi-view scenes for NeRFs, generated on the fly (nothing is downloaded).

A scene holds 1 to 3 coloured primitives (spheres and boxes; the class is the number of
objects) in the cube ``[-0.7, 0.7]^3``, drawn from ``(seed, class, index)``. Its radiance field
is a soft solid — density ``sigma_max * sigmoid(-sdf / edge)`` of the union's signed distance,
the colour of the nearest primitive, Lambert-shaded by a fixed light — rendered by the same volume renderer the NeRFs use
(`inr.nerf`), with four times the samples per ray, from known cameras: ``views`` training
views on an orbit at 25 degrees elevation and ``test_views`` held-out views between them at
40 degrees. Images are ``size x size`` RGB on a white background.

A `SceneSet` plays the part of a signal dataset for `inr.meta` (``coordinates()`` are the
training views' rays ``[V * size^2, 6]``, ``targets()`` their colours ``[N, V * size^2, 3]``).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightspace.inr.nerf import RenderConfig, look_at_rays, orbit, render
from weightspace.signals.base import seeded_split

CLASSES = ("1 object", "2 objects", "3 objects")
SIGMA_MAX, EDGE = 30.0, 0.03


@dataclass(frozen=True)
class Primitive:
    kind: str  # "sphere" or "box"
    centre: tuple[float, float, float]
    size: float  # radius, or half-width of the box
    colour: tuple[float, float, float]

    def sdf(self, p: Tensor) -> Tensor:
        q = p - p.new_tensor(self.centre)
        if self.kind == "sphere":
            return q.norm(dim=-1) - self.size
        d = q.abs() - self.size
        return d.clamp_min(0).norm(dim=-1) + d.amax(dim=-1).clamp_max(0)


def scene_primitives(seed: int, label: int, index: int) -> list[Primitive]:
    """The primitives of scene ``index`` of class ``label`` (``label + 1`` objects)."""
    rng = np.random.default_rng([seed, label, index])
    out = []
    for _ in range(label + 1):
        hue = rng.uniform()
        out.append(Primitive(kind=str(rng.choice(["sphere", "box"])), centre=tuple(rng.uniform(-0.45, 0.45, 3)),
                             size=float(rng.uniform(0.2, 0.35)), colour=colorsys.hsv_to_rgb(hue, 0.75, 0.9)))
    return out


LIGHT = (0.4, 0.8, 0.45)  # direction towards the light; shading is fixed in the scene, not view-dependent


def scene_field(primitives: list[Primitive]):
    """The radiance field of a scene: points ``[N, 3]`` -> (rgb ``[N, 3]``, sigma ``[N]``). Colour:
    the nearest primitive's, Lambert-shaded (ambient 0.45) by the union's normal (central
    differences of its distance), so that views show the shapes in 3D."""
    colours = torch.tensor([p.colour for p in primitives], dtype=torch.float32)
    light = torch.tensor(LIGHT) / torch.tensor(LIGHT).norm()

    def union(points: Tensor) -> tuple[Tensor, Tensor]:
        return torch.stack([p.sdf(points) for p in primitives], dim=-1).min(dim=-1)

    def f(points: Tensor) -> tuple[Tensor, Tensor]:
        nearest, which = union(points)
        eps = 1e-2
        grad = torch.stack([union(points + eps * e)[0] - union(points - eps * e)[0] for e in torch.eye(3)], dim=-1)
        normal = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        shade = 0.45 + 0.55 * (normal @ light).clamp_min(0)
        return colours[which] * shade[:, None], SIGMA_MAX * torch.sigmoid(-nearest / EDGE)

    return f


@dataclass(frozen=True, eq=False)
class SceneSet:
    """Scenes seen from known cameras.

    rays ``[V * S^2, 6]`` / values ``[N, V * S^2, 3]``: the training views (shared cameras);
    test_rays / test_values: the held-out views; labels ``[N]`` (objects - 1); split: N
    names; size S; views V; test_views; render: the renderer settings the NeRFs use."""

    rays: Tensor
    values: Tensor
    test_rays: Tensor
    test_values: Tensor
    labels: Tensor
    split: tuple[str, ...]
    size: int
    views: int
    test_views: int
    render: RenderConfig
    name: str = "scenes"
    classes: tuple[str, ...] = CLASSES
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def coordinates(self) -> Tensor:
        return self.rays

    def targets(self) -> Tensor:
        return self.values

    def view_rays(self, views: list[int] | tuple[int, ...]) -> Tensor:
        """Indices of the training rays of ``views`` (camera numbers ``0 .. V-1``)."""
        if any(not 0 <= v < self.views for v in views):
            raise ValueError(f"views must lie in 0..{self.views - 1}, got {list(views)}")
        per = self.size * self.size
        return torch.cat([torch.arange(v * per, (v + 1) * per) for v in views])

    def images(self, values: Tensor, views: int) -> Tensor:
        """Colours ``[N, views * S^2, 3]`` as images ``[N, views, S, S, 3]``."""
        return values.reshape(values.shape[0], views, self.size, self.size, 3)

    def subset(self, mask: np.ndarray) -> SceneSet:
        idx = torch.as_tensor(np.flatnonzero(mask))
        return replace(self, values=self.values[idx], test_values=self.test_values[idx], labels=self.labels[idx],
                       split=tuple(np.asarray(self.split)[idx.numpy()]))


def cameras(size: int, views: int, test_views: int) -> tuple[Tensor, Tensor]:
    """Rays of the training cameras (an orbit at 25 degrees) and of the held-out ones (40
    degrees, azimuths between): ``[views * size^2, 6]``, ``[test_views * size^2, 6]``."""
    return (look_at_rays(orbit(views), size),
            look_at_rays(orbit(test_views, elevation=40.0, offset=180.0 / test_views), size))


def load_scenes(n_per_class: int = 40, *, size: int = 24, views: int = 8, test_views: int = 4, seed: int = 0,
                config: RenderConfig = RenderConfig()) -> SceneSet:
    """``n_per_class`` scenes of each class (1, 2, 3 objects), rendered from the training and
    held-out cameras; seeded split 70 / 10 / 20."""
    if n_per_class < 1 or size < 2 or views < 1 or test_views < 1:
        raise ValueError("need n_per_class, views, test_views >= 1 and size >= 2")
    rays, test_rays = cameras(size, views, test_views)
    truth = replace(config, samples=4 * config.samples)
    values, test_values, labels = [], [], []
    for label in range(len(CLASSES)):
        for j in range(n_per_class):
            f = scene_field(scene_primitives(seed, label, j))
            values.append(render(f, rays, truth))
            test_values.append(render(f, test_rays, truth))
            labels.append(label)
    n = len(labels)
    split = seeded_split(n, seed=seed, val_fraction=0.1, test_fraction=0.2)
    return SceneSet(rays, torch.stack(values).clamp(0, 1), test_rays, torch.stack(test_values).clamp(0, 1),
                    torch.tensor(labels), tuple(split), size, views, test_views, config,
                    meta={"sigma_max": SIGMA_MAX, "edge": EDGE, "fov": 40.0, "radius": 3.0,
                          "truth_samples": truth.samples, "per_class": n_per_class, "seed": seed})


__all__ = ["CLASSES", "Primitive", "SceneSet", "cameras", "load_scenes", "scene_field", "scene_primitives"]
