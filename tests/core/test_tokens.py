import math

import pytest
import torch

from tests.specs import SPECS, random_weights
from weightspace.core.tokens import TokenLayout, detokenize, token_width, tokenize


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", SPECS)
def test_tokenize_then_detokenize_is_exact(name, channels, dtype, gen):
    spec = SPECS[name]
    w = random_weights(spec, 5, generator=gen, dtype=dtype, channels=channels)
    for width in (None, token_width(spec, channels) + 7):  # tight and extra padding
        toks = tokenize(w, width)
        back = detokenize(toks, spec, channels)
        assert all(torch.equal(a, b) for a, b in zip(w.tensors(), back.tensors()))
        assert [b is None for b in back.biases] == [not layer.bias for layer in spec.layers]


@pytest.mark.parametrize("name", SPECS)
def test_each_token_is_one_neurons_incoming_weights_and_bias(name, gen):
    # oracle: token of (layer i, neuron j) = W_i[j].flatten() ++ b_i[j] ++ zeros
    spec = SPECS[name]
    w = random_weights(spec, 2, generator=gen)
    layout = TokenLayout(spec, token_width(spec) + 2)
    toks = tokenize(w, layout.width)
    assert toks.shape == (2, layout.num_tokens, layout.width)
    assert int(layout.mask.sum()) == spec.num_params  # every entry once, padding excluded
    for t, (i, j) in enumerate(zip(layout.layer_ids.tolist(), layout.neuron_ids.tolist())):
        expected = w.weights[i][:, 0, j].flatten(1)
        if w.biases[i] is not None:
            expected = torch.cat([expected, w.biases[i][:, 0, j : j + 1]], dim=1)
        n = expected.shape[1]
        assert torch.equal(toks[:, t, :n], expected)
        assert toks[:, t, n:].eq(0).all() and layout.mask[t].sum() == n


def test_detokenize_ignores_padding_and_names_bad_shapes(gen):
    spec = SPECS["cnn"]
    w = random_weights(spec, 3, generator=gen)
    toks = tokenize(w)
    noisy = toks + torch.randn(toks.shape, generator=gen) * ~TokenLayout(spec, toks.shape[2]).mask
    assert all(torch.equal(a, b) for a, b in zip(detokenize(noisy, spec).tensors(), w.tensors()))
    with pytest.raises(ValueError, match="tokens \\[B, "):
        detokenize(toks[:, 1:], spec)
    with pytest.raises(ValueError, match="too small"):
        detokenize(toks[:, :, :-1], spec)
    with pytest.raises(ValueError, match="too small"):
        tokenize(w, 3)


def test_width_counts_channels_kernel_and_bias():
    spec = SPECS["cnn"]  # conv(1->4, 3x3), conv(4->3, 3x3), ...
    assert token_width(spec) == 4 * 9 + 1
    assert token_width(spec, channels=2) == 2 * (4 * 9 + 1)
    assert TokenLayout(spec, 40).num_tokens == sum(layer.out_features for layer in spec.layers)
    assert math.prod(TokenLayout(spec, 40).mask.shape) == TokenLayout(spec, 40).num_tokens * 40
