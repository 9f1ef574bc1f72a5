import dataclasses

import pytest
import torch
from torch import nn

from weightspace import Weights, forward
from weightspace.inr.siren import DWSNETS, NFN, get_recipe
from weightspace.signals import load_digits
from weightspace.zoo.build import build_inr_zoo
from weightspace.zoo.fit_inr import fit_inrs
from weightspace.zoo.store import Zoo


@pytest.fixture(scope="module")
def digits():
    return load_digits(limit=8)


def test_batched_fit_equals_fitting_each_network_alone(digits):
    recipe = get_recipe("dwsnets", steps=25, early_stop_psnr=None)
    coords, targets = digits.coordinates(), digits.targets()[:3]
    together = fit_inrs(coords, targets, recipe, [5, 6, 7])
    for i, seed in enumerate([5, 6, 7]):
        alone = fit_inrs(coords, targets[i : i + 1], recipe, [seed])
        for a, b in zip(together.weights[i].tensors(), alone.weights.tensors()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_stacked_adam_matches_torch_adam(digits):
    # one network trained the textbook way: nn.Module + torch.optim.Adam
    recipe = get_recipe("nfn", steps=20)
    coords, targets = digits.coordinates(), digits.targets()[:1]
    ours = fit_inrs(coords, targets, recipe, [3])
    spec = recipe.spec(2, 1)
    module = recipe.init(spec, [3]).to_module(0)
    opt = torch.optim.Adam(module.parameters(), lr=recipe.lr)
    y = recipe.encode_targets(targets[0]) - recipe.output_offset
    for _ in range(recipe.steps):
        opt.zero_grad()
        nn.functional.mse_loss(module(coords), y).backward()
        opt.step()
    ref = Weights.from_modules([module])
    for a, b in zip(ours.weights.tensors(), ref.tensors()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_stacked_adam_reads_strided_gradients_and_keeps_state_per_network():
    from weightspace.zoo.fit_inr import _StackedAdam

    gen = torch.Generator().manual_seed(0)
    start = torch.randn(4, 3, 2, generator=gen)
    grads = [torch.randn(4, 2, 3, generator=gen).transpose(1, 2) for _ in range(4)]  # strided, as the hand step makes
    ours = _StackedAdam([start.clone().requires_grad_()], lr=0.1)
    ref = [start[k].clone().requires_grad_() for k in range(4)]  # one textbook Adam per network
    ref_opts = [torch.optim.Adam([r], lr=0.1, foreach=False) for r in ref]
    for step, g in enumerate(grads):
        if step == 2:  # networks 1 and 3 leave the batch: the others keep their moments
            ours.keep(torch.tensor([True, False, True, False]))
        live = [0, 1, 2, 3] if step < 2 else [0, 2]
        ours.params[0].grad = g[live]
        ours.step()
        for k in live:
            ref[k].grad = g[k].contiguous()
            ref_opts[k].step()
    torch.testing.assert_close(ours.params[0].detach(), torch.stack([ref[0], ref[2]]).detach())


def test_early_stopping_is_per_network_and_psnr_is_of_the_stored_weights(digits):
    recipe = dataclasses.replace(DWSNETS, steps=300, early_stop_psnr=25.0)
    coords, targets = digits.coordinates(), digits.targets()
    res = fit_inrs(coords, targets, recipe, list(range(len(targets))))
    assert (res.steps < recipe.steps).any() and len(set(res.steps.tolist())) > 1
    stopped = res.steps < recipe.steps
    assert (res.psnr[stopped] >= 25.0).all()
    # decode the stored weights independently: the recorded PSNR is theirs
    out = forward(res.weights, coords) + recipe.output_offset
    mse = (out - recipe.encode_targets(targets)).square().mean(dim=(1, 2))
    torch.testing.assert_close(recipe.psnr(mse), res.psnr, rtol=1e-4, atol=1e-3)


def test_fitting_improves_on_the_initial_network(digits):
    recipe = get_recipe("dwsnets", steps=100)
    coords, targets = digits.coordinates(), digits.targets()
    res = fit_inrs(coords, targets, recipe, list(range(len(targets))))
    init = recipe.init(res.weights.spec, list(range(len(targets))))
    init_mse = (recipe.render(init, coords) - targets).square().mean(dim=(1, 2))
    assert (recipe.psnr(init_mse) + 5 < res.psnr).all()


def test_nan_targets_are_refused(digits):
    t = digits.targets()[:2].clone()
    t[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_inrs(digits.coordinates(), t, NFN, [0, 1])


def test_build_zoo_records_everything_and_resumes_identically(tmp_path, digits):
    recipe = get_recipe("dwsnets", steps=30)
    zoo = build_inr_zoo(digits, tmp_path / "z", recipe, shard_size=5, progress=False)
    assert len(zoo) == len(digits) and zoo.complete
    assert {"source_index", "label", "split", "psnr", "steps", "seed"} <= set(zoo.table.columns)
    assert zoo.table["label"].tolist() == digits.labels[zoo.table["source_index"].to_numpy().copy()].tolist()
    assert sorted(zoo.table["source_index"]) == list(range(len(digits)))  # each signal once, in a shuffled order
    first_shard = zoo.table.loc[zoo.table["shard"] == 0, "label"]
    assert first_shard.nunique() > 1  # not class order: a prefix of the zoo is a sample of it
    assert zoo.provenance["recipe"]["name"] == "dwsnets[steps=30]"
    first = zoo.weights()
    (tmp_path / "z" / "shards" / "00001.safetensors").unlink()  # lose a shard and its table rows
    zoo.table[zoo.table["shard"] == 0].to_parquet(tmp_path / "z" / "table.parquet")
    again = build_inr_zoo(digits, tmp_path / "z", recipe, shard_size=5, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.tensors(), again.weights().tensors()))
    assert Zoo.open(tmp_path / "z").table["id"].tolist() == list(range(len(digits)))
