import pytest
import torch

from tests.specs import SPECS, example_input
from weightspace import Weights, act, assert_invariant, assert_not_invariant, forward, permute
from weightspace.core.symmetry import function_preserving_kinds, sample_group_element, uncoupled_permutation


def _weights(spec, seeds=4):
    return Weights.from_modules([spec.build_module(seed=s).double() for s in range(seeds)])


@pytest.mark.parametrize("per_network", [False, True], ids=["shared", "per-network"])
@pytest.mark.parametrize("name", SPECS)
def test_permuting_hidden_neurons_keeps_every_function(name, per_network, gen):
    spec = SPECS[name]
    w = _weights(spec)
    x = example_input(spec, generator=gen, dtype=torch.float64)
    perms = spec.sample_permutation(len(w) if per_network else None, generator=gen)
    w2 = permute(w, perms)
    torch.testing.assert_close(forward(w2, x), forward(w, x), rtol=1e-10, atol=1e-10)
    if spec.num_layers > 1 and max(g.size for g in spec.permutation_groups()) > 1:
        # the weights themselves did change (so the check above is not vacuous)
        assert any(not torch.equal(a, b) for a, b in zip(w.tensors(), w2.tensors()))


@pytest.mark.parametrize("name", SPECS)
def test_every_function_preserving_kind_preserves_function(name, gen):
    spec = SPECS[name]
    w = _weights(spec)
    x = example_input(spec, generator=gen, dtype=torch.float64)
    kinds = function_preserving_kinds(spec)
    assert_invariant(lambda v: forward(v, x), w, kinds=kinds, generator=gen, rtol=1e-9, atol=1e-9)


def test_sign_flip_and_scale_are_real_group_actions(gen):
    # tanh admits sign flips but not scaling; relu admits scaling but not sign flips.
    tanh, relu = SPECS["width1"], SPECS["mlp_relu"]
    g = sample_group_element(tanh, 3, kinds=("sign", "scale"), generator=gen)
    assert all(s is None for s in g.scales) and all(s is not None for s in g.signs)
    g = sample_group_element(relu, 3, kinds=("sign", "scale"), generator=gen)
    assert all(s is None for s in g.signs) and all(s is not None for s in g.scales)


def test_forcing_a_sign_flip_on_relu_changes_the_function(gen):
    # Proves the functional checks above can fail: negating relu neurons is not a symmetry.
    spec = SPECS["mlp_relu"]
    w = _weights(spec)
    x = example_input(spec, generator=gen, dtype=torch.float64)
    g = sample_group_element(spec, len(w), kinds=("permutation",), generator=gen)
    signs = tuple(-torch.ones(len(w), grp.size) for grp in spec.permutation_groups())
    bad = act(w, type(g)(g.permutations, signs, g.scales))
    assert (forward(bad, x) - forward(w, x)).abs().max() > 1e-3


@pytest.mark.parametrize("name", [n for n in SPECS if SPECS[n].layers[0].out_features > 1])
def test_uncoupled_permutation_breaks_function(name, gen):
    spec = SPECS[name]
    w = _weights(spec)
    x = example_input(spec, generator=gen, dtype=torch.float64)
    assert_not_invariant(lambda v: forward(v, x), w, layer=0, generator=gen)
    perm = torch.roll(torch.arange(spec.layers[0].out_features), 1)
    bad = uncoupled_permutation(w, 0, perm)
    assert (forward(bad, x) - forward(w, x)).abs().max() > 1e-3


def test_assert_not_invariant_rejects_a_constant_model(gen):
    w = _weights(SPECS["mlp_relu"])
    with pytest.raises(AssertionError, match="ignores how the layers connect"):
        assert_not_invariant(lambda v: torch.zeros(len(v), 3), w, generator=gen)


def test_assert_invariant_rejects_a_non_invariant_function(gen):
    w = _weights(SPECS["mlp_relu"])
    with pytest.raises(AssertionError, match="not invariant to permutation"):
        assert_invariant(lambda v: v.weights[0][:, 0, :, 0], w, generator=gen)
