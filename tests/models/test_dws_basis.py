"""Completeness of the DWSNets layer, proven by counting dimensions (not by reading the code)."""

import pytest
import torch

from weightspace.core.basis import basis_report, commutant_dimension, equivariant_dimension_by_nullspace
from weightspace.core.spec import LayerSpec, NetworkSpec
from weightspace.models.dws import DWSLayer
from weightspace.models.dws_light import EquivariantLayer

CNN = NetworkSpec(
    (
        LayerSpec("conv", 2, 3, (2, 2), activation="relu"),
        LayerSpec("conv", 3, 2, (1, 1), activation="relu"),
        LayerSpec("linear", 2, 2),
    ),
    pool="avg",
)
SPECS = {
    "mlp-2-3-3-1": NetworkSpec.mlp([2, 3, 3, 1]),
    "mlp-2-3-4-2": NetworkSpec.mlp([2, 3, 4, 2]),
    "mlp-3-2-depth1": NetworkSpec.mlp([3, 2]),
    "mlp-2-3-2-2-1-depth4": NetworkSpec.mlp([2, 3, 2, 2, 1]),
    "cnn": CNN,
}


@pytest.mark.parametrize(
    "sizes,io,expected",
    # counted independently when the gap was reported (issue 21)
    [([2, 3, 3, 1], "fixed", 75), ([2, 3, 3, 1], "permutable", 57), ([2, 3, 4, 2], "fixed", 114), ([2, 3, 4, 2], "permutable", 62)],
)
def test_commutant_dimension_matches_independent_counts(sizes, io, expected):
    assert commutant_dimension(NetworkSpec.mlp(sizes), io) == expected


@pytest.mark.parametrize("io", ["fixed", "permutable"])
@pytest.mark.parametrize("sizes", [[2, 2, 1], [2, 3, 2, 1], [3, 2]])
def test_orbit_count_equals_null_space_of_commutation_constraints(sizes, io):
    spec = NetworkSpec.mlp(sizes)
    assert commutant_dimension(spec, io) == equivariant_dimension_by_nullspace(spec, io)


def _layer(spec, io="fixed", cls=DWSLayer, **kw):
    torch.manual_seed(0)
    return cls(spec, 1, 1, io=io, **kw).double()


@pytest.mark.parametrize("io", ["fixed", "permutable"])
@pytest.mark.parametrize("name", list(SPECS))
def test_dws_layer_realises_the_complete_basis(name, io):
    spec = SPECS[name]
    report = basis_report(_layer(spec, io, reduction="mean", set_layer="ds"), spec, io)
    assert report.max_violation < 1e-10, report
    assert report.realised == report.commutant, report
    assert report.complete


def test_every_block_is_needed():
    """Removing any one block (a pair of tensors' map) loses dimensions: the count can fail."""
    spec = SPECS["mlp-2-3-3-1"]
    layer = _layer(spec, reduction="mean", set_layer="ds")
    full = basis_report(layer, spec).commutant
    for key in layer.blocks:
        report = basis_report(layer, spec, exclude=lambda name, key=key: name.startswith(f"blocks.{key}."))
        assert report.realised < full, f"block {key} ({layer.kind[key]}) is redundant: {report}"


def test_the_light_layer_is_a_strict_subset():
    """`dws_light`'s layer, the `dws` model before 2026-12-07, realises 35 of the 75 dimensions."""
    spec = SPECS["mlp-2-3-3-1"]
    report = basis_report(_layer(spec, cls=EquivariantLayer), spec)
    assert report.max_violation < 1e-10
    assert (report.commutant, report.realised) == (75, 35)
