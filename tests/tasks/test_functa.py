"""Functa workflow: a functaset is a zoo of latents that decode back to their signals;
meta-learning improves held-out reconstructions; latents classify through the one engine."""

import pytest
import torch

from weightspace.inr.meta import MetaConfig, encode, reconstruct
from weightspace.inr.modulated import ModulatedSiren, psnr
from weightspace.signals.images import load_digits
from weightspace.tasks.classify import classify_zoo
from weightspace.tasks.functa import (
    encode_functaset,
    fit_functa,
    functaset_latents,
    model_of,
    psnr_vs_inner_steps,
)
from weightspace.train import TrainConfig
from weightspace.zoo.store import Zoo
from weightspace.zoo.vectors import read_vectors

META = MetaConfig(steps=60, batch_size=32, inner_steps=3, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    ds = load_digits(limit=60)
    out = tmp_path_factory.mktemp("functa")
    return ds, fit_functa(ds, out, hidden=(16, 16), latent_dim=8, meta=META)


def test_functaset_is_a_zoo_of_latents_that_decode_to_the_table_psnr(fitted):
    ds, res = fitted
    zoo = Zoo.open(res.functaset.path)
    assert zoo.provenance["kind"] == "functa" and zoo.provenance["inner_steps"] == 3
    z, table = read_vectors(zoo)
    assert z.shape == (len(ds), 8) and table["label"].tolist() == ds.labels.tolist()
    decoded = psnr(reconstruct(model_of(zoo), z, ds.coordinates()), ds.targets())
    assert torch.allclose(decoded, torch.tensor(table["psnr"].to_numpy(), dtype=torch.float32), atol=1e-3)


def test_meta_learning_improves_held_out_psnr_after_k_steps(fitted):
    ds, res = fitted
    test = ds.select_split("test")
    initial = ModulatedSiren(res.model.config)  # same seed: the network meta-learning started from
    before = psnr_vs_inner_steps(initial, test.coordinates(), test.targets(), [3])[3]
    curve = psnr_vs_inner_steps(res.model, test.coordinates(), test.targets(), [0, 3])
    assert curve[3] > before + 3.0, (before, curve)
    assert curve[3] > curve[0] + 1.0


def test_encoding_a_training_signal_again_recovers_its_latent(fitted, tmp_path):
    ds, res = fitted
    train = ds.select_split("train")
    zoo = encode_functaset(res.model, train, tmp_path / "again", steps=3)
    stored = functaset_latents(res.functaset, "train")
    again, _ = read_vectors(zoo)
    assert torch.allclose(again, stored, atol=1e-5)
    stored_psnr = res.functaset.table.loc[res.functaset.split("train"), "psnr"].to_numpy()
    assert torch.allclose(torch.tensor(zoo.table["psnr"].to_numpy()), torch.tensor(stored_psnr), atol=1e-4)
    # the latent carries the signal: it reconstructs better than the unadapted network
    zero = psnr(reconstruct(res.model, torch.zeros_like(stored), train.coordinates()), train.targets())
    assert (torch.tensor(stored_psnr) > zero.double()).all()
    # a different signal gives a different latent (the check above is not vacuous)
    other = encode(res.model, train.targets().flip(1), 3, coords=train.coordinates())
    assert not torch.allclose(other, stored, atol=1e-3)


def test_latents_classify_with_the_flat_mlp(fitted):
    _, res = fitted
    result = classify_zoo(res.functaset, "mlp", config=TrainConfig(epochs=15, progress=False, batch_size=32))
    assert result.test_acc > 0.3  # 10 classes: chance is 0.1
