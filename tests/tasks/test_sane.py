"""SANE: tokenisation (exact round trips, the reference's chunking and positions), the
windowed autoencoder, training, embedding, sampling and its file."""

from __future__ import annotations

import math

import pytest
import torch

from tests.specs import SPECS
from weightspace.core.sane_tokens import (
    layout_of_spec,
    state_from_tokens,
    tokenize_layers,
    tokenize_state,
    tokenize_weights,
    weights_from_tokens,
)
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.sane import Sane, SaneConfig
from weightspace.tasks.sane import (
    LayerStats,
    SaneTask,
    SaneWindows,
    TokenZoo,
    decode_latents,
    embed,
    encode_tokens,
    fit_sane,
    kde_token_sample,
    load_sane,
    save_sane,
    standardised_tokens,
    weights_from_standardised,
)
from weightspace.train import TrainConfig
from weightspace.zoo.reference_cnns import CNNConfig, build_cnn

TINY = SaneConfig(tokensize=4, d_model=16, heads=2, layers=1, latent_dim=4, window=6, projection_dim=5,
                  max_positions=(64, 8, 16))


def random_weights(spec: NetworkSpec, n: int, seed: int = 0) -> Weights:
    g = torch.Generator().manual_seed(seed)
    return Weights.unflatten(spec, torch.randn(n, spec.num_params, generator=g)[:, None])


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("tokensize", [3, 7, 64])
def test_weights_round_trip_is_exact(name, tokensize):
    spec = SPECS[name]
    w = random_weights(spec, 3)
    tokens, layout = tokenize_weights(w, tokensize)
    assert tokens.shape == (3, layout.num_tokens, tokensize)
    # padding entries are zero and the real ones are exactly the network's values
    assert (tokens[:, ~layout.mask] == 0).all()
    assert int(layout.mask.sum()) == spec.num_params
    back = weights_from_tokens(tokens, spec, tokensize)
    for a, b in zip(w.tensors(), back.tensors()):
        assert torch.equal(a, b)
    # whatever a decoder writes into padding is ignored
    noisy = tokens + torch.randn_like(tokens) * (~layout.mask)
    for a, b in zip(w.tensors(), weights_from_tokens(noisy, spec, tokensize).tensors()):
        assert torch.equal(a, b)


def test_chunks_and_positions_follow_the_reference_rule():
    # Linear(3 -> 2) with bias, tokens of 2: row j = [w_j0, w_j1, w_j2, b_j] -> two tokens
    spec = NetworkSpec.mlp([3, 2, 1])
    w = random_weights(spec, 1)
    tokens, layout = tokenize_weights(w, 2)
    w0, b0 = w.weights[0][0, 0], w.biases[0][0, 0]
    expect = torch.stack([w0[0, :2], torch.stack([w0[0, 2], b0[0]]), w0[1, :2], torch.stack([w0[1, 2], b0[1]])])
    assert torch.equal(tokens[0, :4], expect)
    # layer 1: Linear(2 -> 1), row [w, w, b] -> [w, w], [b, pad]
    assert tokens.shape[1] == 6 and tokens[0, 5, 1] == 0 and not layout.mask[5, 1]
    assert layout.positions.tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 1], [3, 0, 1], [4, 1, 0], [5, 1, 0]]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_layout_counts(name):
    spec = SPECS[name]
    layout = layout_of_spec(spec, 5)
    rows = [math.prod(la.weight_shape[1:]) + int(la.bias) for la in spec.layers]
    assert layout.num_tokens == sum(la.out_features * -(-r // 5) for la, r in zip(spec.layers, rows))
    pos = layout.positions
    assert torch.equal(pos[:, 0], torch.arange(layout.num_tokens))
    # every neuron's chunks are consecutive and share (layer, neuron)
    for i, la in enumerate(spec.layers):
        k = pos[pos[:, 1] == i, 2]
        assert torch.equal(k, torch.arange(la.out_features).repeat_interleave(-(-rows[i] // 5)))


def test_resnet20_state_dict_round_trip():
    model = build_cnn(CNNConfig("resnet20", in_channels=1, width=8), seed=0)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tokens, layout = tokenize_state(state, 64)
    convs = [k for k, v in state.items() if k.endswith("weight") and v.dim() >= 2]
    assert [la.name for la in layout.layers] == convs  # normalisation layers are left out
    assert int(layout.mask.sum()) == sum(state[k].numel() + (state[k[:-6] + "bias"].numel() if k[:-6] + "bias" in state
                                                              else 0) for k in convs)
    # decode into a reference whose token-held tensors differ: those come from the tokens
    other = {k: (torch.zeros_like(v) if k in convs or k.replace("weight", "bias") in convs else v) for k, v in state.items()}
    back = state_from_tokens(tokens, layout, other)
    assert back.keys() == state.keys()
    for k in state:
        assert torch.equal(back[k], state[k]), k


def test_tokenize_layers_checks_shapes():
    layout = layout_of_spec(NetworkSpec.mlp([3, 2]), 4)
    with pytest.raises(ValueError, match="layer 0"):
        tokenize_layers([(torch.zeros(1, 2, 4), torch.zeros(1, 2))], layout)
    with pytest.raises(ValueError, match="no weight tensor"):
        tokenize_state({"bn.weight": torch.ones(3)}, 4)


def test_standardisation_round_trip_and_stats_for_other_depths():
    spec = SPECS["cnn"]
    w = random_weights(spec, 6)
    stats = LayerStats.fit(w, 5)
    tokens, layout = standardised_tokens(w, stats, 5)
    real = tokens[:, layout.mask]
    assert abs(float(real.mean())) < 0.5  # standardised per layer: every layer has mean 0, std 1
    for i in range(spec.num_layers):
        vals = tokens[:, layout.positions[:, 1] == i][:, layout.mask[layout.positions[:, 1] == i]]
        assert float(vals.mean()) == pytest.approx(0.0, abs=1e-5) and float(vals.std()) == pytest.approx(1.0, abs=1e-4)
    back = weights_from_standardised(tokens, spec, stats, 5)
    for a, b in zip(w.tensors(), back.tensors()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    deeper = stats.for_layers(6)
    assert torch.equal(deeper.mean[[0, 1, 2, 2, 2, 5]], deeper.mean)  # middle layers repeat the last hidden one
    assert deeper.mean[5] == stats.mean[3] and deeper.mean[2] == stats.mean[2]


def test_model_windows_cover_any_length_and_networks_are_independent():
    torch.manual_seed(0)
    model = Sane(TINY).eval()
    spec = SPECS["mlp_relu"]  # 5 + 4 * 2 ... tokens: not a multiple of the window
    w = random_weights(spec, 4)
    stats = LayerStats.fit(w, TINY.tokensize)
    n_tokens = layout_of_spec(spec, TINY.tokensize).num_tokens
    assert n_tokens % TINY.window
    z = encode_tokens(model, w, stats)
    assert z.shape == (4, n_tokens, TINY.latent_dim)
    alone = encode_tokens(model, w[2:3], stats)
    torch.testing.assert_close(alone[0], z[2])
    e = embed(model, w, stats)
    torch.testing.assert_close(e, z.mean(dim=1))
    out = decode_latents(model, z, spec, stats)
    assert out.spec == spec and len(out) == 4


def test_positions_beyond_the_tables_fail_clearly():
    model = Sane(TINY)
    tokens = torch.zeros(1, 3, TINY.tokensize)
    pos = torch.tensor([[[0, 0, 0], [1, 9, 0], [2, 0, 0]]])
    with pytest.raises(ValueError, match="layer 9 is beyond"):
        model.encode(tokens, pos)
    with pytest.raises(ValueError, match="window"):
        model.project(torch.zeros(1, 3, TINY.latent_dim))


def test_windows_batch_mixes_architectures_and_views():
    a, b = SPECS["mlp_relu"], SPECS["cnn"]
    zoos = [TokenZoo(n, random_weights(s, 5, i), LayerStats.fit(random_weights(s, 5, i), 4)) for i, (n, s) in
            enumerate([("a", a), ("b", b)])]
    data = SaneWindows(zoos, TINY, supersample=2, seed=0)
    assert len(data) == 20
    batch = data[[0, 3, 6, 9, 12, 19]]
    assert batch["v1"].shape == (6, TINY.window, 4) and batch["pos"].shape == (6, TINY.window, 3)
    # windows are consecutive tokens, and each view is zero on padding
    assert (batch["pos"][:, 1:, 0] - batch["pos"][:, :-1, 0] == 1).all()
    assert (batch["v1"][~batch["mask"]] == 0).all() and (batch["v2"][~batch["mask"]] == 0).all()
    same = SaneWindows(zoos, TINY, permute=False)[[0, 7]]
    assert torch.equal(same["v1"], same["v2"])
    with pytest.raises(ValueError, match="fewer than the window"):
        SaneWindows([TokenZoo("d", random_weights(SPECS["depth1"], 2), LayerStats.fit(random_weights(SPECS["depth1"], 2), 4))],
                    TINY)


def test_training_lowers_the_loss_and_the_file_round_trips(tmp_path):
    train = {"mlp": random_weights(SPECS["mlp_relu"], 48, 1), "cnn": random_weights(SPECS["cnn"], 48, 2)}
    val = {"mlp": random_weights(SPECS["mlp_relu"], 16, 3)}
    cfg = TrainConfig(epochs=6, batch_size=16, lr=3e-3, weight_decay=0.0, progress=False)
    r = fit_sane(train, val, config=TINY, train_config=cfg, task=SaneTask(seed=0))
    first, last = r.history[0]["train/recon"], r.history[-1]["train/recon"]
    assert last < 0.9 * first
    path = save_sane(tmp_path / "sane.safetensors", r, info={"zoos": ["mlp", "cnn"]})
    model, stats, info = load_sane(path)
    assert info == {"zoos": ["mlp", "cnn"]} and set(stats) == {"mlp", "cnn"}
    torch.testing.assert_close(embed(model, train["cnn"], stats["cnn"]), embed(r.model, train["cnn"], r.stats["cnn"]))
    (tmp_path / "other.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_sane(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_sane(tmp_path / "missing.safetensors")
    # right names, wrong shapes (another config): a ValueError naming the file, not a traceback
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors["tokenizer.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(tmp_path / "shapes.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="wrong shapes"):
        load_sane(tmp_path / "shapes.safetensors")
    save_file(tensors, str(tmp_path / "meta.safetensors"), metadata={**meta, "config": '{"tokensize": "x"}'})
    with pytest.raises(ValueError, match="unreadable SANE metadata"):
        load_sane(tmp_path / "meta.safetensors")


def test_kde_token_sample_draws_each_token_from_an_anchor():
    anchors = torch.randn(3, 10, 4)
    s = kde_token_sample(anchors, 5, bandwidth=0.0, seed=1)
    assert s.shape == (5, 10, 4)
    for t in range(10):
        assert all(any(torch.equal(s[i, t], anchors[a, t]) for a in range(3)) for i in range(5))
    noisy = kde_token_sample(anchors, 2000, bandwidth=0.5, seed=2)
    assert float((noisy - noisy.mean(0)).std()) > 0.5  # the bandwidth spreads the draws


@pytest.mark.parametrize("name", ["mlp_relu", "cnn", "cnn_max_tanh", "mixed_bias"])
def test_widen_preserves_the_function(name):
    from dataclasses import replace

    from tests.specs import example_input
    from weightspace.core.functional import forward
    from weightspace.tasks.sane import widen

    spec = SPECS[name]  # (max pooling too: a copied channel's maximum is its original's)
    layers = list(spec.layers)
    wider_layers = []
    for i, la in enumerate(layers):
        out = la.out_features if i == len(layers) - 1 else la.out_features + 3
        inp = la.in_features if i == 0 else wider_layers[-1].out_features
        wider_layers.append(replace(la, in_features=inp, out_features=out))
    wider = NetworkSpec(tuple(wider_layers), pool=spec.pool)
    w = random_weights(spec, 3)
    big = widen(w, wider, seed=1)
    assert big.spec == wider
    x = example_input(spec, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(forward(big, x), forward(w, x), rtol=1e-5, atol=1e-5)
    # the copies are real copies: widening is not the identity on the weights
    assert big.weights[0].shape[2] == w.weights[0].shape[2] + 3
    with pytest.raises(ValueError, match="not a widening"):
        widen(big, spec)


def test_kde_model_sample_keeps_each_sample_within_one_anchor():
    from weightspace.tasks.sane import kde_model_sample

    anchors = torch.randn(4, 7, 3)
    s = kde_model_sample(anchors, 6, bandwidth=0.0, seed=0)
    assert all(any(torch.equal(s[i], anchors[a]) for a in range(4)) for i in range(6))
