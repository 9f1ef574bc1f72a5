"""NFN (Zhou et al., NeurIPS 2023): NP and HNP layers, pooling, encodings, classifiers, presets.

Completeness is counted with `weightspace.core.basis`: ``commutant`` is the dimension of the
linear maps commuting with the group, ``realised`` what a one-channel layer spans over its
parameters. The reference figures below (parameter counts, pooled sizes, 74 of 75) were measured
once on the reference code (AllanYangZhou/nfn, nfn/layers) with weights copied into these layers,
whose outputs then agreed to 1e-15.
"""

import numpy as np
import pytest
import torch

from tests.specs import SPECS, random_weights
from weightspace import Weights, assert_equivariant, assert_invariant, assert_not_invariant
from weightspace.core.basis import basis_report, jacobian
from weightspace.core.spec import LayerSpec, NetworkSpec
from weightspace.models.nfn import GaussianFourierFeatures, IOSinusoidalEncoding
from weightspace.models.nfn_layers import HNPLinear, HNPPool, NPLinear, NPPool
from weightspace.models.registry import create_model, get_preset
from weightspace.train import TrainConfig

MLP_2331 = NetworkSpec.mlp([2, 3, 3, 1])
MLP_2342 = NetworkSpec.mlp([2, 3, 4, 2])  # every neuron set has >= 2 neurons: no two NP terms coincide
CNN = NetworkSpec(  # conv 2->3 (2x2), conv 3->3 (1x1), global average pool, linear 3->2
    (LayerSpec("conv", 2, 3, (2, 2), activation="relu"), LayerSpec("conv", 3, 3, (1, 1), activation="relu"),
     LayerSpec("linear", 3, 2)),
    pool="avg",
)
SMALL_CNN = NetworkSpec(
    (LayerSpec("conv", 2, 2, (2, 1)), LayerSpec("conv", 2, 2, (1, 1)), LayerSpec("linear", 2, 2)), pool="avg"
)


def _layer(cls, spec, cin=1, cout=1, **kw):
    torch.manual_seed(0)
    return cls(spec, cin, cout, **kw).double()


def permute_io(w: Weights, p_in: torch.Tensor, p_out: torch.Tensor) -> Weights:
    """Permute the input neurons (W_0's columns) and the output neurons (W_{L-1}'s rows and
    b_{L-1}): the part of NP's group that the hidden-neuron group leaves out."""
    ws, bs = list(w.weights), list(w.biases)
    ws[0] = ws[0].index_select(3, p_in)
    ws[-1] = ws[-1].index_select(2, p_out)
    if bs[-1] is not None:
        bs[-1] = bs[-1].index_select(2, p_out)
    return Weights(w.spec, tuple(ws), tuple(bs))


def _io_perms(spec):
    # a cyclic shift: not the identity wherever a set has >= 2 neurons
    return torch.roll(torch.arange(spec.in_features), 1), torch.roll(torch.arange(spec.out_features), 1)


def _max_diff(a, b):
    if isinstance(a, Weights):
        return max(float((x - y).detach().abs().max()) for x, y in zip(a.tensors(), b.tensors()))
    return float((a - b).detach().abs().max())


# ---------------------------------------------------------------------- completeness
@pytest.mark.parametrize(
    "spec,commutant", [(MLP_2331, 57), (MLP_2342, 62), (CNN, 164)], ids=["2-3-3-1", "2-3-4-2", "cnn"]
)
def test_np_layer_is_complete_for_the_group_of_every_neuron(spec, commutant):
    r = basis_report(_layer(NPLinear, spec), spec, io="permutable")
    print(f"NP {spec.describe()}: commutant {r.commutant}, realised {r.realised}")
    assert (r.commutant, r.realised) == (commutant, commutant) and r.max_violation < 1e-10 and r.complete


_NP_TERMS = [n for n, _ in NPLinear(MLP_2342, 1, 1).named_parameters() if not n.endswith(".bias")]


def test_np_terms_are_the_reference_terms_and_independent():
    # 6 maps per layer; blocks: self 1, global 2L, in 1 (+2 after the first layer), out 2 (+1 before the last)
    assert len(_NP_TERMS) == 62 and "w_1_in.w.b0" in _NP_TERMS and "b_2_global.w.W0_all" in _NP_TERMS
    # with one channel each block is one scalar; the 62 single-block maps are independent, so they
    # are a basis of the 62-dimensional commutant and dropping any one loses exactly one dimension
    layer = _layer(NPLinear, MLP_2342)
    params = dict(layer.named_parameters())
    maps = []
    with torch.no_grad():
        for p in params.values():
            p.zero_()
        for term in _NP_TERMS:
            params[term].fill_(1.0)
            maps.append(jacobian(layer, MLP_2342).reshape(-1))
            params[term].zero_()
    assert np.linalg.matrix_rank(np.stack(maps)) == 62


# one block of every kind (self, global, in, out; for weight and bias outputs; first, middle, last layer)
_SAMPLE_TERMS = [
    "w_0_self.w.W0", "w_0_in.w.W0_in", "w_0_out.w.W1_in", "w_1_global.w.W0_all", "w_1_global.w.b2_all",
    "w_1_in.w.W1_in", "w_1_in.w.W0_out", "w_1_in.w.b0", "w_1_out.w.W1_out", "w_1_out.w.b1", "w_1_out.w.W2_in",
    "b_1_out.w.W1_out", "b_1_out.w.b1", "b_1_out.w.W2_in", "b_1_global.w.b0_all", "w_2_out.w.b2", "b_2_global.w.W2_all",
]


@pytest.mark.parametrize("term", _SAMPLE_TERMS)
def test_removing_an_np_term_makes_it_incomplete(term):
    assert term in _NP_TERMS
    r = basis_report(_layer(NPLinear, MLP_2342), MLP_2342, io="permutable", exclude=lambda n: n == term)
    assert (r.commutant, r.realised) == (62, 61) and not r.complete


@pytest.mark.parametrize(
    "spec,commutant,realised",
    [(MLP_2331, 75, 74), (MLP_2342, 114, 112), (SMALL_CNN, 174, 172)],
    ids=["2-3-3-1", "2-3-4-2", "cnn"],
)
def test_hnp_layer_realises_what_the_reference_realises(spec, commutant, realised):
    # the reference misses b_{L-2} -> W_{L-1}: n_out dimensions for one channel (a linear last layer)
    r = basis_report(_layer(HNPLinear, spec), spec, io="fixed")
    print(f"HNP {spec.describe()}: commutant {r.commutant}, reference realises {r.realised}")
    assert (r.commutant, r.realised) == (commutant, realised) and realised == commutant - spec.out_features
    assert r.max_violation < 1e-10


def test_the_map_hnp_misses_is_b_before_last_into_the_last_weight():
    full = basis_report(_layer(HNPLinear, MLP_2331, complete=True), MLP_2331, io="fixed")
    assert (full.commutant, full.realised) == (75, 75) and full.complete
    layer = _layer(HNPLinear, MLP_2331, complete=True)
    back = basis_report(layer, MLP_2331, io="fixed", exclude=lambda n: n == "w_2_in.w.b1")
    assert back.realised == 74


def test_single_layer_hnp_is_dense():
    spec = NetworkSpec.mlp([2, 3])  # no hidden neurons: every linear map commutes with the trivial group
    r = basis_report(_layer(HNPLinear, spec), spec, io="fixed")
    assert r.commutant == spec.num_params**2 and r.complete


# ---------------------------------------------------------------------- the reference's sizes
@pytest.mark.parametrize(
    "spec,np_params,hnp_params,np_pool,hnp_pool",
    [
        (MLP_2331, 816, 1236, 6, 7),
        (NetworkSpec.mlp([2, 4, 1]), 432, 744, 4, 5),
        (NetworkSpec.mlp([3, 5, 4, 6, 2]), 1296, 2900, 8, 12),
        (NetworkSpec((LayerSpec("conv", 2, 3, (2, 2)), LayerSpec("conv", 3, 4, (3, 1)), LayerSpec("linear", 4, 5),
                      LayerSpec("linear", 5, 2)), pool="avg"), 3944, 8360, 13, 19),
    ],
    ids=["2-3-3-1", "2-4-1", "3-5-4-6-2", "cnn"],
)
def test_parameter_counts_and_pool_sizes_match_the_reference(spec, np_params, hnp_params, np_pool, hnp_pool):
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(NPLinear(spec, 3, 4)) == np_params and count(HNPLinear(spec, 3, 4)) == hnp_params
    assert NPPool.num_outputs(spec) == np_pool and HNPPool.num_outputs(spec) == hnp_pool
    w = random_weights(spec, 2, channels=3)
    assert NPPool(spec)(w).shape == (2, 3 * np_pool) and HNPPool(spec)(w).shape == (2, 3 * hnp_pool)


# ---------------------------------------------------------------------- equivariance
@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize("cls", [NPLinear, HNPLinear])
def test_layers_are_equivariant_to_hidden_permutations(cls, spec_name, gen):
    spec = SPECS[spec_name]
    layer = _layer(cls, spec, 2, 3)
    w = random_weights(spec, 3, generator=gen, dtype=torch.float64, channels=2)  # missing biases: zeros
    out = layer(w)
    assert out.channels == 3 and all(b is not None for b in out.biases)
    assert [la.weight_shape for la in out.spec.layers] == [la.weight_shape for la in spec.layers]
    assert_equivariant(layer, w.with_biases_filled(), generator=gen)
    if spec.layers[0].out_features > 1:
        assert_not_invariant(layer, w.with_biases_filled(), generator=gen)


@pytest.mark.parametrize("spec_name", list(SPECS))
def test_np_layer_and_pool_respect_input_and_output_permutations_hnp_do_not(spec_name, gen):
    spec = SPECS[spec_name]
    w = random_weights(spec, 3, generator=gen, dtype=torch.float64, channels=2).with_biases_filled()
    p_in, p_out = _io_perms(spec)
    moved = permute_io(w, p_in, p_out)
    np_layer, hnp_layer = _layer(NPLinear, spec, 2, 3), _layer(HNPLinear, spec, 2, 3)
    assert _max_diff(np_layer(moved), permute_io(np_layer(w), p_in, p_out)) < 1e-10
    assert _max_diff(NPPool(spec)(moved), NPPool(spec)(w)) < 1e-10
    if spec.in_features > 1:  # HNP tells inputs apart
        assert _max_diff(hnp_layer(moved), permute_io(hnp_layer(w), p_in, p_out)) > 1e-6
        assert _max_diff(HNPPool(spec)(moved), HNPPool(spec)(w)) > 1e-6


def test_pools_are_invariant_and_not_constant(gen):
    for spec in (SPECS["siren"], SPECS["cnn"]):
        w = random_weights(spec, 3, generator=gen, dtype=torch.float64, channels=2)
        for pool in (NPPool(spec), HNPPool(spec), NPPool(spec, "max"), HNPPool(spec, "sum")):
            assert_invariant(pool, w, generator=gen)
    with pytest.raises(ValueError, match="agg must be one of"):
        NPPool(SPECS["siren"], "median")


# ---------------------------------------------------------------------- encodings
def test_gaussian_fourier_features_are_nfns_map_and_seeded():
    spec = SPECS["mlp_tanh_nobias"]
    state = torch.random.get_rng_state()
    enc = GaussianFourierFeatures(1, 4, scale=10.0, seed=3).double()
    assert torch.equal(torch.random.get_rng_state(), state), "building must not move the global RNG"
    assert torch.equal(enc.B, GaussianFourierFeatures(1, 4, scale=10.0, seed=3).double().B)
    assert "B" in dict(enc.named_buffers()) and not list(enc.parameters())
    w = random_weights(spec, 2, dtype=torch.float64)
    out = enc(w)
    x = w.weights[0]  # [B, 1, out, in]
    ang = 2 * torch.pi * x * enc.B[0].view(1, 4, 1, 1)
    torch.testing.assert_close(out.weights[0], torch.cat([ang.sin(), ang.cos()], dim=1))
    assert out.channels == 8 and out.biases == (None, None)
    assert 5.0 < float(GaussianFourierFeatures(1, 4096, 10.0).B.std()) < 15.0  # B ~ N(0, scale^2)


def test_io_encoding_codes_inputs_and_outputs_only(gen):
    spec = SPECS["mlp_relu"]  # 3 -> 5 -> 4 -> 2
    enc = IOSinusoidalEncoding(spec, max_freq=10.0, num_bands=6)
    w = random_weights(spec, 2, generator=gen, dtype=torch.float64)
    out = enc(w)
    assert out.channels == 1 + 13
    torch.testing.assert_close(out.weights[1][:, 1:], torch.zeros_like(out.weights[1][:, 1:]))  # hidden: zeros
    first = out.weights[0][0, 1:]  # [13, 5, 3]: one code per input neuron, the same on every row
    assert torch.equal(first, first[:, :1].expand_as(first)) and not torch.allclose(first[:, 0, 0], first[:, 0, 1])
    assert_equivariant(enc, w, generator=gen)  # hidden permutations leave the codes alone


# ---------------------------------------------------------------------- models
def test_nfn_np_is_invariant_to_input_and_output_permutations_nfn_hnp_is_not(gen):
    spec = SPECS["mlp_relu"]
    w = random_weights(spec, 3, generator=gen, dtype=torch.float64)
    p_in, p_out = _io_perms(spec)
    for name, invariant in (("nfn_np", True), ("nfn_hnp", False)):
        torch.manual_seed(0)
        model = create_model(name, spec, out_features=3).double().eval()
        diff = _max_diff(model(permute_io(w, p_in, p_out)), model(w))
        assert (diff < 1e-10) if invariant else (diff > 1e-6), (name, diff)
    # the reference's NP classifier codes input/output neurons (and pools with HNPPool)
    torch.manual_seed(0)
    coded = create_model("nfn_np", spec, out_features=3, io_encoding=True, pool="hnp").double().eval()
    assert _max_diff(coded(permute_io(w, p_in, p_out)), coded(w)) > 1e-6
    assert_invariant(coded, w, generator=gen)


def test_classifier_options():
    spec = SPECS["siren"]
    m = create_model("nfn_hnp", spec, out_features=10, hidden_channels=8, num_layers=3, fourier=False,
                     head_hidden=32, dropout=0.0)
    assert len(m.layers) == 3 and m.fourier is None
    assert [la.out_features for la in m.head if isinstance(la, torch.nn.Linear)] == [32, 32, 10]
    assert isinstance(m.pool, HNPPool) and isinstance(create_model("nfn_np", spec, out_features=2).pool, NPPool)
    with pytest.raises(ValueError, match="pool must be 'np' or 'hnp'"):
        create_model("nfn_np", spec, out_features=2, pool="dws")


@pytest.mark.parametrize("name", ["nfn_np_eq", "nfn_hnp_eq"])
def test_editors_start_near_zero_and_keep_the_spec(name, gen):
    spec = SPECS["mixed_bias"]
    torch.manual_seed(0)
    model = create_model(name, spec).double()
    w = random_weights(spec, 2, generator=gen, dtype=torch.float64)
    out = model(w)
    assert out.spec == spec and max(float(t.detach().abs().max()) for t in out.tensors()) < 0.1
    assert isinstance(model.layers[0], NPLinear if name == "nfn_np_eq" else HNPLinear)


# ---------------------------------------------------------------------- presets
def test_presets_hold_the_reference_recipe():
    hnp, np_ = get_preset("nfn-hnp-mnist-inr"), get_preset("nfn-np-mnist-inr")
    assert (hnp.model, np_.model) == ("nfn_hnp", "nfn_np")
    assert hnp.published == {"mnist-inr": 79.1} and np_.published == {}
    for p in (hnp, np_):
        c = p.config
        assert (c["hidden_channels"], c["num_layers"], c["fourier_features"], c["fourier_scale"]) == (512, 3, 128, 10.0)
        assert (tuple(c["head_hidden"]), c["dropout"], c["pool"]) == ((1000, 1000), 0.5, "hnp")
        cfg = TrainConfig(**p.train)
        assert (cfg.optimizer, cfg.lr, cfg.warmup_steps, cfg.batch_size, cfg.schedule) == ("adam", 1e-4, 10_000, 32, "constant")
        assert cfg.epochs == round(200_000 * 32 / 45_000) and cfg.weight_decay == 0.0 and cfg.grad_clip is None
    assert np_.config["io_encoding"] and not hnp.config["io_encoding"]


@pytest.mark.parametrize("name,expected", [("nfn-hnp-mnist-inr", 68_844_330), ("nfn-np-mnist-inr", 45_668_650)])
def test_preset_parameter_count_on_the_mnist_inr_spec(name, expected):
    spec = NetworkSpec.siren(2, [32, 32], 1)  # NFN's MNIST SIRENs
    with torch.device("meta"):  # count without allocating ~70M weights
        model = create_model(name, spec, out_features=10)
    n = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n:,} parameters (reference modules: {expected:,})")
    assert n == expected  # the reference's InvariantNFN with the same config, counted module by module
    if name == "nfn-hnp-mnist-inr":
        assert abs(n - 69e6) / 69e6 < 0.01  # the published ~69M
