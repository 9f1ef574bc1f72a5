"""Procedural shapes and meshes as distance / occupancy fields."""

from __future__ import annotations

import pytest
import torch

from weightspace.signals import (
    SHAPE_CLASSES,
    SignalDataset,
    grid_coordinates,
    load_shapes,
    make_shape,
    mesh_sdf,
)
from weightspace.signals.shapes import encode_field


def test_at_least_ten_classes_and_dataset_layout() -> None:
    ds = load_shapes(2, 6, seed=1)
    assert len(SHAPE_CLASSES) >= 10 and ds.classes == SHAPE_CLASSES
    assert isinstance(ds, SignalDataset) and ds.kind == "shape"
    assert len(ds) == 2 * len(SHAPE_CLASSES) and ds.signal_shape == (6, 6, 6, 1)
    assert ds.coordinates().shape == (216, 3) and ds.targets().shape == (len(ds), 216, 1)
    assert ds.labels.tolist() == [c for c in range(len(SHAPE_CLASSES)) for _ in range(2)]
    assert 0.0 <= float(ds.values.min()) and float(ds.values.max()) <= 1.0
    assert set(ds.split) == {"train", "val", "test"}
    assert ds.as_grid().shape == (len(ds), 6, 6, 6, 1)
    from weightspace.signals import load_digits

    digits = load_digits(limit=1)  # images satisfy the same contract
    assert isinstance(digits, SignalDataset) and digits.kind == "image" and digits.signal_shape == (8, 8, 1)


@pytest.mark.parametrize("cls", SHAPE_CLASSES)
def test_sdf_sign_inside_outside_and_lipschitz(cls: str) -> None:
    shape = make_shape(cls, (3, 1, 4))
    # the pose maps the local origin to the translation; corners of the cube are far outside
    corners = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
    assert (shape.sdf(corners) > 0.05).all()
    pts = grid_coordinates((24, 24, 24))
    d = shape.sdf(pts)
    assert (d < 0).any() and (d > 0).any()
    # a (bound on a) distance is 1-Lipschitz: neighbouring grid points differ by at most their spacing
    g, h = d.reshape(24, 24, 24), 2 / 23
    assert max(float(g.diff(dim=k).abs().max()) for k in range(3)) <= h * (1 + 1e-4)
    # every solid except the hollow frame contains the posed origin of its local frame
    if cls not in ("box_frame", "torus"):
        assert float(shape.sdf(torch.tensor([shape.translation]))) < 0


def test_sdf_values_of_exact_primitives() -> None:
    sphere = make_shape("sphere", 0)
    r, s, t = sphere.params["r"], sphere.scale, torch.tensor(sphere.translation)
    pts = t + torch.tensor([[0.0, 0, 0], [0.9, 0, 0], [0, -0.2, 0]])
    torch.testing.assert_close(sphere.sdf(pts), torch.tensor([0.0, 0.9, 0.2]) - r * s, atol=1e-5, rtol=0)


def test_determinism_per_seed_and_fields() -> None:
    a, b, c = load_shapes(1, 5, seed=7), load_shapes(1, 5, seed=7), load_shapes(1, 5, seed=8)
    assert torch.equal(a.values, b.values) and a.split == b.split
    assert not torch.equal(a.values, c.values)
    # more shapes per class keep the earlier ones; fewer classes keep each shape
    more = load_shapes(2, 5, seed=7)
    assert torch.equal(more.values[::2], a.values)
    two = load_shapes(1, 5, seed=7, classes=("torus", "cone"))
    assert torch.equal(two.values[0], a.values[SHAPE_CLASSES.index("torus")])
    sdf = torch.tensor([-1.0, -0.1, 0.0, 0.1, 1.0])
    assert encode_field(sdf, "sdf", 0.2).tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert encode_field(sdf, "udf", 0.2).tolist() == pytest.approx([1.0, 0.5, 0.0, 0.5, 1.0])
    assert encode_field(sdf, "occupancy", 0.2).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    occ = load_shapes(1, 5, "occupancy", seed=7)
    assert set(occ.values.unique().tolist()) <= {0.0, 1.0} and occ.meta["field"] == "occupancy"
    pts = load_shapes(1, 5, seed=7, points=50)
    assert pts.signal_shape == (50, 1) and not pts.grid and pts.coordinates().abs().max() <= 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown shape class"):
        load_shapes(1, 4, classes=("dodecahedron",))
    with pytest.raises(ValueError, match="unknown field"):
        load_shapes(1, 4, "density")  # type: ignore[arg-type]


def test_mesh_sdf_of_a_box_and_a_sphere() -> None:
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    v, f = torch.tensor(box.vertices, dtype=torch.float32), torch.tensor(box.faces)
    pts = torch.tensor([[0.0, 0, 0], [0.25, 0, 0], [1.0, 0, 0], [1.0, 1.0, 1.0], [0.3, 0.2, -0.45]])
    expected = torch.tensor([-0.5, -0.25, 0.5, 3**0.5 / 2, -0.05])
    torch.testing.assert_close(mesh_sdf(v, f, pts), expected, atol=1e-5, rtol=0)
    # reversed faces (inward normals) give the same field: the sign comes from |winding number|
    torch.testing.assert_close(mesh_sdf(v, f[:, [0, 2, 1]], pts), expected, atol=1e-5, rtol=0)
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    grid = grid_coordinates((10, 10, 10))
    d = mesh_sdf(torch.tensor(ball.vertices, dtype=torch.float32), torch.tensor(ball.faces), grid, band=0.2)
    exact = grid.norm(dim=1) - 0.5
    near = exact.abs() < 0.2
    assert (d[near] - exact[near]).abs().max() < 0.02  # a faceted sphere
    assert (torch.sign(d) == torch.sign(exact)).all() and (d[~near].abs() >= 0.2 - 0.02).all()


def test_load_meshes_from_files(tmp_path) -> None:
    trimesh = pytest.importorskip("trimesh")
    from weightspace.signals import load_meshes, load_signals

    for cls, make in (
        ("cube", lambda k: trimesh.creation.box(extents=(1, 1 + k, 1))),
        ("ball", lambda k: trimesh.creation.icosphere(subdivisions=1, radius=1 + k)),
    ):
        (tmp_path / cls).mkdir()
        for k in range(2):
            make(k).export(tmp_path / cls / f"{k}.obj")
    ds = load_meshes(tmp_path, resolution=6, val_fraction=0.0, test_fraction=0.5)
    assert ds.classes == ("ball", "cube") and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.values.shape == (4, 216, 1) and ds.meta["field"] == "sdf"
    centre = ds.values[:, 3 * 36 + 3 * 6 + 3, 0]  # near the origin: inside every normalised mesh
    assert (centre < 0.5).all()
    same = load_signals(tmp_path, resolution=6)  # a folder of meshes is recognised as shapes
    assert same.kind == "shape" and len(same) == 4
    (tmp_path / "cube" / "bad.obj").write_text("this is not a mesh\n")
    with pytest.raises(ValueError, match="bad.obj"):
        load_meshes(tmp_path, resolution=4)
