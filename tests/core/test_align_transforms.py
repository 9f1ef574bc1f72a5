import pytest
import torch

from tests.specs import SPECS, example_input, random_weights
from weightspace import forward, permute
from weightspace.core.align import align, canonicalize
from weightspace.core.symmetry import act, function_preserving_kinds, sample_group_element
from weightspace.core.transforms import (
    AlignedMixup,
    GaussianNoise,
    RandomSymmetry,
    Standardize,
    WeightDropout,
)


@pytest.mark.parametrize("name", ["siren", "mlp_relu", "cnn", "mlp_tanh_nobias"])
def test_weight_matching_undoes_a_permutation(name, gen):
    spec = SPECS[name]
    ref = random_weights(spec, 1, generator=gen, dtype=torch.float64)
    moved = permute(ref.map(lambda t: t.expand(3, *t.shape[1:]).clone()), spec.sample_permutation(3, generator=gen))
    aligned, perms = align(moved, ref)
    for t_al, t_ref in zip(aligned.tensors(), ref.tensors()):
        torch.testing.assert_close(t_al, t_ref.expand_as(t_al))
    assert all(p.shape[0] == 3 for p in perms)


@pytest.mark.parametrize("name", ["siren", "mlp_relu", "mlp_tanh_nobias", "cnn", "cnn_max_tanh", "mixed_bias"])
def test_canonicalize_is_invariant_and_keeps_the_function(name, gen):
    spec = SPECS[name]
    w = random_weights(spec, 4, generator=gen, dtype=torch.float64)
    canon = canonicalize(w)
    x = example_input(spec, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(forward(canon, x), forward(w, x))
    g = sample_group_element(spec, 4, kinds=function_preserving_kinds(spec), generator=gen)
    again = canonicalize(act(w, g))
    for a, b in zip(canon.tensors(), again.tensors()):
        torch.testing.assert_close(a, b)


def test_noise_dropout_are_seeded_and_leave_input_alone(gen):
    w = random_weights(SPECS["siren"], 4, generator=gen)
    before = [t.clone() for t in w.tensors()]
    for tf in (GaussianNoise(0.1), WeightDropout(0.3), RandomSymmetry(("permutation", "sign"))):
        a = tf(w, torch.Generator().manual_seed(1))
        b = tf(w, torch.Generator().manual_seed(1))
        c = tf(w, torch.Generator().manual_seed(2))
        assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors()))
        assert any(not torch.equal(x, y) for x, y in zip(a.tensors(), c.tensors()))
        assert all(torch.equal(x, y) for x, y in zip(w.tensors(), before))
    dropped = WeightDropout(0.3)(w, gen)
    frac = float(sum((t == 0).sum() for t in dropped.tensors()) / sum(t.numel() for t in w.tensors()))
    assert 0.2 < frac < 0.4


def test_standardize_keeps_permutation_symmetry(gen):
    spec = SPECS["mlp_relu"]
    w = random_weights(spec, 6, generator=gen, dtype=torch.float64)
    norm = Standardize.fit(w)
    perms = spec.sample_permutation(6, generator=gen)
    for a, b in zip(norm(permute(w, perms)).tensors(), permute(norm(w), perms).tensors()):
        torch.testing.assert_close(a, b)


def test_aligned_mixup_interpolates_aligned_partners(gen):
    spec = SPECS["siren"]
    base = random_weights(spec, 1, generator=gen, dtype=torch.float64)
    # every network is a permuted copy of one network: once aligned, mixing changes nothing
    w = permute(base.map(lambda t: t.expand(4, *t.shape[1:]).clone()), spec.sample_permutation(4, generator=gen))
    labels = torch.tensor([0, 1, 2, 1])
    mixed, soft = AlignedMixup(num_classes=3, alpha=0.4)(w, labels, gen)
    x = example_input(spec, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(forward(mixed, x), forward(w, x))
    assert soft.shape == (4, 3)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(4, dtype=soft.dtype))
