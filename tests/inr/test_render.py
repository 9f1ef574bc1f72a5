"""Decoding zoos back to signals: figures, PSNR agreement with the table, meshes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from weightspace.inr.render import (
    marching_cubes,
    recipe_of,
    reconstruct,
    render_zoo,
    select_positions,
    write_mesh,
)
from weightspace.inr.siren import get_recipe
from weightspace.signals import load_digits, load_shapes, load_tones
from weightspace.zoo.build import build_inr_zoo

RECIPE = get_recipe("dwsnets", steps=40)


def test_image_figure_and_psnr_matches_table(tmp_path) -> None:
    data = load_digits(limit=2)
    zoo = build_inr_zoo(data, tmp_path / "z", RECIPE, shard_size=4, progress=False, inrs_per_train_image=2)
    assert recipe_of(zoo) == RECIPE
    pos = select_positions(zoo, split="train", count=3)
    rec, written = render_zoo(zoo, tmp_path / "fig.png", pos, dataset=data)
    assert rec.values.shape == (3, 8, 8, 1) and rec.originals is not None
    np.testing.assert_allclose(rec.psnr, zoo.table["psnr"].to_numpy()[pos], rtol=1e-4, atol=1e-3)
    src = zoo.table["source_index"].to_numpy()[pos]
    assert torch.equal(rec.originals, data.images[src])
    img = Image.open(written[0])
    assert written[0].suffix == ".png" and img.size[0] > 100
    # without the source signals: reconstructions only, the table's PSNR
    alone = reconstruct(zoo, pos)
    assert alone.originals is None and alone.psnr == alone.table_psnr
    assert torch.equal(alone.values, rec.values)
    assert select_positions(zoo, indices=[5, 0]).tolist() == [5, 0]
    with pytest.raises(ValueError, match="no networks with id"):
        select_positions(zoo, indices=[99])


def test_shape_slice_mesh_and_audio(tmp_path) -> None:
    pytest.importorskip("skimage")
    data = load_shapes(1, 8, classes=("sphere", "box"))
    recipe = get_recipe("dwsnets", steps=300)
    zoo = build_inr_zoo(data, tmp_path / "s", recipe, shard_size=2, progress=False)
    sphere = int(np.flatnonzero(zoo.table["source_index"].to_numpy() == 0)[0])  # zoos are fitted in a shuffled order
    rec, written = render_zoo(zoo, tmp_path / "s.png", [sphere], dataset=data, mesh=tmp_path / "sphere.obj")
    np.testing.assert_allclose(rec.psnr, zoo.table["psnr"][sphere:sphere + 1], rtol=1e-4, atol=1e-3)
    assert [w.name for w in written] == ["s.png", "sphere.obj"]
    assert rec.labels == ["sphere"] and zoo.provenance["classes"] == ["sphere", "box"]  # figures name the class
    lines = (tmp_path / "sphere.obj").read_text().splitlines()
    verts = np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    assert len(verts) > 20 and any(ln.startswith("f ") for ln in lines)
    assert np.abs(verts).max() <= 1.0
    # several networks: one mesh each in a directory, named by id and class; a file name for
    # several networks is refused before anything is decoded or written
    with pytest.raises(ValueError, match="names one file but 2 networks"):
        render_zoo(zoo, tmp_path / "two.png", [0, 1], mesh=tmp_path / "both.obj")
    assert not (tmp_path / "two.png").exists()
    with warnings.catch_warnings(record=True) as caught:  # at 8^3 a fitted box may not reach the level
        warnings.simplefilter("always")
        _, written = render_zoo(zoo, tmp_path / "two.png", [0, 1], mesh=tmp_path / "meshes")
    ids, classes = zoo.table["id"].tolist(), zoo.table["label"].map({0: "sphere", 1: "box"}).tolist()
    expected = [f"{i}-{c}.obj" for i, c in zip(ids, classes)]
    skipped = [str(w.message) for w in caught if "no mesh written" in str(w.message)]
    assert len(written) - 1 + len(skipped) == 2 and f"{sphere}-sphere.obj" in [w.name for w in written]
    assert [w.name for w in written[1:]] == [e for e in expected if not any(m.startswith(f"network {e.split('-')[0]}:") for m in skipped)]
    assert all(w.parent == tmp_path / "meshes" and w.stat().st_size > 0 for w in written[1:])
    fine = reconstruct(zoo, [sphere], resolution=16)  # any resolution: the INR is continuous
    assert fine.values.shape == (1, 16, 16, 16, 1)
    tones = load_tones(1, 32, classes=("sine", "square"))
    tz = build_inr_zoo(tones, tmp_path / "t", RECIPE, shard_size=2, progress=False)
    rec, written = render_zoo(tz, tmp_path / "t.png", [0, 1], dataset=tones)
    assert rec.values.shape == (2, 32, 1) and written[0].exists()
    np.testing.assert_allclose(rec.psnr, tz.table["psnr"], rtol=1e-4, atol=1e-3)


def test_marching_cubes_of_an_exact_sphere(tmp_path) -> None:
    pytest.importorskip("skimage")
    from weightspace.signals import grid_coordinates

    g = grid_coordinates((24, 24, 24))
    field = 0.5 + 0.5 * ((g.norm(dim=1) - 0.6) / 0.25).clamp(-1, 1)  # our SDF encoding
    verts, faces = marching_cubes(field.reshape(24, 24, 24), 0.5)
    np.testing.assert_allclose(np.linalg.norm(verts, axis=1), 0.6, atol=0.01)
    # outward faces: the normal of each triangle points away from the centre
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normal * tri.mean(1)).sum(1) > 0).mean() > 0.99
    ply = write_mesh(tmp_path / "m.ply", verts, faces).read_text()
    assert ply.startswith("ply\n") and f"element face {len(faces)}" in ply
    occupancy = (g.norm(dim=1) <= 0.6).float().reshape(24, 24, 24)  # larger inside: same orientation
    v2, f2 = marching_cubes(occupancy, 0.5, inside_high=True)
    tri = v2[f2]
    assert ((np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]) * tri.mean(1)).sum(1) > 0).mean() > 0.99
    with pytest.raises(ValueError, match="never crosses"):
        marching_cubes(torch.ones(4, 4, 4), 0.5)
