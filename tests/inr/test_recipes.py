"""The published SIREN recipes, checked against the reference repositories' code."""

from __future__ import annotations

import math

import torch

from weightspace.inr.siren import DWSNETS, NFN, get_recipe


def _bounds(recipe, seeds=range(64)):
    w = recipe.init(recipe.spec(2, 1), list(seeds))
    return [float(t.abs().max()) for t in w.weights], [float(b.abs().max()) for b in w.biases]


def test_nfn_recipe_is_the_original_siren() -> None:
    # NFN experiments/siren_utils.py: SineLayer(is_first) U(-1/in, 1/in); hidden and outermost
    # linear U(-sqrt(6/in)/30, ..); biases nn.Linear's default U(-1/sqrt(in), ..); 2->32->32->1
    assert NFN.hidden == (32, 32) and NFN.omega == 30.0 and NFN.target_range == (-1.0, 1.0)
    assert NFN.output_offset == 0.0 and NFN.lr == 5e-5 and NFN.steps == 5000 and NFN.early_stop_psnr is None
    w, b = _bounds(NFN)
    limits = [1 / 2, math.sqrt(6 / 32) / 30, math.sqrt(6 / 32) / 30]
    assert all(0.9 * lim < got <= lim for got, lim in zip(w, limits))
    assert all(
        0.9 * lim < got <= lim
        for got, lim in zip(b, [1 / math.sqrt(2), 1 / math.sqrt(32), 1 / math.sqrt(32)])
    )
    spec = NFN.spec(2, 3)
    assert [l.activation for l in spec.layers] == ["sine", "sine", "identity"] and spec.layers[
        0
    ].omega == 30.0


def test_dwsnets_recipe() -> None:
    # DWSNets nn/inr.py: Siren(is_first=False) U(-sqrt(6/in)/30, ..) with zero biases,
    # then nn.Linear; output + 0.5
    assert DWSNETS.output_offset == 0.5 and DWSNETS.target_range == (0.0, 1.0)
    assert DWSNETS.lr == 5e-4 and DWSNETS.steps == 1000 and DWSNETS.early_stop_psnr == 40.0
    w, b = _bounds(DWSNETS)
    assert 0.9 * math.sqrt(6 / 2) / 30 < w[0] <= math.sqrt(6 / 2) / 30
    assert 0.9 * math.sqrt(6 / 32) / 30 < w[1] <= math.sqrt(6 / 32) / 30
    assert 0.9 / math.sqrt(32) < w[2] <= 1 / math.sqrt(32)
    assert b[0] == b[1] == 0.0
    # decode: network output + 0.5 is the pixel value in [0, 1]
    assert torch.equal(DWSNETS.decode(torch.tensor([-0.5, 0.0, 0.5])), torch.tensor([0.0, 0.5, 1.0]))


def test_recipes_are_recorded_with_overrides_in_the_name() -> None:
    r = get_recipe("nfn", steps=10)
    assert r.name == "nfn[steps=10]" and r.to_dict()["steps"] == 10 and r.version == NFN.version
