import numpy as np
import pandas as pd
import pytest
import torch

from tests.specs import SPECS, example_input, random_weights
from tests.tasks.hyperrep_zoo import SPEC, make_zoo
from weightspace import assert_invariant, assert_not_invariant, forward
from weightspace.core.tokens import tokenize
from weightspace.models.hyperrep import HyperRepConfig, HyperRepresentation
from weightspace.tasks.hyperrep import (
    embed,
    fit_hyperrep,
    invariance_gap,
    load_hyperrep,
    nt_xent,
    reconstruction_loss,
    save_hyperrep,
)
from weightspace.tasks.hyperrep_probe import PROBE_MAX_DIM, ProbeResult, probe_table, run_probes
from weightspace.tasks.hyperrep_sample import (
    SELECT_GRID,
    EmbeddingDensity,
    accuracy,
    decode_samples,
    fine_tune,
    novelty,
    random_networks,
    sample_embeddings,
    sample_from_zoo,
    select_bandwidth,
    select_good,
)
from weightspace.train import TrainConfig
from weightspace.zoo.search_space import spec_with_activation

SMALL = HyperRepConfig(d_model=32, num_heads=2, encoder_layers=1, decoder_layers=1, latent_tokens=2, latent_dim=8)
# specs with a hidden layer whose rows can be permuted (uncoupled) and a first layer of >1 neuron
SYMMETRIC = [n for n in SPECS if SPECS[n].permutation_groups() and SPECS[n].layers[0].out_features > 1]


def _model(spec, canonical=True, seed=0):
    torch.manual_seed(seed)
    model = HyperRepresentation(spec, HyperRepConfig(**{**SMALL.__dict__, "canonical": canonical})).eval()
    return model


@pytest.mark.parametrize("name", SYMMETRIC)
def test_canonical_encoder_is_permutation_invariant(name, gen):
    spec = SPECS[name]
    w = random_weights(spec, 6, generator=gen)
    model = _model(spec)
    model.fit_normalisation(w)
    with torch.no_grad():
        assert_invariant(model.encode, w, generator=gen)
        # ... but not constant: rewiring one layer's rows (not a symmetry) moves the embedding
        assert_not_invariant(model.encode, w, generator=gen)


def test_per_neuron_latents_keep_invariance_and_decode(gen):
    spec = SPECS["cnn"]
    torch.manual_seed(0)
    model = HyperRepresentation(spec, HyperRepConfig(**{**SMALL.__dict__, "latent_tokens": None})).eval()
    w = random_weights(spec, 4, generator=gen)
    model.fit_normalisation(w)
    with torch.no_grad():
        z = model.encode(w)
        assert z.shape == (4, model.layout.num_tokens * SMALL.latent_dim) == (4, model.embedding_dim)
        assert_invariant(model.encode, w, generator=gen)
        assert_not_invariant(model.encode, w, generator=gen)
        out = forward(model.decode(z), example_input(spec, 3, generator=gen))
    assert out.shape == (4, 3, spec.out_features) and torch.isfinite(out).all()


def test_layer_pooled_readout_is_each_layers_token_mean_and_std(gen):
    spec = SPECS["cnn"]
    torch.manual_seed(0)
    model = HyperRepresentation(spec, HyperRepConfig(**{**SMALL.__dict__, "latent_tokens": None})).eval()
    w = random_weights(spec, 5, generator=gen)
    model.fit_normalisation(w)
    with torch.no_grad():
        pooled = embed(model, w, readout="pooled")
        z = model.encode(w).view(5, model.layout.num_tokens, SMALL.latent_dim)
        assert_invariant(lambda x: model.encode_pooled(x), w, generator=gen)
        assert_not_invariant(lambda x: model.encode_pooled(x), w, generator=gen)
    assert pooled.shape == (5, model.pooled_dim) == (5, 2 * SMALL.latent_dim * spec.num_layers)
    d = SMALL.latent_dim
    for layer in range(spec.num_layers):  # mean block, then std block, layer by layer
        tokens = z[:, model.layer_ids == layer]
        assert torch.allclose(pooled[:, 2 * layer * d:(2 * layer + 1) * d], tokens.mean(1), atol=1e-6)
        assert torch.allclose(pooled[:, (2 * layer + 1) * d:(2 * layer + 2) * d], tokens.std(1, unbiased=False), atol=1e-6)
    # pooling is over the neurons of a layer, so it needs no canonical order: a model without one
    # gives the same pooled readout for tokens reordered inside a layer
    nc = HyperRepresentation(spec, HyperRepConfig(**{**SMALL.__dict__, "latent_tokens": None, "canonical": False}))
    zz = torch.randn(3, nc.layout.num_tokens * SMALL.latent_dim, generator=gen)
    first = (nc.layer_ids == 0).nonzero().squeeze(1)
    order = torch.arange(nc.layout.num_tokens)
    order[first] = first[torch.randperm(len(first), generator=gen)]
    shuffled = zz.view(3, -1, SMALL.latent_dim)[:, order].reshape(3, -1)
    assert torch.allclose(nc.pool_layers(zz), nc.pool_layers(shuffled), atol=1e-6)
    with pytest.raises(ValueError, match="one latent per neuron token"):
        _model(spec).pool_layers(torch.zeros(1, 16))
    with pytest.raises(ValueError, match="unknown readout"):
        embed(model, w, readout="mean")


def test_probe_table_has_a_column_per_feature_set_and_bold_best():
    rows = [ProbeResult(f, "mlp", "test_accuracy", "r2", v, 0.0)
            for f, v in (("statnn", 0.9), ("hyperrep", 0.5), ("hyperrep_pooled", 0.95))]
    table = probe_table(rows).splitlines()
    assert table[0] == "| target | metric | probe | hyper-rep (flat) | hyper-rep (layer-pooled) | StatNN | baseline |"
    assert table[2] == "| test_accuracy | r2 | mlp | 0.500 | **0.950** | 0.900 | 0.000 |"


def test_probe_dimension_bounds_apply_per_feature_set():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 8)) * np.array([10.0, 1, 1, 1, 1, 1, 1, 1])
    tables = {s: pd.DataFrame({"b": x[sl, 1]}) for s, sl in (("train", slice(0, 100)), ("test", slice(100, 200)))}
    feats = {name: {"train": x[:100], "test": x[100:]} for name in ("hyperrep", "statnn")}
    res = {r.features: r.value for r in run_probes(feats, tables, ["b"], probes=("linear",), max_dim={"hyperrep": 1})}
    assert res["hyperrep"] < 0.1 < 0.99 < res["statnn"]  # reduced to the dominant direction / probed whole
    assert PROBE_MAX_DIM["hyperrep_pooled"] is None and PROBE_MAX_DIM["hyperrep"] == 128
    # fewer train networks than the bound: as many components as networks (PCA's limit), no error
    few = {"hyperrep": {"train": x[:20], "test": x[100:]}}
    small = {"train": tables["train"][:20], "test": tables["test"]}
    assert len(run_probes(few, small, ["b"], probes=("linear",), max_dim=128)) == 1


def test_encoder_without_canonical_order_is_not_invariant(gen):
    spec = SPECS["cnn"]
    w = random_weights(spec, 16, generator=gen)
    model = _model(spec, canonical=False)
    model.fit_normalisation(w)
    with torch.no_grad(), pytest.raises(AssertionError, match="not invariant"):
        assert_invariant(model.encode, w, generator=gen)
    gap = invariance_gap(model, w)
    assert gap["relative"] > 0.05 and gap["max_abs"] > 1e-3
    canonical = _model(spec)
    canonical.fit_normalisation(w)
    assert invariance_gap(canonical, w)["max_abs"] < 1e-5


def test_reconstruction_loss_is_per_layer_and_ignores_padding(gen):
    spec = SPECS["cnn"]
    model = _model(spec)
    target = tokenize(random_weights(spec, 3, generator=gen), model.width)
    assert float(reconstruction_loss(target, target, model.layer_ids, model.mask)) == 0.0
    pad = torch.randn(target.shape, generator=gen) * ~model.mask
    assert float(reconstruction_loss(target + pad, target, model.layer_ids, model.mask)) == 0.0
    # an error of 1 on every entry of one layer only: that layer's MSE is 1, the others 0
    layer = int(model.layer_ids[-1])
    off = torch.zeros_like(target)
    off[:, model.layer_ids == layer] = 1.0
    got = float(reconstruction_loss(target + off, target, model.layer_ids, model.mask))
    assert got == pytest.approx(1.0 / spec.num_layers)


def test_nt_xent_prefers_matching_views(gen):
    a = torch.randn(8, 5, generator=gen)
    matched = nt_xent(a, a + 0.01 * torch.randn(8, 5, generator=gen))
    shuffled = nt_xent(a, a[torch.roll(torch.arange(8), 1)])
    assert matched < shuffled
    assert matched > 0


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("hz"))


@pytest.fixture(scope="module")
def trained(zoo):
    train, _ = zoo.load("train")
    val, _ = zoo.load("val")
    cfg = TrainConfig(epochs=4, batch_size=8, lr=3e-3, progress=False, accelerator="cpu", seed=0)
    return fit_hyperrep(train, val, model_config=SMALL, config=cfg)


def test_training_lowers_the_loss(trained):
    first, last = trained.history[0]["train/loss"], trained.history[-1]["train/loss"]
    assert last < first
    assert {"train/recon", "train/contrast", "val/loss"} <= set(trained.history[-1])


def test_decoding_a_sampled_embedding_gives_a_network_that_runs(zoo, trained, gen):
    weights, _ = zoo.load("train")
    z = sample_embeddings(embed(trained.model, weights), 5, seed=0)
    assert z.shape == (5, SMALL.latent_tokens * SMALL.latent_dim) and trained.model.embedding_dim == z.shape[1]
    nets = decode_samples(trained.model, z, spec_with_activation(SPEC, "tanh"))
    assert nets.spec.layers[0].activation == "tanh" and nets.spec.layers[-1].activation == "identity"
    out = forward(nets, example_input(SPEC, 7, generator=gen))
    assert out.shape == (5, 7, 10) and torch.isfinite(out).all()
    # a decoded network is a plain module too
    module = nets.to_module(0)
    torch.testing.assert_close(module(example_input(SPEC, 3, generator=gen)).shape, torch.Size([3, 10]))


def test_bandwidth_is_selected_on_other_images_than_the_test_images(zoo, trained, gen):
    weights, table = zoo.load("train")
    images = torch.rand(40, 1, 8, 8, generator=gen)
    labels = torch.randint(0, 10, (40,), generator=gen)
    test = (images[:20], labels[:20])
    with pytest.raises(ValueError, match="needs images to select on"):
        sample_from_zoo(trained.model, weights, table, test, n=4, bandwidth="select")
    report = sample_from_zoo(trained.model, weights, table, test, n=6, bandwidth="select", select=(images[20:], labels[20:]))
    assert set(report.selection) == set(SELECT_GRID) and report.bandwidth_rule == "select"
    # the kept bandwidth: the widest whose samples match the zoo's models on the selection images
    assert report.selection_reference is not None and 0 <= report.selection_reference <= 1
    reaching = [bw for bw in SELECT_GRID if report.selection[bw] >= report.selection_reference]
    want = max(reaching) if reaching else max(SELECT_GRID, key=lambda bw: (round(report.selection[bw], 6), bw))
    assert report.bandwidth == pytest.approx(want)
    assert report.sampled.shape == (6,) and report.novelty.shape == (6,)
    fixed = sample_from_zoo(trained.model, weights, table, test, n=6, bandwidth=0.5)
    assert fixed.bandwidth_rule == "fixed" and fixed.selection == {}


def test_select_bandwidth_prefers_the_widest_that_matches_the_zoo():
    accs = {1.0: 0.20, 0.5: 0.31, 0.25: 0.33, 0.1: 0.35}
    assert select_bandwidth(accs, reference=0.30) == 0.5  # 1.0 falls short; 0.5 is the widest that reaches it
    assert select_bandwidth(accs, reference=0.10) == 1.0
    assert select_bandwidth(accs, reference=0.90) == 0.1  # none reaches it: the most accurate
    assert select_bandwidth({1.0: 0.3, 0.5: 0.3}, reference=0.9) == 1.0  # ties go to the wider


def test_novelty_is_zero_for_copies_and_grows_with_distance(gen):
    good = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    density = EmbeddingDensity.fit(good, 0.5)
    assert torch.allclose(novelty(good[:4], good, density), torch.zeros(4, dtype=torch.float64))
    direction = torch.randn(1, 5, generator=gen, dtype=torch.float64)
    far = [float(novelty(good[:1] + t * direction, good, density)) for t in (0.0, 0.05, 100.0)]
    assert far[0] == 0.0 and 0.0 < far[1] < far[2] and far[2] > 5


def test_save_and_load_keep_the_embedding(tmp_path, zoo, trained):
    weights, _ = zoo.load("test")
    path = save_hyperrep(tmp_path / "m.safetensors", trained.model, {"zoo": "x"})
    model, info = load_hyperrep(path)
    assert info == {"zoo": "x"}
    torch.testing.assert_close(embed(model, weights), embed(trained.model, weights))
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a hyper-representation model"):
        load_hyperrep(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_hyperrep(tmp_path / "missing.safetensors")


def test_model_refuses_weights_of_another_architecture(gen):
    model = _model(SPECS["cnn"])
    with pytest.raises(ValueError, match="given to a model of"):
        model.encode(random_weights(SPECS["mlp_relu"], 2, generator=gen))
    # another activation only: accepted (zoos vary the activation per run)
    model.encode(random_weights(spec_with_activation(SPECS["cnn"], "tanh"), 2, generator=gen))


def test_probes_find_a_linear_property_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = x @ rng.normal(size=6)
    cat = np.where(x[:, 0] > 0, "a", "b")
    tables = {s: pd.DataFrame({"acc": y[sl], "kind": cat[sl], "noise": rng.normal(size=150)})
              for s, sl in (("train", slice(0, 150)), ("test", slice(150, 300)))}
    feats = {"hyperrep": {"train": x[:150], "test": x[150:]}}
    res = {(r.target, r.probe): r for r in run_probes(feats, tables, ["acc", "kind", "noise"], probes=("linear",))}
    assert res[("acc", "linear")].value > 0.99
    assert res[("kind", "linear")].metric == "accuracy" and res[("kind", "linear")].value > 0.9
    assert res[("noise", "linear")].value < 0.1


def test_select_good_takes_the_top_fraction():
    table = pd.DataFrame({"test_accuracy": np.arange(10) / 10})
    assert list(select_good(table, top_fraction=0.3)) == [7, 8, 9]
    with pytest.raises(KeyError, match="no column 'x'"):
        select_good(table, column="x")


def test_batched_accuracy_matches_modules_and_fine_tuning_learns(gen):
    spec = SPEC
    images = torch.randn(64, 1, 8, 8, generator=gen)
    labels = (images[:, 0, :4].mean(dim=(1, 2)) > 0).long()  # learnable from the pixels
    nets = random_networks(spec, 3, seed=1)
    acc = accuracy(nets, images, labels, nets=2)
    for k in range(3):
        pred = nets.to_module(k)(images).argmax(dim=1)
        assert acc[k] == pytest.approx(float((pred == labels).float().mean()))
    tuned, curve = fine_tune(nets, images, labels, steps=60, batch_size=32, lr=1e-2, eval_at=(0, 60), eval_data=(images, labels))
    assert set(curve) == {0, 60}
    assert curve[60].mean() > curve[0].mean()
    assert not torch.equal(tuned.weights[0], nets.weights[0])


def test_wide_features_are_reduced_to_their_leading_components():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8)) * np.array([10.0, 1, 1, 1, 1, 1, 1, 1])  # one dominant direction
    tables = {s: pd.DataFrame({"a": x[sl, 0], "b": x[sl, 1]}) for s, sl in (("train", slice(0, 100)), ("test", slice(100, 200)))}
    feats = {"hyperrep": {"train": x[:100], "test": x[100:]}}
    res = {r.target: r.value for r in run_probes(feats, tables, ["a", "b"], probes=("linear",), max_dim=1)}
    assert res["a"] > 0.99 and res["b"] < 0.1  # the one kept component carries a, not b
