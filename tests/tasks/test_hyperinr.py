"""HyperINR workflow: codes and generated weights written as zoos that decode like fitted ones."""

import torch

from weightspace.core.functional import forward
from weightspace.inr.hyper import HyperINRConfig, load_hyperinr
from weightspace.inr.render import reconstruct
from weightspace.signals.images import load_digits
from weightspace.tasks.hyperinr import MODEL_FILE, encode_dataset, fit_dataset
from weightspace.zoo.vectors import read_vectors

SMALL = HyperINRConfig(code_dim=8, hidden=(32,), inr_hidden=(8, 8), steps=150, batch_size=16, encode_steps=60)


def test_fit_writes_codes_and_weights_zoos_that_agree(tmp_path):
    ds = load_digits(limit=8)
    res = fit_dataset(ds, tmp_path, SMALL)
    codes, table = read_vectors(res.codes_zoo)
    assert torch.equal(codes, res.codes) and table["split"].tolist() == list(ds.split)
    assert res.weights_zoo.spec == res.model.spec and len(res.weights_zoo) == len(ds)
    # the stored weights are exactly the networks the codes generate
    w = res.weights_zoo.weights()
    assert torch.allclose(w.flatten()[:, 0], res.model.flat(codes).detach())
    # and the weights zoo decodes through the generic renderer to the table's PSNR
    rec = reconstruct(res.weights_zoo, range(len(ds)), dataset=ds)
    assert torch.allclose(torch.tensor(rec.psnr), torch.tensor(rec.table_psnr), atol=1e-3)
    # every held-out signal was encoded with the hypernetwork fixed: its code is not the init
    held = [i for i, s in enumerate(ds.split) if s != "train"]
    assert (codes[held].norm(dim=1) > 0).all()


def test_encode_with_a_stored_model_matches_the_fit(tmp_path):
    ds = load_digits(limit=8)
    res = fit_dataset(ds, tmp_path / "a", SMALL)
    model, meta = load_hyperinr(tmp_path / "a" / MODEL_FILE)
    assert meta["dataset"] == ds.name
    test = ds.select_split("test")
    again = encode_dataset(model, test, tmp_path / "b")
    held = [i for i, s in enumerate(ds.split) if s == "test"]
    # same model, same signals, same steps: the same codes as the fit's encoding of the test split
    assert torch.allclose(again.codes, res.codes[held], atol=1e-5)
    assert forward(again.weights_zoo.weights(), test.coordinates()).shape == (len(test), 64, 1)
