"""NeRF functa (Dupont et al. 2022, sec. 4): a shared modulated NeRF, one latent per scene.

The meta-learning of functa (`inr.meta`) with volume rendering as its decode (`inr.nerf`):
a modulated SIREN field (3 -> rgb + density) is meta-learned on the training views of the
training scenes (`signals.scenes`), each outer step on a random subset of the rays. Then:

- novel-view synthesis (`novel_views`): a held-out scene's latent is fitted by the inner loop
  on the rays of ``k`` of its training views only (k = 0: the zero latent, the network's
  prior), and its held-out views are rendered and scored by PSNR against the truth;
- generation (`sample_scenes`): a DDPM over the training scenes' latents
  (`tasks.latent_diffusion`), its samples rendered from the held-out cameras.

With ``appearance_dim`` > 0 (not the paper's model: NeRF functa with an appearance code) a
few latent entries shift the colour outputs directly with their own, larger inner rates:
as published, the shared field's colour stays grey at CPU budgets (BENCHMARKS.md nerf_functa).

Shapes: rays ``[R, 6]``, colours ``[N, R, 3]``, latents ``[N, d]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from weightspace.inr.meta import MetaConfig, MetaHistory, encode, meta_train, reconstruct
from weightspace.inr.modulated import ModulatedSiren, ModulatedSirenConfig, psnr
from weightspace.inr.nerf import NerfDecode
from weightspace.signals.scenes import SceneSet
from weightspace.tasks.latent_diffusion import train_latent_diffusion
from weightspace.train import TrainConfig


@dataclass
class NerfFunctaResult:
    model: ModulatedSiren
    history: MetaHistory
    decode: NerfDecode


def fit_nerf_functa(scenes: SceneSet, *, hidden: Sequence[int] = (64, 64, 64), latent_dim: int = 64,
                    omega: float = 30.0, meta: MetaConfig | None = None, seed: int = 0, appearance_dim: int = 0,
                    device: str | torch.device = "cpu") -> NerfFunctaResult:
    """Meta-learn a modulated NeRF on the training views of ``scenes``' training split.

    ``appearance_dim`` > 0: the last entries of the latent are an appearance code that shifts
    the colour outputs (`ModulatedSirenConfig.appearance_dim`; its density row starts at zero,
    so the code starts as colour only). 0 is NeRF functa as published."""
    meta = meta or MetaConfig(points_per_step=256)
    train = np.asarray(scenes.split) == "train"
    if not train.any():
        raise ValueError(f"{scenes.name}: no training scenes")
    config = ModulatedSirenConfig(3, 4, tuple(hidden), latent_dim, omega, seed=seed, appearance_dim=appearance_dim)
    model = ModulatedSiren(config)
    if appearance_dim:
        with torch.no_grad():
            model.output_map.weight[3] = 0.0  # output 3 is the density: the code starts as colour only
    model = model.to(device)
    decode = NerfDecode(scenes.render)
    history = meta_train(model, scenes.rays, scenes.values[torch.as_tensor(train)], meta, decode=decode)
    return NerfFunctaResult(model, history, decode)


def fit_views(model: ModulatedSiren, decode: NerfDecode, scenes: SceneSet, views: Sequence[int], steps: int,
              batch_size: int = 16) -> Tensor:
    """Latents ``[N, d]`` fitted by the inner loop on the rays of training ``views`` only
    (none: the zero latent)."""
    if not views:
        return torch.zeros(len(scenes), model.latent_dim)
    idx = scenes.view_rays(list(views))
    return encode(model, scenes.values[:, idx], steps, coords=scenes.rays[idx], batch_size=batch_size, decode=decode)


def render_views(model: ModulatedSiren, decode: NerfDecode, latents: Tensor, rays: Tensor,
                 batch_size: int = 8) -> Tensor:
    """Colours ``[N, R, 3]`` of ``rays`` for every latent."""
    return reconstruct(model, latents, rays, batch_size=batch_size, decode=decode)


def object_chroma(colours: Tensor, truth: Tensor, background: float = 1.0, tolerance: float = 0.05) -> float:
    """Mean chroma (max minus min channel) of ``colours`` ``[N, R, 3]`` over the pixels where
    ``truth`` ``[N, R, 3]`` shows an object (some channel below ``background - tolerance``).
    PSNR alone does not tell a grey silhouette from the coloured object; this does (the truth's
    own value is the target)."""
    obj = (truth < background - tolerance).any(dim=-1)
    if not obj.any():
        raise ValueError("no object pixels in the truth: nothing to measure chroma on")
    chroma = colours.amax(dim=-1) - colours.amin(dim=-1)
    return float(chroma[obj].mean())


def novel_views(model: ModulatedSiren, decode: NerfDecode, scenes: SceneSet, view_sets: Sequence[Sequence[int]],
                steps: int = 3) -> list[dict]:
    """For each set of observed training views: PSNR (dB) of the held-out views rendered from
    the latent fitted on them, and of the observed views themselves (means over scenes); the
    object chroma of the held-out renders (`object_chroma`)."""
    rows = []
    for views in view_sets:
        z = fit_views(model, decode, scenes, views, steps)
        rendered = render_views(model, decode, z, scenes.test_rays)
        held_out = psnr(rendered, scenes.test_values)
        row = {"views": len(views), "observed_views": list(views), "inner_steps": steps,
               "psnr_held_out": float(held_out.mean()), "psnr_held_out_per_scene": held_out.tolist(),
               "chroma_held_out": object_chroma(rendered, scenes.test_values, decode.config.background)}
        if views:
            idx = scenes.view_rays(list(views))
            row["psnr_observed"] = float(psnr(render_views(model, decode, z, scenes.rays[idx]),
                                              scenes.values[:, idx]).mean())
        rows.append(row)
    return rows


@dataclass
class SceneSamples:
    latents: Tensor  # [S, d]
    views: Tensor  # [S, R, 3] colours from the held-out cameras


def sample_scenes(model: ModulatedSiren, decode: NerfDecode, train_latents: Tensor, rays: Tensor, n: int, *,
                  seed: int = 0, config: TrainConfig | None = None) -> SceneSamples:
    """Train a DDPM on ``train_latents``, draw ``n`` latents, render them along ``rays``."""
    config = config or TrainConfig(epochs=300, batch_size=64, lr=1e-3, weight_decay=0.0, progress=False)
    diffusion = train_latent_diffusion(train_latents, None, config=TrainConfig(**{**config.__dict__, "seed": seed}))
    latents = diffusion.model.sample(n, generator=torch.Generator().manual_seed(seed))
    return SceneSamples(latents, render_views(model, decode, latents, rays))


def plot_scene_rows(rows: list[tuple[str, Tensor]], size: int, path) -> object:
    """A figure with one row per entry: (label, colours ``[V * size^2, 3]``) shown as V images."""
    from weightspace.plots import plot_image_rows

    return plot_image_rows([(name, v.reshape(-1, size, size, 3)) for name, v in rows], path)


def plot_novel_views(model: ModulatedSiren, decode: NerfDecode, scenes: SceneSet, path, *, steps: int = 3,
                     count: int = 3, view_sets: Sequence[Sequence[int]] = ((0,), (0, 1, 2, 3, 4, 5, 6, 7))) -> object:
    """For ``count`` scenes: the held-out views' truth, then their renders from latents fitted
    on each of ``view_sets``."""
    rows = []
    for i in range(min(count, len(scenes))):
        one = scenes.subset(np.arange(len(scenes)) == i)
        rows.append((f"scene {i}: truth", one.test_values[0]))
        for views in view_sets:
            z = fit_views(model, decode, one, views, steps)
            rows.append((f"from {len(views)} view{'s' if len(views) != 1 else ''}",
                         render_views(model, decode, z, one.test_rays)[0]))
    return plot_scene_rows(rows, scenes.size, path)


__all__ = ["NerfFunctaResult", "SceneSamples", "fit_nerf_functa", "fit_views", "novel_views", "object_chroma",
           "plot_novel_views", "plot_scene_rows", "render_views", "sample_scenes"]
