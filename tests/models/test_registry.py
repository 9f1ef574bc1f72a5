"""Registry-driven: every registered model gets these checks on arrival."""

import pytest
import torch

from tests.specs import SPECS, random_weights
from weightspace import Weights, assert_equivariant, assert_invariant, assert_not_invariant
from weightspace.models.dws_light import EquivariantLayer, LayerBatchNorm
from weightspace.models.registry import create_model, list_models, model_info

OUT = 3


def _model(name, spec):
    torch.manual_seed(0)
    kw = {"out_features": OUT} if model_info(name).output == "invariant" else {}
    return create_model(name, spec, **kw).double().eval()


def _cases():
    return [pytest.param(n, s, id=f"{n}-{s}") for n in list_models() for s in SPECS]


def _skip_unsupported(name, spec):
    if spec.is_conv and not model_info(name).supports_conv:
        pytest.skip("model does not support conv specs (checked in the forward test)")


def _has_group(spec):
    return any(g.size > 1 for g in spec.permutation_groups())


@pytest.mark.parametrize("name,spec_name", _cases())
def test_forward_shape_and_every_parameter_gets_a_gradient(name, spec_name, gen):
    spec = SPECS[spec_name]
    info = model_info(name)
    if spec.is_conv and not info.supports_conv:
        with pytest.raises(ValueError, match="MLP specs only"):
            _model(name, spec)
        return
    model = _model(name, spec).train()
    w = random_weights(spec, 4, generator=gen, dtype=torch.float64)
    out = model(w)
    if info.output == "invariant":
        assert out.shape == (4, OUT) and torch.isfinite(out).all()
        loss = out.square().sum()
    else:
        assert isinstance(out, Weights) and out.spec == spec and len(out) == 4
        loss = sum(t.square().sum() for t in out.tensors())
    loss.backward()
    all_bias = all(layer.bias for layer in spec.layers)
    missing = [
        n
        for n, p in model.named_parameters()
        # (an equivariant model's maps into biases that the spec lacks feed outputs that are dropped)
        if (p.grad is None and (all_bias or info.output == "invariant"))
        or (p.grad is not None and not torch.isfinite(p.grad).all())
    ]
    assert not missing, f"parameters without a finite gradient: {missing}"
    if all_bias:
        # (absent biases enter as zeros, so the maps reading them rightly get zero gradients)
        dead = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
        assert not dead, f"parameters whose gradient is identically zero: {dead}"


@pytest.mark.parametrize("name,spec_name", _cases())
def test_symmetry_claims(name, spec_name, gen):
    spec = SPECS[spec_name]
    _skip_unsupported(name, spec)
    info = model_info(name)
    model = _model(name, spec)
    w = random_weights(spec, 4, generator=gen, dtype=torch.float64)
    check = assert_invariant if info.output == "invariant" else assert_equivariant
    if not info.symmetric:
        if not _has_group(spec):
            pytest.skip("spec has no non-trivial hidden permutation")
        # a baseline that claims no symmetry indeed has none
        with pytest.raises(AssertionError, match="not (in|equi)variant"):
            check(model, w, generator=gen)
        return
    check(model, w, generator=gen)
    if info.larger_group:
        # invariant to more by design; show it is not constant: rescale one layer's weights
        ws = list(w.weights)
        ws[0] = ws[0] * 3.0
        diff = (model(Weights(spec, tuple(ws), w.biases)) - model(w)).abs().max()
        assert diff > 1e-6, f"{name} did not react to a non-symmetric change"
    elif spec.layers[0].out_features > 1:
        assert_not_invariant(model, w, generator=gen)


@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize("io", ["fixed", "permutable"])
@pytest.mark.parametrize("reduction", ["mean", "max"])
def test_equivariant_layer(spec_name, io, reduction, gen):
    spec = SPECS[spec_name]
    w = random_weights(spec, 3, generator=gen, dtype=torch.float64, channels=2).with_biases_filled()
    torch.manual_seed(0)
    layer = EquivariantLayer(w.spec, 2, 5, io=io, reduction=reduction).double()
    out = layer(w)
    assert out.channels == 5 and out.spec == w.spec
    assert_equivariant(layer, w, generator=gen)
    if spec.layers[0].out_features > 1:
        assert_not_invariant(layer, w, generator=gen)


def test_probe_is_invariant_to_every_function_preserving_symmetry(gen):
    from weightspace.core.symmetry import function_preserving_kinds

    for spec in (SPECS["siren"], SPECS["mlp_relu"]):
        model = _model("probe", spec)
        w = random_weights(spec, 4, generator=gen, dtype=torch.float64)
        assert_invariant(model, w, kinds=function_preserving_kinds(spec), generator=gen)


def test_graph_batches_mixed_architectures(gen):
    from weightspace.models.graph import NeuralGraph

    spec_a, spec_b = SPECS["siren"], SPECS["width1"].__class__.mlp([2, 5, 7, 3, 1], activation="sine")
    torch.manual_seed(0)
    model = create_model("graph", spec_a, out_features=OUT).double().eval()
    wa = random_weights(spec_a, 2, generator=gen, dtype=torch.float64)
    wb = random_weights(spec_b, 3, generator=gen, dtype=torch.float64)
    mixed = NeuralGraph.cat([model.graph(wa), model.graph(wb)])
    out = model(mixed)
    assert out.shape == (5, OUT)
    torch.testing.assert_close(out[:2], model(wa))
    torch.testing.assert_close(out[2:], model(wb))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_graph_dense_path_equals_sparse_graph(gen, name):
    spec = SPECS[name]
    torch.manual_seed(0)
    model = create_model("graph", spec, out_features=OUT).double().eval()
    w = random_weights(spec, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(model(w), model(model.graph(w)))


@pytest.mark.parametrize("config", [{"reduction": "max"}, {"norm": "channel"}, {"norm": "none"}, {"norm": "batch", "reduction": "max"}])
@pytest.mark.parametrize("train", [False, True])
def test_dws_light_variants_are_invariant_and_not_constant(gen, config, train):
    spec = SPECS["siren"]
    torch.manual_seed(0)
    model = create_model("dws_light", spec, out_features=3, dropout=0.0, **config).double().train(train)
    w = random_weights(spec, 4, generator=gen, dtype=torch.float64)
    # batch statistics pool over networks and entries alike, so acting on each network with its
    # own group element leaves them unchanged
    assert_invariant(model, w, generator=gen)
    assert_not_invariant(model, w, generator=gen)


@pytest.mark.parametrize("config", [
    {"reduction": "mean", "set_layer": "ds"}, {"reduction": "max", "set_layer": "sab"},
    {"batch_norm": False, "set_layer": "sab", "reduction": "mean"}, {"head_layers": 2}])
@pytest.mark.parametrize("spec_name", ["siren", "cnn"])
@pytest.mark.parametrize("train", [False, True])
def test_dws_variants_are_invariant_and_not_constant(gen, config, spec_name, train):
    spec = SPECS[spec_name]
    torch.manual_seed(0)
    model = create_model("dws", spec, out_features=3, **config).double().train(train)
    w = random_weights(spec, 4, generator=gen, dtype=torch.float64)
    assert_invariant(model, w, generator=gen)
    assert_not_invariant(model, w, generator=gen)


def test_dws_preset_is_the_published_classifier():
    from weightspace.models.dws import SAB, DWSLayer
    from weightspace.models.registry import get_preset

    spec = SPECS["siren"].__class__.siren(2, [32, 32], 1)
    model = create_model("dwsnets-mnist-inr", spec, out_features=10)
    layers = [m for m in model.modules() if isinstance(m, DWSLayer)]
    assert len(layers) == 5 and {m.cout for m in layers} == {32}
    assert all(m.reduction == "max" and m.set_layer == "sab" for m in layers)
    assert any(isinstance(m, SAB) for m in layers[0].modules())
    assert isinstance(model.norms[0], LayerBatchNorm) and len(model.norms) == 4
    preset = get_preset("dwsnets-mnist-inr")
    assert preset.train["lr"] == 5e-3 and preset.train["batch_size"] == 512 and preset.published["mnist-inr"] == 85.71


def test_dws_light_defaults_to_batch_norm_and_trains_on_a_batch_of_one(gen):
    spec = SPECS["siren"]  # a scalar output: its bias holds one value per channel and network
    model = create_model("dws_light", spec, out_features=3, dropout=0.0).double().train()
    assert isinstance(model.norms[0], LayerBatchNorm)
    w = random_weights(spec, 1, generator=gen, dtype=torch.float64)
    before = [b.running_mean.clone() for b in model.norms[0].b_norms]
    out = model(w)
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    out.sum().backward()
    # the one-value tensor used the running statistics and left them alone; the others updated theirs
    last = len(spec.layers) - 1
    torch.testing.assert_close(model.norms[0].b_norms[last].running_mean, before[last])
    assert not torch.equal(model.norms[0].b_norms[0].running_mean, before[0])


def test_dws_options_are_checked():
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'max'.*'median'"):
        create_model("dws", SPECS["siren"], out_features=3, reduction="median")
    with pytest.raises(ValueError, match="set_layer must be 'ds'.*'gat'"):
        create_model("dws", SPECS["siren"], out_features=3, set_layer="gat")
    with pytest.raises(ValueError, match="norm must be 'channel'.*'layer'"):
        create_model("dws_light", SPECS["siren"], out_features=3, norm="layer")


def test_model_config_text_and_unknown_options_are_named():
    from weightspace.models.registry import parse_model_config

    assert parse_model_config("hidden_channels=32, norm=batch,dropout=0.2,x=none,y=true") == {
        "hidden_channels": 32, "norm": "batch", "dropout": 0.2, "x": None, "y": True}
    assert parse_model_config("") == {}
    with pytest.raises(ValueError, match="expected key=value, got 'norm'"):
        parse_model_config("norm")
    with pytest.raises(ValueError, match=r"model 'dws' has no option\(s\) \['width'\]; its options: .*hidden_channels"):
        create_model("dws", SPECS["siren"], out_features=3, width=4)
