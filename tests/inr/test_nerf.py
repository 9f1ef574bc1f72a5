"""Volume rendering, cameras, procedural scenes and NeRF functa."""

import math

import numpy as np
import pytest
import torch

from weightspace.inr.meta import MetaConfig, meta_train
from weightspace.inr.modulated import ModulatedSiren, ModulatedSirenConfig
from weightspace.inr.nerf import NerfDecode, RenderConfig, composite, look_at_rays, orbit, render
from weightspace.signals.scenes import load_scenes
from weightspace.tasks.nerf_functa import fit_nerf_functa, fit_views, novel_views, object_chroma, render_views


def test_compositing_of_known_samples():
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])  # [1 ray, 2 samples, 3]
    # an opaque first sample hides the second and the background
    torch.testing.assert_close(composite(rgb, torch.tensor([[1e4, 1e4]]), 1.0, 0.5), torch.tensor([[1.0, 0, 0]]))
    # empty space shows the background
    torch.testing.assert_close(composite(rgb, torch.zeros(1, 2), 1.0, 0.5), torch.full((1, 3), 0.5))
    # alpha 1 - e^-1 each: w1 = a, w2 = (1 - a) a, background (1 - a)^2
    a = 1 - math.exp(-1)
    expected = torch.tensor([[a, (1 - a) * a, 0.0]]) + (1 - a) ** 2 * 0.5
    torch.testing.assert_close(composite(rgb, torch.ones(1, 2), 1.0, 0.5), expected)


def test_cameras_look_at_the_origin_with_unit_rays():
    pos = orbit(4, radius=3.0, elevation=30.0)
    assert torch.allclose(pos.norm(dim=1), torch.full((4,), 3.0)) and torch.allclose(pos[:, 1], torch.full((4,), 1.5))
    rays = look_at_rays(pos, 8)
    assert rays.shape == (4 * 64, 6) and torch.allclose(rays[:, 3:].norm(dim=1), torch.ones(4 * 64))
    mean_dir = rays[:64, 3:].mean(0)  # the pixels are symmetric about the optical axis
    torch.testing.assert_close(mean_dir / mean_dir.norm(), -pos[0] / 3.0, atol=1e-5, rtol=0)


def test_rendering_a_solid_sphere_shows_its_silhouette():
    cfg = RenderConfig(samples=64, background=1.0)

    def sphere(p):
        inside = (p.norm(dim=1) < 0.5).float()
        return torch.tensor([0.2, 0.4, 0.6]).expand(len(p), 3), 1e3 * inside

    size = 16
    img = render(sphere, look_at_rays(orbit(1, radius=3.0, elevation=0.0), size), cfg).reshape(size, size, 3)
    assert torch.allclose(img[size // 2, size // 2], torch.tensor([0.2, 0.4, 0.6]), atol=1e-3)
    assert torch.allclose(img[0, 0], torch.ones(3))
    # the silhouette's half-width in pixels: the sphere subtends asin(0.5 / 3) from the camera
    half = math.tan(math.asin(0.5 / 3)) / math.tan(math.radians(20)) * size / 2
    covered = int((img[size // 2, :, 0] < 0.5).sum())
    assert abs(covered - 2 * half) <= 2


def test_the_nerf_decode_renders_the_networks_field():
    model = ModulatedSiren(ModulatedSirenConfig(3, 4, (16, 16), latent_dim=4, seed=0))
    decode = NerfDecode(RenderConfig(samples=8))
    rays = look_at_rays(orbit(2), 4)
    z = torch.randn(3, 4)
    out = decode(model, z, rays)
    for b in range(3):
        expected = render(lambda p, b=b: tuple(t[0] for t in decode.field(model, z[b:b + 1], p)), rays, decode.config)
        torch.testing.assert_close(out[b], expected)
    with pytest.raises(ValueError, match="rays must be"):
        decode(model, z, rays[:, :3])


def test_scenes_are_seeded_and_their_views_are_the_cameras():
    a, b = load_scenes(1, size=6, views=4, test_views=2, seed=3), load_scenes(1, size=6, views=4, test_views=2, seed=3)
    assert torch.equal(a.values, b.values) and a.values.shape == (3, 4 * 36, 3) and a.test_values.shape == (3, 72, 3)
    assert not torch.equal(a.values, load_scenes(1, size=6, views=4, test_views=2, seed=4).values)
    idx = a.view_rays([2])
    assert torch.equal(a.rays[idx], look_at_rays(orbit(4)[2:3], 6))
    assert a.values.min() >= 0 and a.values.max() <= 1 and (a.values < 0.9).any()  # something is in view
    with pytest.raises(ValueError, match="views must lie"):
        a.view_rays([4])


def test_views_fit_only_what_they_observe_and_meta_learning_is_seeded():
    scenes = load_scenes(2, size=6, views=4, test_views=2)
    model = ModulatedSiren(ModulatedSirenConfig(3, 4, (16, 16), latent_dim=4, seed=0))
    decode = NerfDecode(RenderConfig(samples=8))
    z = fit_views(model, decode, scenes, [1], steps=2)
    other = scenes.view_rays([0, 2, 3])
    changed = scenes.values.clone()
    changed[:, other] = torch.rand_like(changed[:, other])
    from dataclasses import replace

    assert torch.equal(z, fit_views(model, decode, replace(scenes, values=changed), [1], steps=2))
    assert torch.equal(fit_views(model, decode, scenes, [], steps=2), torch.zeros(len(scenes), 4))
    rows = novel_views(model, decode, scenes, [[], [1]], steps=2)
    assert [r["views"] for r in rows] == [0, 1] and all(np.isfinite(r["psnr_held_out"]) for r in rows)
    assert all(0 <= r["chroma_held_out"] <= 1 for r in rows)
    assert render_views(model, decode, z, scenes.test_rays).shape == scenes.test_values.shape
    cfg = MetaConfig(steps=3, batch_size=2, inner_steps=1, points_per_step=16, progress=False, seed=1)
    runs = []
    for _ in range(2):
        m = ModulatedSiren(ModulatedSirenConfig(3, 4, (16, 16), latent_dim=4, seed=0))
        runs.append(meta_train(m, scenes.rays, scenes.values, cfg, decode=decode).loss)
    assert runs[0] == runs[1] and len(runs[0]) == 3


def test_an_appearance_code_starts_as_colour_only():
    scenes = load_scenes(2, size=6, views=4, test_views=2)
    res = fit_nerf_functa(scenes, hidden=(8, 8), latent_dim=6, appearance_dim=2,
                          meta=MetaConfig(steps=0, points_per_step=16, progress=False))
    w = res.model.output_map.weight
    assert w.shape == (4, 2) and torch.equal(w[3], torch.zeros(2)) and w[:3].abs().min() > 0
    assert res.model.config.appearance_dim == 2


def test_object_chroma_tells_a_grey_silhouette_from_the_coloured_object():
    truth = torch.ones(1, 4, 3)
    truth[0, :2] = torch.tensor([0.9, 0.2, 0.3])  # two object pixels, two background
    grey = truth.clone()
    grey[0, :2] = 0.45
    assert object_chroma(truth, truth) == pytest.approx(0.7)
    assert object_chroma(grey, truth) == 0.0
    noisy = truth.clone()
    noisy[0, 2:] = torch.tensor([1.0, 0.0, 0.0])  # colour on the background does not count
    assert object_chroma(noisy, truth) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="no object pixels"):
        object_chroma(truth, torch.ones(1, 4, 3))
