"""The neural-graph models: NG-GNN (`graph`), NG-T (`ngt`), ScaleGMN (`scalegmn`) and the light
`graph_light`: dense path == sparse graph, mixed architectures, batches of one, the edge mask
of NG-T, ScaleGMN's sign/scale invariance, `phase_canonicalize`, and the presets (their
parameter counts against the reference code's)."""

import math

import pytest
import torch

from tests.specs import SPECS, random_weights
from weightspace import Weights, assert_invariant, assert_not_invariant
from weightspace.core.functional import forward
from weightspace.core.spec import NetworkSpec
from weightspace.models.graph import NeuralGraph
from weightspace.models.registry import create_model, get_preset, list_presets, model_info
from weightspace.models.scalegmn import phase_canonicalize, resolve_symmetry
from weightspace.train import TrainConfig

OUT = 3
MODELS = ["graph", "graph_light", "ngt", "scalegmn"]
VARIANTS = [
    ("graph", {}),
    ("graph", {"reverse_edge_features": False, "aggregators": "sum+mean+min+max+var+std",
               "scalers": "identity+amplification+attenuation+linear+inverse_linear", "norm": "layer"}),
    ("graph", {"edge_updates": False, "sin_emb_dim": 0, "norm": "none", "num_layers": 1}),
    ("graph_light", {}),
    ("ngt", {}),
    ("ngt", {"reverse_edge_features": True, "modulate_v": False, "num_layers": 2}),
    ("scalegmn", {}),
    ("scalegmn", {"readout": "last_layer", "num_layers": 3}),
    ("scalegmn", {"symmetry": "permutation", "skip_connections": False, "edge_pos_embed": False}),
]
MNIST_INR = NetworkSpec.siren(2, [32, 32], 1)


def _model(name, spec, **config):
    torch.manual_seed(0)
    return create_model(name, spec, out_features=OUT, **config).double().eval()


def _w(spec, b=3, gen=None):
    return random_weights(spec, b, generator=gen, dtype=torch.float64)


def _id(v):
    return v if isinstance(v, str) else "-".join(map(str, v.values())) or "default"


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("name,config", VARIANTS, ids=_id)
def test_dense_path_equals_sparse_graph(name, config, spec_name, gen):
    spec = SPECS[spec_name]
    if name == "scalegmn" and config.get("symmetry") == "sign" and resolve_symmetry(spec) != "sign":
        pytest.skip("sign symmetry needs odd activations")
    model = _model(name, spec, **config)
    w = _w(spec, gen=gen)
    torch.testing.assert_close(model(w), model(model.graph(w)))


@pytest.mark.parametrize("name", MODELS)
def test_mixed_architectures_batch_together(name, gen):
    spec_a = SPECS["siren"]
    spec_b = NetworkSpec.mlp([2, 5, 7, 3, 1], activation="sine", omega=30.0)
    spec_c = NetworkSpec.siren(2, [4], 1)
    model = _model(name, spec_a)
    ws = [_w(s, b, gen) for s, b in ((spec_a, 2), (spec_b, 3), (spec_c, 1))]
    out = model(NeuralGraph.cat([model.graph(w) for w in ws]))
    assert out.shape == (6, OUT)
    torch.testing.assert_close(out, torch.cat([model(w) for w in ws]))


@pytest.mark.parametrize("name", MODELS)
def test_several_input_channels(name, gen):
    spec = SPECS["cnn"]
    model = _model(name, spec, in_channels=2)
    w = random_weights(spec, 3, generator=gen, dtype=torch.float64, channels=2)
    out = model(w)
    assert out.shape == (3, OUT)
    torch.testing.assert_close(out, model(model.graph(w)))


@pytest.mark.parametrize("name", ["graph", "ngt", "scalegmn"])
def test_concatenating_readouts_need_the_models_output_count(name, gen):
    model = _model(name, SPECS["siren"], **({"readout": "last_layer"} if name == "scalegmn" else {}))
    other = NetworkSpec.siren(2, [8, 8], 2)
    mixed = NeuralGraph.cat([model.graph(_w(SPECS["siren"], 2, gen)), model.graph(_w(other, 2, gen))])
    with pytest.raises(ValueError, match="every network needs 1 outputs"):
        model(mixed)


@pytest.mark.parametrize("name", MODELS + ["ng-gnn-mnist-inr", "ng-t-mnist-inr", "scalegmn-mnist-inr"])
def test_a_batch_of_one_trains(name, gen):
    torch.manual_seed(0)
    model = create_model(name, MNIST_INR, out_features=10).train()
    w = random_weights(MNIST_INR, 1, generator=gen)
    out = model(w)
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    torch.testing.assert_close(model(w), model(model.graph(w)), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------- NG-T's edge mask
def _change(model, spec, w, tensor: str, layer: int) -> float:
    ws, bs = list(w.weights), list(w.biases)
    (ws if tensor == "W" else bs)[layer] = (ws if tensor == "W" else bs)[layer] + 1.0
    with torch.no_grad():
        return float((model(Weights(spec, tuple(ws), tuple(bs))) - model(w)).abs().max())


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_ngt_attends_to_neighbours_only(sparse, reverse, gen):
    # one layer: the output neuron attends to its predecessors (the last hidden layer) through
    # the states of the last weights' reverse edges, which read the weight only with
    # reverse_edge_features; an unmasked transformer (the reference's) would see every neuron
    spec = SPECS["siren"]  # 2 -> 8 -> 8 -> 1
    model = _model("ngt", spec, num_layers=1, reverse_edge_features=reverse)
    fn = (lambda x: model(model.graph(x))) if sparse else model
    w = _w(spec, gen=gen)
    assert _change(fn, spec, w, "b", 0) == 0.0  # first hidden layer: two hops away
    assert _change(fn, spec, w, "W", 0) == 0.0
    assert _change(fn, spec, w, "W", 1) == 0.0
    assert _change(fn, spec, w, "b", 1) > 1e-6  # the output neuron's neighbours
    assert (_change(fn, spec, w, "W", 2) > 1e-6) == reverse
    assert _change(fn, spec, w, "b", 2) > 1e-6  # its own bias


def test_ngt_reaches_the_whole_network_with_its_default_depth(gen):
    spec = SPECS["cnn"]
    model = _model("ngt", spec)
    assert len(model.layers) == spec.num_layers + 1
    w = _w(spec, 4, gen)
    assert_invariant(model, w, generator=gen)
    assert_not_invariant(model, w, generator=gen)


# ---------------------------------------------------------------------- ScaleGMN
@pytest.mark.parametrize("readout", ["full_graph", "last_layer"])
def test_scalegmn_is_invariant_to_sign_flips_and_permutations_of_sirens(readout, gen):
    spec = SPECS["siren"]
    model = _model("scalegmn", spec, readout=readout, num_layers=3)
    assert model.symmetry == "sign"
    w = _w(spec, 4, gen)
    assert_invariant(model, w, kinds=("permutation", "sign"), generator=gen)
    assert_invariant(lambda x: model(model.graph(x)), w, kinds=("permutation", "sign"), generator=gen)
    # it reads how the layers connect (the last-layer readout sees layer 0 only faintly at
    # initialisation, so permute the rows of the layer next to the output there)
    assert_not_invariant(model, w, layer=0 if readout == "full_graph" else 1, generator=gen)


def test_scalegmn_sees_signs_that_are_not_a_symmetry(gen):
    spec = SPECS["siren"]
    model = _model("scalegmn", spec)
    w = _w(spec, 4, gen)
    ws, bs = list(w.weights), list(w.biases)
    ws[0] = ws[0].clone()
    ws[0][:, :, 0] *= -1  # negate one neuron's incoming weights only (not its bias, not its outgoing ones)
    assert (model(Weights(spec, tuple(ws), tuple(bs))) - model(w)).abs().max() > 1e-6


SCALE, SIGN = ("permutation", "scale"), ("permutation", "sign")


@pytest.mark.parametrize("spec_name,kinds", [("mlp_relu", SCALE), ("mixed_bias", SCALE), ("cnn", SCALE),
                                             ("mlp_tanh_nobias", SIGN), ("width1", SIGN)])
def test_scalegmn_respects_each_specs_group(spec_name, kinds, gen):
    spec = SPECS[spec_name]
    model = _model("scalegmn", spec)
    assert model.symmetry == kinds[1]
    w = _w(spec, 4, gen)
    assert_invariant(model, w, kinds=kinds, generator=gen)
    if spec.layers[0].out_features > 1:
        assert_not_invariant(model, w, generator=gen)


def test_scalegmn_is_permutation_invariant_without_a_larger_group(gen):
    spec = NetworkSpec.mlp([3, 6, 5, 2], activation="gelu")
    assert resolve_symmetry(spec) == "permutation"
    assert resolve_symmetry(SPECS["cnn_max_tanh"]) == "permutation"  # tanh, but max pooling follows
    model = _model("scalegmn", spec)
    w = _w(spec, 4, gen)
    assert_invariant(model, w, generator=gen)
    assert_not_invariant(model, w, generator=gen)


def test_scalegmn_symmetry_choice_is_checked():
    assert resolve_symmetry(SPECS["siren"]) == "sign" and resolve_symmetry(SPECS["mlp_relu"]) == "scale"
    with pytest.raises(ValueError, match="symmetry='sign' needs every hidden layer.*relu"):
        create_model("scalegmn", SPECS["mlp_relu"], out_features=3, symmetry="sign")
    with pytest.raises(ValueError, match="symmetry='scale'"):
        create_model("scalegmn", SPECS["siren"], out_features=3, symmetry="scale")
    with pytest.raises(ValueError, match="symmetry must be one of"):
        create_model("scalegmn", SPECS["siren"], out_features=3, symmetry="phase")
    assert model_info("scalegmn").larger_group


# ---------------------------------------------------------------------- phase canonicalisation
@pytest.mark.parametrize("omega", [30.0, 1.0])
@pytest.mark.parametrize("shift_phase", [True, False])
def test_phase_canonicalize_keeps_the_function(omega, shift_phase, gen):
    spec = NetworkSpec.siren(2, [16, 12], 1, omega=omega)
    w = Weights.unflatten(spec, torch.randn(6, 1, spec.num_params, generator=gen, dtype=torch.float64) * 2)
    c = phase_canonicalize(w, shift_phase=shift_phase)
    x = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(forward(c, x), forward(w, x), rtol=1e-9, atol=1e-9)
    for b, b0 in zip(c.biases[:-1], w.biases[:-1]):
        assert (b >= 0).all()  # the reference's canonical sign
        if shift_phase:
            assert (b <= math.pi / (2 * omega) + 1e-12).all()
        else:
            torch.testing.assert_close(b, b0.abs())
    torch.testing.assert_close(c.biases[-1], w.biases[-1])  # the linear output layer is not touched
    again = phase_canonicalize(c, shift_phase=shift_phase)
    for a, b in zip(again.tensors(), c.tensors()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_phase_canonicalize_is_a_canonical_form_of_sign_flips(gen):
    spec = SPECS["siren"]
    w = _w(spec, 4, gen)
    from weightspace.core.symmetry import act, sample_group_element

    flipped = act(w, sample_group_element(spec, 4, kinds=("sign",), generator=gen))
    for a, b in zip(phase_canonicalize(flipped).tensors(), phase_canonicalize(w).tensors()):
        torch.testing.assert_close(a, b)
    # the sign step is invisible to ScaleGMN; the phase step is a genuine change of input
    model = _model("scalegmn", spec)
    torch.testing.assert_close(model(phase_canonicalize(w, shift_phase=False)), model(w))


def test_phase_canonicalize_touches_odd_biased_layers_only(gen):
    relu, tanh = SPECS["mlp_relu"], SPECS["mlp_tanh_nobias"]
    for spec in (relu, tanh):  # relu: no sign symmetry; tanh here: no biases to read a sign from
        w = _w(spec, 2, gen)
        for a, b in zip(phase_canonicalize(w).tensors(), w.tensors()):
            torch.testing.assert_close(a, b)
    t = NetworkSpec.mlp([3, 5, 2], activation="tanh")
    w = _w(t, 3, gen)
    c = phase_canonicalize(w)
    assert (c.biases[0] >= 0).all()
    torch.testing.assert_close(c.biases[0], w.biases[0].abs())  # sign only: tanh has no phase
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(forward(c, x), forward(w, x))
    with pytest.raises(ValueError, match="raw weights"):
        phase_canonicalize(random_weights(t, 2, channels=2))


# ---------------------------------------------------------------------- presets
def _mlp(d_in, hidden, d_out):  # ScaleGMN's mlp: Linear, LayerNorm, SiLU, Linear
    return d_in * hidden + hidden + 2 * hidden + hidden * d_out + d_out


def _lin(d_in, d_out, bias=True):
    return d_in * d_out + (d_out if bias else 0)


def _reference_counts(layout=(2, 32, 32, 1), classes=10):
    """Trainable parameters of the reference models on the MNIST INRs, from their module
    shapes (neural-graphs nn/gnn.py, nn/relational_transformer.py, nn/graph_constructor.py;
    scalegmn src/scalegmn/*.py), and of the parts our models hold differently."""
    n_in, n_out, L = layout[0], layout[-1], len(layout) - 1
    node_types = n_in + (L - 1) + n_out  # positional embeddings: inputs, hidden layers, outputs
    edge_types = n_in + (L - 2) + n_out

    def constructor(d_node, d_edge, sin=128):
        fourier = _lin(2 * sin, d_edge) + _lin(2 * sin, d_node)
        return node_types * d_node + fourier + _lin(d_node, d_node) + _lin(d_edge, d_edge)

    d = 32  # NG-GNN: 4 PNAConvs, 3 norms, 3 EdgeMLPs, 3-layer head
    conv = _lin(d, 2 * d) + _lin(2 * d, d) + _lin(9 * d, d) + _lin(d, d)
    head = _lin(n_out * d, d) + _lin(d, d) + _lin(d, classes)
    ng_gnn = constructor(d, d) + 4 * conv + 3 * 2 * d + 3 * 4 * _lin(d, d) + head
    dn, de = 64, 32  # NG-T: 4 RT layers (edge updates in 3), 2-layer head
    attn = _lin(dn, 3 * 128, False) + _lin(de, 4 * 128, False) + _lin(128, dn)
    node = _lin(dn, dn) + 2 * 2 * dn + _lin(dn, 128, False) + _lin(128, dn)
    edge = _lin(2 * de, 64) + 2 * _lin(dn, 64) + _lin(64, de) + _lin(de, 64, False) + _lin(64, de) + 2 * 2 * de
    ng_t = constructor(dn, de) + 4 * (attn + node) + 3 * edge + _lin(n_out * dn, 128) + _lin(128, classes)
    h = 128  # ScaleGMN: 4 layers (edge updates in 3), skips, readout
    hidden_branches = lambda d_in, d_rho: _mlp(d_in, h, h) + _mlp(d_in, h, d_rho)  # phi, rho of a gate
    msg = _lin(h, h, False) + _mlp(h, h, h) + hidden_branches(h, h)
    upd = _lin(2 * h, h, False) + _mlp(2 * h, h, h) + hidden_branches(2 * h, 2 * h)
    edge_upd = _mlp(2 * h, h, h) + _lin(h, h, False) + _mlp(h, h, h)
    layer = 2 * _lin(h, h, False) + msg + upd
    scalegmn = (2 * h + (node_types + edge_types) * h + 4 * layer + 3 * edge_upd + 4 * _lin(h, h, False)
                + _mlp(n_out * h, h, classes))
    # the reference's last layer keeps maps into hidden neurons that never get a gradient
    dead = hidden_branches(h, h) + hidden_branches(2 * h, 2 * h)
    return {"ng-gnn-mnist-inr": (ng_gnn, 0), "ng-t-mnist-inr": (ng_t, 0), "scalegmn-mnist-inr": (scalegmn, dead)}


def test_presets_match_the_reference_parameter_counts():
    expected = _reference_counts()
    assert {p: get_preset(p).model for p in expected} == {
        "ng-gnn-mnist-inr": "graph", "ng-t-mnist-inr": "ngt", "scalegmn-mnist-inr": "scalegmn"}
    assert expected["ng-gnn-mnist-inr"][0] == 92_010 and expected["ng-t-mnist-inr"][0] == 376_586
    assert expected["scalegmn-mnist-inr"][0] == 1_772_042
    for name, (reference, dead) in expected.items():
        model = create_model(name, MNIST_INR, out_features=10)
        # our embedding tables cover up to 16 inputs / 16 outputs / 16 layers; the reference's
        # exactly this layout: count the rows this spec uses
        tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
        unused = sum((m.num_embeddings * m.embedding_dim) for m in tables)
        used = sum(len(torch.cat(ids).unique()) * m.embedding_dim for m, ids in zip(
            tables, [model.limits.node_ids(MNIST_INR), [i.reshape(-1) for i in model.limits.edge_ids(MNIST_INR)]]))
        ours = sum(p.numel() for p in model.parameters()) - unused + used
        assert ours == reference - dead, name


def test_presets_carry_the_published_recipe():
    assert {"ng-gnn-mnist-inr", "ng-t-mnist-inr", "scalegmn-mnist-inr"} <= set(list_presets())
    published = {"ng-gnn-mnist-inr": 91.4, "ng-t-mnist-inr": 92.4, "scalegmn-mnist-inr": 96.57}
    for name, acc in published.items():
        p = get_preset(name)
        assert p.published == {"mnist-inr": acc}
        config = TrainConfig(**p.train)
        recipe = (config.batch_size, config.lr, config.epochs, config.grad_clip, config.warmup_steps)
        assert recipe == (128, 1e-3, 200, 10.0, 1000)
        assert config.optimizer == "adamw" and config.schedule == "constant"
        assert p.source and p.deviations
    assert get_preset("ng-t-mnist-inr").config["d_node"] == 64 and get_preset("ng-t-mnist-inr").config["num_heads"] == 8
    assert get_preset("scalegmn-mnist-inr").train["weight_decay"] == 0.01


def test_options_are_checked():
    with pytest.raises(ValueError, match="aggregators must be chosen from"):
        create_model("graph", SPECS["siren"], out_features=3, aggregators="mean+median")
    with pytest.raises(ValueError, match="norm must be"):
        create_model("graph", SPECS["siren"], out_features=3, norm="batch")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        create_model("ngt", SPECS["siren"], out_features=3, d_attn_hid=30, num_heads=4)
    with pytest.raises(ValueError, match="readout must be"):
        create_model("scalegmn", SPECS["siren"], out_features=3, readout="mean")
    with pytest.raises(ValueError, match="exceeds the model's limits"):
        create_model("ngt", NetworkSpec.mlp([20, 4, 1]), out_features=3)
