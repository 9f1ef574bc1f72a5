import pytest
import torch

from tests.specs import SPECS, example_input, random_weights
from weightspace import forward, permute
from weightspace.core.align import align, canonicalize
from weightspace.core.symmetry import act, function_preserving_kinds, sample_group_element
from weightspace.core.transforms import (
    AlignedMixup,
    GaussianNoise,
    InputAffine,
    InRawSpace,
    RandomSymmetry,
    Standardize,
    WeightDropout,
    acts_on_raw_weights,
    parse_augmentation,
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


@pytest.mark.parametrize("name", ["mlp_relu", "cnn", "mlp_tanh_nobias", "siren"])
def test_canonical_order_separates_neurons_with_identical_incoming_weights(name, gen):
    # two hidden neurons with the same incoming weights and bias (dead units of a trained zoo)
    # but different outgoing weights: their order must not depend on the input's order. The
    # neuron order alone, as the hyper-representation encoder uses it: with sign flips or
    # rescaling, copies differ again by rounding and the sort follows the rounding.
    spec = SPECS[name]
    w = random_weights(spec, 3, generator=gen)
    w.weights[0][:, :, 1] = w.weights[0][:, :, 0]
    if w.biases[0] is not None:
        w.biases[0][:, :, 1] = w.biases[0][:, :, 0]
    canon = canonicalize(w, signs=False, scales=False)
    for _ in range(3):
        again = canonicalize(permute(w, spec.sample_permutation(3, generator=gen)), signs=False, scales=False)
        for a, b in zip(canon.tensors(), again.tensors()):
            assert torch.equal(a, b)


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


def test_input_affine_maps_the_signal_domain_exactly(gen):
    """f'(x) = f(a x + t) for the sampled a, t: the INR of a rotated, rescaled, shifted image."""
    spec = SPECS["siren"]
    assert spec.layers[0].in_features == 2
    w = random_weights(spec, 5, generator=gen, dtype=torch.float64)
    aug = InputAffine()
    a, t = aug.sample(5, torch.Generator().manual_seed(3))
    moved = aug(w, torch.Generator().manual_seed(3))  # __call__ = apply(sample) under the same stream
    for x, y in zip(moved.tensors(), InputAffine.apply(w, a, t).tensors()):
        assert torch.equal(x, y)
    coords = torch.rand(64, 2, generator=gen, dtype=torch.float64) * 2 - 1
    mapped = coords @ a.transpose(1, 2) + t.unsqueeze(1)  # [5, 64, 2]: each network its own map
    torch.testing.assert_close(forward(moved, coords), forward(w, mapped))
    assert not torch.allclose(forward(moved, coords), forward(w, coords))  # it did move the signal
    # the ranges hold: |angle| <= 45 degrees, scale within 1 +- 0.2, shift within 0.25
    scale = torch.linalg.det(a).sqrt()
    assert ((scale >= 0.8) & (scale <= 1.2)).all() and (t.abs() <= 0.25).all()
    assert (torch.atan2(a[:, 1, 0], a[:, 0, 0]).abs() <= torch.pi / 4 + 1e-12).all()


def test_input_affine_refuses_networks_it_cannot_map(gen):
    with pytest.raises(ValueError, match="2-D coordinates"):
        InputAffine()(random_weights(SPECS["cnn"], 2, generator=gen), gen)
    w = random_weights(SPECS["siren"], 2, generator=gen)
    feats = w.map(lambda x: x.expand(x.shape[0], 3, *x.shape[2:]))
    with pytest.raises(ValueError, match="C = 3"):
        InputAffine()(feats, gen)


def test_raw_space_transforms_run_behind_standardisation(gen):
    w = random_weights(SPECS["siren"], 4, generator=gen, dtype=torch.float64)
    norm = Standardize.fit(w)
    for x, y in zip(norm.invert(norm(w)).tensors(), w.tensors()):
        torch.testing.assert_close(x, y)
    aug = parse_augmentation("sign+affine")
    # a permutation commutes with per-tensor standardisation; a sign flip does not (nonzero means)
    assert acts_on_raw_weights(aug) and acts_on_raw_weights(parse_augmentation("sign,permutation"))
    assert not acts_on_raw_weights(parse_augmentation("permutation"))
    wrapped = InRawSpace(aug, norm)(norm(w), torch.Generator().manual_seed(5))
    direct = norm(aug(w, torch.Generator().manual_seed(5)))
    for x, y in zip(wrapped.tensors(), direct.tensors()):
        torch.testing.assert_close(x, y)
    # applying the domain map to standardised weights directly would be wrong (the shift of the mean)
    naive = aug(norm(w), torch.Generator().manual_seed(5))
    assert any(not torch.allclose(x, y) for x, y in zip(naive.tensors(), direct.tensors()))


def test_parse_augmentation():
    assert parse_augmentation("") is None
    aug = parse_augmentation("permutation+sign+affine+noise")
    assert [type(t).__name__ for t in aug.transforms] == ["RandomSymmetry", "InputAffine", "GaussianNoise"]
    assert aug.transforms[0].kinds == ("permutation", "sign")
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        parse_augmentation("sign+rotate")
