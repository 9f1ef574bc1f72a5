"""Importers: tiny datasets written in the DWSNets and NFN layouts round-trip into zoos."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from weightspace import forward
from weightspace.inr.siren import DWSNETS, NFN
from weightspace.signals import grid_coordinates
from weightspace.zoo.importers import import_dwsnets, import_nfn


class _DWSSiren(nn.Module):  # the parameter layout of DWSNets' nn/inr.py::Siren
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim_out, dim_in) * 0.1)
        self.bias = nn.Parameter(torch.randn(dim_out) * 0.1)

    def forward(self, x):
        return torch.sin(30.0 * nn.functional.linear(x, self.weight, self.bias))


def _dws_inr() -> nn.Module:  # DWSNets' INR: seq = Siren, Siren, Linear; forward = seq(x) + 0.5
    m = nn.Module()
    m.seq = nn.Sequential(_DWSSiren(2, 32), _DWSSiren(32, 32), nn.Linear(32, 1))
    return m


def _write_dwsnets(root, n_per_split=(3, 2, 2)):
    """Files under <root>/mnist_png_<split>/<label>_<k>/checkpoints/net.pth; splits.json with absolute
    paths of another machine (as their generate_data_splits.py writes them)."""
    torch.manual_seed(0)
    splits, sds = {}, {}
    for name, n in zip(("train", "val", "test"), n_per_split):
        paths, labels = [], []
        for k in range(n):
            rel = f"mnist_png_{name}/{(k * 3) % 10}_{k}/checkpoints/net.pth"
            (root / rel).parent.mkdir(parents=True)
            sd = _dws_inr().state_dict()
            torch.save(sd, root / rel)
            sds[rel] = sd
            paths.append(f"/home/someone/DWSNets/dataset/mnist-inrs/{rel}")
            labels.append(str((k * 3) % 10))
        splits[name] = {"path": paths, "label": labels}
    (root / "mnist_splits.json").write_text(json.dumps(splits))
    return splits, sds


def test_dwsnets_round_trip(tmp_path) -> None:
    root = tmp_path / "dws"
    splits, sds = _write_dwsnets(root)
    zoo = import_dwsnets(root, tmp_path / "zoo", swap_xy=False, shard_size=3)
    t = zoo.table
    assert len(zoo) == 7 and zoo.spec.describe() == DWSNETS.spec(2, 1).describe()
    assert t["split"].tolist() == ["train"] * 3 + ["val"] * 2 + ["test"] * 2
    assert t["label"].tolist() == [int(x) for s in ("train", "val", "test") for x in splits[s]["label"]]
    w = zoo.weights()
    for n, rel in enumerate(t["path"]):
        sd = w.to_state_dict(
            n,
            keys=[
                ("seq.0.weight", "seq.0.bias"),
                ("seq.1.weight", "seq.1.bias"),
                ("seq.2.weight", "seq.2.bias"),
            ],
        )
        assert sd.keys() == sds[rel].keys() and all(torch.equal(sd[k], sds[rel][k]) for k in sd)
    prov = zoo.provenance
    assert prov["recipe"] == DWSNETS.to_dict() and prov["imported_from"]["format"] == "dwsnets"
    assert prov["signal_shape"] == [28, 28, 1]


def test_dwsnets_swap_makes_their_images_ours(tmp_path) -> None:
    root = tmp_path / "dws"
    _, sds = _write_dwsnets(root, (1, 1, 1))
    zoo = import_dwsnets(root, tmp_path / "zoo")
    assert zoo.provenance["imported_from"]["input_axes_swapped"] is True
    rel = zoo.table["path"][0]
    inr = _dws_inr()
    inr.load_state_dict(sds[rel])
    # their decode: coordinates from np.meshgrid(x, y) ('xy': input 0 = column), image = view(H, W)
    h = w = 28
    lin = torch.linspace(-1, 1, 28)
    xs, ys = torch.meshgrid(lin, lin, indexing="xy")
    theirs = (inr.seq(torch.stack([xs.flatten(), ys.flatten()], 1)) + 0.5).detach().reshape(h, w)
    ours = forward(zoo.weights([0]), grid_coordinates((h, w)))[0, :, 0].reshape(h, w) + DWSNETS.output_offset
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_dwsnets_errors_name_the_file(tmp_path) -> None:
    root = tmp_path / "dws"
    _write_dwsnets(root, (2, 1, 1))
    bad = root / "mnist_png_train/3_1/checkpoints/net.pth"
    sd = torch.load(bad, weights_only=True)
    del sd["seq.2.bias"]
    torch.save(sd, bad)
    with pytest.raises(ValueError, match=r"3_1/checkpoints/net\.pth: missing key 'seq\.2\.bias'"):
        import_dwsnets(root, tmp_path / "z1")
    sd["seq.2.bias"] = torch.zeros(1)
    sd["seq.1.weight"] = torch.zeros(32, 16)
    torch.save(sd, bad)
    with pytest.raises(
        ValueError, match=r"net\.pth: 'seq\.1\.weight' has shape \(32, 16\), expected \(32, 32\)"
    ):
        import_dwsnets(root, tmp_path / "z2")
    bad.unlink()
    with pytest.raises(FileNotFoundError, match="3_1/checkpoints/net.pth"):
        import_dwsnets(root, tmp_path / "z3")
    # a pickle that is not just tensors is refused, never executed
    torch.save({"seq.0.weight": torch.zeros(1), "extra": object()}, bad)
    with pytest.raises(ValueError, match="cannot load as a weights-only state dict"):
        import_dwsnets(root, tmp_path / "z4")


def _nfn_siren() -> OrderedDict:
    """The state dict of NFN's siren_utils.Siren(2, 32, 1 hidden layer, 1, outermost_linear=True)."""
    net = nn.Sequential(nn.Module(), nn.Module(), nn.Linear(32, 1))
    net[0].linear, net[1].linear = nn.Linear(2, 32), nn.Linear(32, 32)
    m = nn.Module()
    m.net = net
    return m.state_dict()


def test_nfn_round_trip(tmp_path) -> None:
    root = tmp_path / "siren_mnist_wts"
    torch.manual_seed(1)
    expected = {}
    labels = {0: 3, 1: 7, 2: 3, 3: 1, 4: 0}
    for idx, label in labels.items():
        for folder, copy in (
            (f"randinit_smaller_{label}s", 0),
            (f"randinit_smaller_aug0_{label}s", 1),
            (f"randinit_smaller_aug1_{label}s", 2),
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
            sd = _nfn_siren()
            torch.save(sd, root / folder / f"net{idx}.pth")
            expected[(idx, copy)] = sd
    (root / "README.txt").write_text("not an INR folder")
    zoo = import_nfn(root, tmp_path / "zoo", split_points=(3, 4), shard_size=4)
    t = zoo.table
    # base fits of all 5 images, augmented fits of the 3 training images only
    assert list(zip(t["source_index"], t["copy"])) == [(i, 0) for i in range(5)] + [
        (i, c) for c in (1, 2) for i in range(3)
    ]
    assert t["split"].tolist()[:5] == ["train", "train", "train", "val", "test"]
    assert t["label"].tolist() == [labels[i] for i in t["source_index"]]
    assert zoo.provenance["imported_from"]["skipped_augmented_non_train"] == 4
    assert zoo.provenance["recipe"] == NFN.to_dict() and zoo.provenance["signal_shape"] == [28, 28, 1]
    keys = [tuple(k) for k in zoo.provenance["imported_from"]["keys"]]
    assert keys == [
        ("net.0.linear.weight", "net.0.linear.bias"),
        ("net.1.linear.weight", "net.1.linear.bias"),
        ("net.2.weight", "net.2.bias"),
    ]
    w = zoo.weights()
    for n, (i, c) in enumerate(zip(t["source_index"], t["copy"])):
        sd = w.to_state_dict(n, keys=keys)
        assert all(torch.equal(sd[k], expected[(i, c)][k]) for k in expected[(i, c)])
    # resuming an import is a no-op that gives the same zoo
    again = import_nfn(root, tmp_path / "zoo", split_points=(3, 4), shard_size=4)
    assert all(torch.equal(a, b) for a, b in zip(w.tensors(), again.weights().tensors()))


def test_nfn_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="no randinit_smaller"):
        (tmp_path / "empty").mkdir()
        import_nfn(tmp_path / "empty", tmp_path / "z")
    root = tmp_path / "nfn"
    (root / "randinit_smaller_1s").mkdir(parents=True)
    torch.save(_nfn_siren(), root / "randinit_smaller_1s" / "net0.pth")
    sd = _nfn_siren()
    sd["net.3.scale"] = torch.ones(1)
    torch.save(sd, root / "randinit_smaller_1s" / "net1.pth")
    with pytest.raises(ValueError, match=r"net1\.pth: unexpected keys \['net\.3\.scale'\]"):
        import_nfn(root, tmp_path / "z2")
