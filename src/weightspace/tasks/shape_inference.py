"""3D shape inference from a partial observation with functa (Dupont et al. 2022, sec. 4).

A meta-learned modulated SIREN (`tasks.functa`) turns a shape into a latent by a few inner
steps on its field values. Run the same inner loop on the *observed* points only and the
shared network fills in the rest: its prior over shapes is what the meta-learning learnt.
Two kinds of observation of a shape sampled on an ``R^3`` grid:

- ``random:F``: a seeded random fraction ``F`` of the grid points, each with its value
  (the functa paper's "subset of voxels");
- ``view:AXIS`` (``+x``, ``-x``, ``+y``, ``-y``, ``+z``, ``-z``): what a depth camera looking
  along ``AXIS`` sees — along every grid ray, the points from the camera up to and including
  the first one inside the shape; everything behind that surface stays unobserved.

Quality against the full shape: volumetric IoU of the occupancies (inside: the field's value
beyond its surface level) and the symmetric Chamfer distance between the two sets of
boundary voxels (inside voxels with an outside 6-neighbour), in the units of the ``[-1, 1]^3``
cube, as the mean of both directions. The baseline is the training shape whose values agree
best with the observation (least mean squared error on the observed points).

Shapes: values ``[N, P, 1]`` with ``P = R^3`` in grid order (`signals.base.grid_coordinates`),
masks ``[N, P]`` bool, latents ``[N, d]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from weightspace.inr.meta import fit_latents, reconstruct
from weightspace.inr.modulated import ModulatedSiren

AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class Observation:
    """How a shape is observed: ``kind`` ``"random"`` (``fraction`` of the points) or
    ``"view"`` (a depth camera looking along ``axis`` in direction ``sign``)."""

    kind: str
    fraction: float = 1.0
    axis: int = 2
    sign: int = -1

    @classmethod
    def parse(cls, text: str) -> Observation:
        """``random:0.1`` or ``view:+z`` (the camera looks along +z, i.e. sits at z = -1)."""
        kind, _, arg = text.partition(":")
        if kind == "random":
            try:
                f = float(arg)
            except ValueError:
                raise ValueError(f"observation {text!r}: random:F needs a fraction F in (0, 1]") from None
            if not (0.0 < f <= 1.0) or math.isnan(f):
                raise ValueError(f"observation {text!r}: the fraction must lie in (0, 1]")
            return cls("random", fraction=f)
        if kind == "view":
            if len(arg) != 2 or arg[0] not in "+-" or arg[1] not in AXES:
                raise ValueError(f"observation {text!r}: view:AXIS needs AXIS one of +x -x +y -y +z -z")
            return cls("view", axis=AXES[arg[1]], sign=1 if arg[0] == "+" else -1)
        raise ValueError(f"observation {text!r}: expected random:F or view:AXIS (e.g. random:0.1, view:+z)")

    @property
    def name(self) -> str:
        if self.kind == "random":
            return f"random:{self.fraction:g}"
        return f"view:{'+' if self.sign > 0 else '-'}{'xyz'[self.axis]}"


def inside(values: Tensor, level: float, inside_high: bool) -> Tensor:
    """Occupancy ``[N, P]`` bool of field values ``[N, P, 1]`` (or ``[N, P]``): beyond ``level``
    on the inside side (below it for the SDF encoding, above it for occupancy fields)."""
    v = values[..., 0] if values.dim() == 3 else values
    return v > level if inside_high else v < level


def observe(values: Tensor, resolution: int, obs: Observation, *, level: float, inside_high: bool,
            seed: int = 0) -> Tensor:
    """The observed points of each shape: a mask ``[N, P]`` (``P = resolution^3``)."""
    n, p = values.shape[:2]
    if p != resolution**3:
        raise ValueError(f"{p} points per shape are not a {resolution}^3 grid")
    if obs.kind == "random":
        g = torch.Generator().manual_seed(seed)
        k = max(1, round(obs.fraction * p))
        mask = torch.zeros(n, p, dtype=torch.bool)
        for i in range(n):  # a fresh subset per shape, all from one seeded stream
            mask[i, torch.randperm(p, generator=g)[:k]] = True
        return mask
    occ = inside(values, level, inside_high).reshape(n, resolution, resolution, resolution)
    # move the viewing axis last, in the order the camera's rays travel
    occ = occ.movedim(obs.axis + 1, -1)
    if obs.sign < 0:
        occ = occ.flip(-1)
    # a point is seen while no inside point lies before it on its ray; the first inside point is seen
    before = torch.cumsum(occ.int(), dim=-1) - occ.int()
    seen = before == 0
    if obs.sign < 0:
        seen = seen.flip(-1)
    return seen.movedim(-1, obs.axis + 1).reshape(n, p)


def infer_latents(model: ModulatedSiren, coords: Tensor, values: Tensor, mask: Tensor, steps: int,
                  batch_size: int = 64) -> Tensor:
    """Latents ``[N, d]`` fitted by the model's inner loop to the observed values only."""
    dtype = model.weights[0].dtype
    out = []
    for s in range(0, len(values), batch_size):
        z = fit_latents(model, coords.to(dtype), values[s:s + batch_size].to(dtype), steps,
                        mask=mask[s:s + batch_size])
        out.append(z.detach())
    return torch.cat(out) if out else torch.zeros(0, model.latent_dim, dtype=dtype)


def nearest_training_shape(train_values: Tensor, values: Tensor, mask: Tensor) -> Tensor:
    """Index ``[N]`` of the training shape (of ``train_values`` ``[M, P, 1]``) with the least
    mean squared error on each shape's observed points."""
    t, v, m = train_values[..., 0], values[..., 0], mask.to(values.dtype)
    # sum over observed points of (t - v)^2 = m.t^2 - 2 (m v).t + m.v^2, for every pair at once
    sq = m @ t.square().T - 2 * (m * v) @ t.T + (m * v.square()).sum(1, keepdim=True)  # [N, M]
    return (sq / m.sum(1, keepdim=True).clamp_min(1)).argmin(dim=1)


def iou(a: Tensor, b: Tensor) -> Tensor:
    """Volumetric IoU ``[N]`` of occupancies ``[N, P]`` (1 where both are empty)."""
    inter, union = (a & b).sum(1).float(), (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def boundary(occ: Tensor, resolution: int) -> Tensor:
    """Boundary voxels ``[N, P]``: inside, with an outside 6-neighbour (or on the grid's edge)."""
    g = occ.reshape(-1, resolution, resolution, resolution)
    padded = torch.nn.functional.pad(g.float(), (1, 1, 1, 1, 1, 1), value=0.0)
    neighbours_inside = torch.ones_like(g)
    for axis in (1, 2, 3):
        for shift in (-1, 1):
            rolled = padded.roll(shift, dims=axis)[:, 1:-1, 1:-1, 1:-1] > 0
            neighbours_inside &= rolled
    return (g & ~neighbours_inside).reshape(len(occ), -1)


def chamfer(a: Tensor, b: Tensor, coords: Tensor, resolution: int) -> Tensor:
    """Symmetric Chamfer distance ``[N]`` between the boundary voxels of occupancies ``a`` and
    ``b`` ``[N, P]``: the mean over both directions of the mean distance to the nearest point
    of the other set (cube units; NaN where either shape is empty)."""
    ba, bb = boundary(a, resolution), boundary(b, resolution)
    out = []
    for ma, mb in zip(ba, bb):
        pa, pb = coords[ma], coords[mb]
        if len(pa) == 0 or len(pb) == 0:
            out.append(float("nan"))
            continue
        d = torch.cdist(pa, pb)
        out.append(0.5 * float(d.min(1).values.mean() + d.min(0).values.mean()))
    return torch.tensor(out)


@dataclass
class InferenceResult:
    """Per test shape: IoU and Chamfer of the functa inference and of the nearest training
    shape, the fraction of points observed; the reconstructions for figures."""

    observation: str
    steps: int
    observed: Tensor  # [N] fraction of the grid observed
    iou: Tensor  # [N]
    chamfer: Tensor  # [N]
    baseline_iou: Tensor  # [N]
    baseline_chamfer: Tensor  # [N]
    reconstruction: Tensor  # [N, P, 1]
    baseline: Tensor  # [N, P, 1]
    mask: Tensor  # [N, P]

    def summary(self) -> dict[str, float | str | int]:
        def mean(t: Tensor) -> float:
            return float(np.nanmean(t.numpy())) if len(t) else float("nan")

        return {"observation": self.observation, "inner_steps": self.steps, "shapes": len(self.iou),
                "observed": mean(self.observed), "functa_iou": mean(self.iou), "functa_chamfer": mean(self.chamfer),
                "nearest_iou": mean(self.baseline_iou), "nearest_chamfer": mean(self.baseline_chamfer)}


def infer_shapes(model: ModulatedSiren, coords: Tensor, values: Tensor, train_values: Tensor, obs: Observation, *,
                 resolution: int, level: float, inside_high: bool, steps: int = 3, seed: int = 0) -> InferenceResult:
    """Observe each shape of ``values`` ``[N, P, 1]``, infer it with functa and with the nearest
    of ``train_values``, and score both against the full shape."""
    if values.dim() != 3 or values.shape[1] != coords.shape[0] or values.shape[2] != 1:
        raise ValueError(f"values must be [N, {coords.shape[0]}, 1], got {tuple(values.shape)}")
    mask = observe(values, resolution, obs, level=level, inside_high=inside_high, seed=seed)
    z = infer_latents(model, coords, values, mask, steps)
    rec = reconstruct(model, z, coords.to(z.dtype)).to(values.dtype)
    near = train_values[nearest_training_shape(train_values, values, mask)]
    truth = inside(values, level, inside_high)
    occ, occ_near = inside(rec, level, inside_high), inside(near, level, inside_high)
    return InferenceResult(
        observation=obs.name, steps=steps, observed=mask.float().mean(1),
        iou=iou(occ, truth), chamfer=chamfer(occ, truth, coords, resolution),
        baseline_iou=iou(occ_near, truth), baseline_chamfer=chamfer(occ_near, truth, coords, resolution),
        reconstruction=rec, baseline=near, mask=mask,
    )


def plot_inference(values: Tensor, result: InferenceResult, resolution: int, path, *, level: float, inside_high: bool,
                   labels: list | None = None, count: int = 6, indices: list[int] | None = None):
    """Rows: full shape, observed points, functa inference, nearest training shape; each a
    depth-shaded projection of the occupancy along z, titled with IoU. Columns: ``indices``
    (positions in ``values``), or the first ``count`` shapes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(indices) if indices is not None else list(range(min(count, len(values))))
    n = len(cols)
    r = resolution

    def depth(occ: Tensor) -> np.ndarray:
        g = occ.reshape(r, r, r).numpy()
        hit = g.any(-1)
        first = np.where(hit, g.argmax(-1), r)  # nearest inside voxel along +z
        return np.where(hit, 1.0 - first / r, np.nan).T

    rows = [("full shape", lambda i: depth(inside(values[i:i + 1], level, inside_high)[0]), None),
            (f"observed ({result.observation})", lambda i: depth(result.mask[i] & inside(values[i:i + 1], level, inside_high)[0]),
             result.observed),
            (f"functa ({result.steps} inner steps)", lambda i: depth(inside(result.reconstruction[i:i + 1], level, inside_high)[0]),
             result.iou),
            ("nearest training shape", lambda i: depth(inside(result.baseline[i:i + 1], level, inside_high)[0]),
             result.baseline_iou)]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.8 * n, 1.9 * len(rows)), squeeze=False)
    for row, (name, img, score) in enumerate(rows):
        for col, i in enumerate(cols):
            ax = axes[row, col]
            ax.imshow(img(i), cmap="viridis", vmin=0, vmax=1, origin="lower")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0 and labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
            elif score is not None:
                what = "seen" if row == 1 else "IoU"
                ax.set_title(f"{what} {float(score[i]):.2f}", fontsize=8)
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["Observation", "InferenceResult", "boundary", "chamfer", "infer_latents", "infer_shapes", "inside", "iou",
           "nearest_training_shape", "observe", "plot_inference"]
