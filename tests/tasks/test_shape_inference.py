"""Shape inference from partial observations: what is observed, that only it is used, and the scores."""

import pytest
import torch

from weightspace.inr.meta import encode
from weightspace.inr.modulated import ModulatedSiren, ModulatedSirenConfig
from weightspace.signals.base import grid_coordinates
from weightspace.tasks.shape_inference import (
    Observation,
    boundary,
    chamfer,
    infer_latents,
    infer_shapes,
    inside,
    iou,
    nearest_training_shape,
    observe,
)

R = 8


def _balls(n: int, seed: int = 0) -> torch.Tensor:
    """SDF-encoded balls of random centre and radius: values [n, R^3, 1], inside below 0.5."""
    g = torch.Generator().manual_seed(seed)
    c = grid_coordinates((R,) * 3)
    centres = (torch.rand(n, 1, 3, generator=g) - 0.5) * 0.8
    radii = 0.3 + 0.4 * torch.rand(n, 1, generator=g)
    sdf = (c[None] - centres).norm(dim=-1) - radii
    return (0.5 + 0.5 * (sdf / 0.25).clamp(-1, 1))[..., None]


@pytest.mark.parametrize("text,expected", [("random:0.1", Observation("random", fraction=0.1)),
                                           ("view:+z", Observation("view", axis=2, sign=1)),
                                           ("view:-x", Observation("view", axis=0, sign=-1))])
def test_observations_parse_and_name_themselves(text, expected):
    assert Observation.parse(text) == expected and Observation.parse(text).name == text


@pytest.mark.parametrize("bad", ["random:0", "random:1.5", "random:x", "view:z", "view:*y", "depth:+z", "random:nan"])
def test_bad_observations_are_refused(bad):
    with pytest.raises(ValueError, match="observation"):
        Observation.parse(bad)


def test_random_observation_sees_the_asked_fraction_reproducibly():
    v = _balls(3)
    a = observe(v, R, Observation.parse("random:0.25"), level=0.5, inside_high=False, seed=4)
    assert a.shape == (3, R**3) and (a.sum(1) == round(0.25 * R**3)).all()
    assert torch.equal(a, observe(v, R, Observation.parse("random:0.25"), level=0.5, inside_high=False, seed=4))
    assert not torch.equal(a[0], a[1])  # each shape its own subset


@pytest.mark.parametrize("view", ["view:+x", "view:-x", "view:+y", "view:-y", "view:+z", "view:-z"])
def test_a_view_sees_each_ray_up_to_its_first_inside_point(view):
    v = _balls(2, seed=1)
    obs = Observation.parse(view)
    mask = observe(v, R, obs, level=0.5, inside_high=False).reshape(2, R, R, R)
    occ = inside(v, 0.5, False).reshape(2, R, R, R)
    order = range(R) if obs.sign > 0 else range(R - 1, -1, -1)  # the camera's ray, step by step
    for s in range(2):
        for a in range(R):
            for b in range(R):
                hit = False
                for t in order:
                    idx = [a, b]
                    idx.insert(obs.axis, t)
                    assert bool(mask[s][tuple(idx)]) == (not hit), (view, s, a, b, t)
                    hit = hit or bool(occ[s][tuple(idx)])
    assert 0 < mask.float().mean() < 1  # partial: something behind a surface stays hidden


def test_inference_uses_only_the_observed_values_and_full_observation_is_encoding():
    model = ModulatedSiren(ModulatedSirenConfig(3, 1, (16, 16), latent_dim=8, seed=0))
    coords, v = grid_coordinates((R,) * 3), _balls(4)
    mask = observe(v, R, Observation.parse("random:0.2"), level=0.5, inside_high=False, seed=0)
    z = infer_latents(model, coords, v, mask, steps=3)
    scrambled = torch.where(mask[..., None], v, torch.rand_like(v))  # anything at the unobserved points
    assert torch.equal(z, infer_latents(model, coords, scrambled, mask, steps=3))
    assert not torch.equal(z, infer_latents(model, coords, torch.rand_like(v), mask, steps=3))
    everything = torch.ones_like(mask)
    torch.testing.assert_close(infer_latents(model, coords, v, everything, steps=3), encode(model, v, 3, coords=coords))


def test_scores_of_known_shapes():
    coords, v = grid_coordinates((R,) * 3), _balls(3)
    occ = inside(v, 0.5, False)
    assert torch.equal(iou(occ, occ), torch.ones(3)) and torch.equal(chamfer(occ, occ, coords, R), torch.zeros(3))
    assert torch.equal(iou(occ, ~occ), torch.zeros(3))
    # a box shifted by one voxel: IoU (k-1)/(k+1) of a k-voxel-wide box, Chamfer within one cell
    box = torch.zeros(1, R, R, R, dtype=torch.bool)
    box[0, 2:5, 2:5, 2:5] = True
    moved = box.roll(1, dims=1)
    assert float(iou(box.reshape(1, -1), moved.reshape(1, -1))) == pytest.approx(2 / 4)
    cell = 2 / (R - 1)
    c = float(chamfer(box.reshape(1, -1), moved.reshape(1, -1), coords, R))
    assert 0 < c <= cell + 1e-6
    # the boundary of a 3x3x3 box is all of it but its centre voxel
    assert int(boundary(box.reshape(1, -1), R).sum()) == 26


def test_the_nearest_training_shape_is_found_from_its_observed_points():
    train = _balls(6, seed=2)
    test = train[[4, 1]] + 0.001 * torch.randn(2, R**3, 1, generator=torch.Generator().manual_seed(0))
    mask = observe(test, R, Observation.parse("random:0.3"), level=0.5, inside_high=False)
    assert nearest_training_shape(train, test, mask).tolist() == [4, 1]


def test_infer_shapes_scores_both_methods():
    model = ModulatedSiren(ModulatedSirenConfig(3, 1, (16, 16), latent_dim=8, seed=0))
    coords, train, test = grid_coordinates((R,) * 3), _balls(6, seed=2), _balls(3, seed=3)
    res = infer_shapes(model, coords, test, torch.cat([train, test]), Observation.parse("random:1"), resolution=R,
                       level=0.5, inside_high=False, steps=2)
    assert torch.equal(res.baseline_iou, torch.ones(3))  # fully observed, the shape itself is the nearest
    assert res.reconstruction.shape == test.shape and (res.observed == 1).all()
    s = res.summary()
    assert s["shapes"] == 3 and 0 <= s["functa_iou"] <= 1 and s["nearest_iou"] == 1.0
