"""Registry-driven: every registered model gets these checks on arrival."""

import pytest
import torch

from weightspace import assert_equivariant, assert_invariant, assert_not_invariant
from weightspace.models.dws import EquivariantLayer
from weightspace.models.registry import create_model, list_models, model_info
from tests.specs import SPECS, random_weights

OUT = 3


def _model(name, spec):
    torch.manual_seed(0)
    return create_model(name, spec, out_features=OUT).double().eval()


def _cases():
    return [pytest.param(n, s, id=f"{n}-{s}") for n in list_models() for s in SPECS]


@pytest.mark.parametrize("name,spec_name", _cases())
def test_forward_shape_and_every_parameter_gets_a_gradient(name, spec_name, gen):
    spec = SPECS[spec_name]
    if spec.is_conv and not model_info(name).supports_conv:
        with pytest.raises(ValueError, match="MLP specs only"):
            create_model(name, spec, out_features=OUT)
        return
    model = _model(name, spec).train()
    w = random_weights(spec, 4, generator=gen, dtype=torch.float64)
    out = model(w)
    assert out.shape == (4, OUT) and torch.isfinite(out).all()
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
    if all(layer.bias for layer in spec.layers):
        # (absent biases enter as zeros, so the maps reading them rightly get zero gradients)
        dead = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
        assert not dead, f"parameters whose gradient is identically zero: {dead}"


@pytest.mark.parametrize("name,spec_name", _cases())
def test_symmetry_claims(name, spec_name, gen):
    spec = SPECS[spec_name]
    if spec.is_conv and not model_info(name).supports_conv:
        pytest.skip("model does not support conv specs (checked above)")
    model = _model(name, spec)
    w = random_weights(spec, 4, generator=gen, dtype=torch.float64)
    has_group = any(g.size > 1 for g in spec.permutation_groups())
    if name == "mlp":
        if not has_group:
            pytest.skip("spec has no non-trivial hidden permutation")
        # the baseline claims no symmetry, and indeed has none
        with pytest.raises(AssertionError, match="not invariant"):
            assert_invariant(model, w, generator=gen)
        return
    if model_info(name).output == "invariant":
        assert_invariant(model, w, generator=gen)
    if spec.layers[0].out_features > 1:
        assert_not_invariant(model, w, generator=gen)


@pytest.mark.parametrize("spec_name", list(SPECS))
def test_equivariant_layer(spec_name, gen):
    spec = SPECS[spec_name]
    w = random_weights(spec, 3, generator=gen, dtype=torch.float64, channels=2).with_biases_filled()
    torch.manual_seed(0)
    layer = EquivariantLayer(w.spec, 2, 5).double()
    out = layer(w)
    assert out.channels == 5 and out.spec == w.spec
    assert_equivariant(layer, w, generator=gen)
    if spec.layers[0].out_features > 1:
        assert_not_invariant(layer, w, generator=gen)
