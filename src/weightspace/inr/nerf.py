"""A small differentiable volume renderer and the cameras it renders from.

Rays: a pinhole camera at ``position`` looking at the origin (up = +y), ``size x size``
pixels through their centres, field of view ``fov`` degrees; a ray is ``[6]`` = origin and
unit direction. Rendering (Mildenhall et al. 2020, eq. 3, with deterministic stratified
samples): ``S`` points at the bin midpoints of ``[near, far]`` along each ray, a field gives
colour ``c_i`` and density ``sigma_i`` there, and

    alpha_i = 1 - exp(-sigma_i * delta),   T_i = prod_{j<i} (1 - alpha_j),
    C = sum_i T_i alpha_i c_i + (1 - sum_i T_i alpha_i) * background.

`render` takes any field ``[..., 3] -> (rgb [..., 3] in [0, 1], sigma [...] >= 0)``;
`NerfDecode` is the field of a modulated SIREN (`inr.modulated`) with 4 outputs: rgb by a
sigmoid, density by a softplus, positions scaled by ``1 / extent`` into the network's
``[-1, 1]`` domain. It is a `weightspace.inr.meta` decode, so functa's meta-learning fits
NeRFs unchanged (`tasks.nerf_functa`).

Shapes: rays ``[R, 6]``, colours ``[B, R, 3]``, latents ``[B, d]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Field = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class RenderConfig:
    """near / far: the ray interval; samples: points per ray; background: grey level behind
    everything; extent: half-width of the cube the scene lies in (network input scale)."""

    near: float = 1.5
    far: float = 4.5
    samples: int = 32
    background: float = 1.0
    extent: float = 1.5

    def to_dict(self) -> dict:
        return asdict(self)


def look_at_rays(positions: Tensor, size: int, fov: float = 40.0) -> Tensor:
    """Rays ``[V * size * size, 6]`` of cameras at ``positions`` ``[V, 3]`` looking at the origin,
    view-major then row-major (pixel (r, c) of view v is ray ``v * size^2 + r * size + c``)."""
    rays = []
    half = math.tan(math.radians(fov) / 2)
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    v, u = torch.meshgrid(-lin, lin, indexing="ij")  # image rows go down, so v decreases
    for pos in positions.float():
        forward = -pos / pos.norm()
        up = torch.tensor([0.0, 1.0, 0.0])
        if torch.abs(forward @ up) > 0.999:  # looking straight up or down: another up vector
            up = torch.tensor([0.0, 0.0, 1.0])
        right = torch.linalg.cross(forward, up)
        right = right / right.norm()
        true_up = torch.linalg.cross(right, forward)
        d = forward + half * (u[..., None] * right + v[..., None] * true_up)
        d = d / d.norm(dim=-1, keepdim=True)
        rays.append(torch.cat([pos.expand(size * size, 3), d.reshape(-1, 3)], dim=1))
    return torch.cat(rays)


def orbit(count: int, radius: float = 3.0, elevation: float = 25.0, offset: float = 0.0) -> Tensor:
    """``count`` camera positions ``[count, 3]`` evenly around the y axis at ``elevation``
    degrees, starting at azimuth ``offset`` degrees."""
    az = torch.deg2rad(torch.arange(count, dtype=torch.float32) * 360.0 / count + offset)
    el = math.radians(elevation)
    return torch.stack([radius * math.cos(el) * torch.sin(az), torch.full_like(az, radius * math.sin(el)),
                        radius * math.cos(el) * torch.cos(az)], dim=1)


def sample_points(rays: Tensor, config: RenderConfig) -> tuple[Tensor, float]:
    """Points ``[R, S, 3]`` at the bin midpoints along each ray, and the bin length."""
    s = config.samples
    delta = (config.far - config.near) / s
    t = config.near + delta * (torch.arange(s, dtype=rays.dtype, device=rays.device) + 0.5)
    return rays[:, None, :3] + t[None, :, None] * rays[:, None, 3:], delta


def composite(rgb: Tensor, sigma: Tensor, delta: float, background: float) -> Tensor:
    """Colours ``[..., 3]`` of rays from samples ``rgb [..., S, 3]``, ``sigma [..., S]``."""
    alpha = 1 - torch.exp(-sigma * delta)
    # transmittance before each sample: an exclusive cumulative product
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1] + 1e-10], dim=-1), dim=-1)
    w = alpha * trans
    return (w[..., None] * rgb).sum(dim=-2) + (1 - w.sum(dim=-1, keepdim=True)) * background


def render(field: Field, rays: Tensor, config: RenderConfig) -> Tensor:
    """Colours ``[R, 3]`` of ``rays`` ``[R, 6]`` through ``field`` (points ``[N, 3]`` -> (rgb, sigma))."""
    pts, delta = sample_points(rays, config)
    rgb, sigma = field(pts.reshape(-1, 3))
    return composite(rgb.reshape(*pts.shape[:2], 3), sigma.reshape(pts.shape[:2]), delta, config.background)


class NerfDecode:
    """A `weightspace.inr.meta` decode: latents ``[B, d]`` and rays ``[R, 6]`` -> colours
    ``[B, R, 3]`` rendered through the modulated SIREN's field (4 outputs: rgb, density)."""

    def __init__(self, config: RenderConfig = RenderConfig()) -> None:
        self.config = config

    def field(self, model, z: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """(rgb ``[B, N, 3]``, sigma ``[B, N]``) of the scenes ``z`` at ``points`` ``[N, 3]``."""
        out = model(z, points / self.config.extent)
        return torch.sigmoid(out[..., :3]), F.softplus(out[..., 3] - 1.0)

    def __call__(self, model, z: Tensor, rays: Tensor) -> Tensor:
        if rays.dim() != 2 or rays.shape[1] != 6:
            raise ValueError(f"rays must be [R, 6] (origin, direction), got {tuple(rays.shape)}")
        if model.config.in_features != 3 or model.config.out_features != 4:
            raise ValueError("a NeRF field maps 3 coordinates to 4 values (rgb, density); this model maps "
                             f"{model.config.in_features} -> {model.config.out_features}")
        pts, delta = sample_points(rays, self.config)
        rgb, sigma = self.field(model, z, pts.reshape(-1, 3))
        b = z.shape[0]
        return composite(rgb.reshape(b, *pts.shape[:2], 3), sigma.reshape(b, *pts.shape[:2]), delta,
                         self.config.background)


__all__ = ["NerfDecode", "RenderConfig", "composite", "look_at_rays", "orbit", "render", "sample_points"]
