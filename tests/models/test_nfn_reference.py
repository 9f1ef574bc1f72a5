"""`weightspace.models.nfn_reference` without the reference code: the name/shape mapping rejects
what does not fit and round-trips our own parameters through the reference's naming exactly.
(`benchmarks/nfn_reference.py` checks the mapping against the reference itself.)"""

import pytest
import torch

from tests.models.test_nfn import CNN, MLP_2331
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.nfn_layers import HNPLinear, NPLinear
from weightspace.models.nfn_reference import (
    load_nfn_layer_state_dict,
    load_nfn_state_dict,
    nfn_layer_state_dict_to_reference,
)
from weightspace.models.registry import create_model

MLP_4 = NetworkSpec.mlp([2, 8, 8, 8, 1])
MLP_2 = NetworkSpec.mlp([2, 5, 3])
LAYERS = [(cls, spec) for cls in (NPLinear, HNPLinear) for spec in (MLP_2331, MLP_4, MLP_2, CNN)]


def _pair(cls, spec, seed):
    torch.manual_seed(seed)
    return cls(spec, 3, 4).double()


@pytest.mark.parametrize("cls,spec", LAYERS, ids=[f"{c.__name__}-{s.describe()[:20]}" for c, s in LAYERS])
def test_round_trip_through_reference_names_is_exact(cls, spec):
    a, b = _pair(cls, spec, 0), _pair(cls, spec, 1)
    ref = nfn_layer_state_dict_to_reference(a)
    assert not any(k.startswith(("w_", "b_")) and ".w." in k for k in ref)  # the reference's names only
    load_nfn_layer_state_dict(b, ref)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    w = Weights.unflatten(spec, torch.randn(2, 3, spec.num_params, dtype=torch.float64))
    assert all(torch.equal(x, y) for x, y in zip(a(w).tensors(), b(w).tensors()))


def test_reference_names_and_shapes():
    ref = nfn_layer_state_dict_to_reference(_pair(HNPLinear, MLP_2331, 0))
    # 2-3-3-1, 3 -> 4 channels: the reference's first/last-layer modules and a middle Conv2d
    assert {"w0_rpt.weight", "w0_rbdcst.weight", "bias_0.weight", "bias_0_rc.weight", "wfin_cpt.weight",
            "wfin_cbdcst.weight", "bias_fin_rc.weight", "layer_1.weight", "layer_1_rc.weight"} <= set(ref)
    assert ref["layer_1.weight"].shape == (4, 3, 1, 1)  # Conv2d 1x1
    assert ref["layer_1_r.weight"].dim() == 3 and ref["w0_rbdcst.weight"].dim() == 2  # Conv1d, Linear
    assert ref["w0_rpt.weight"].shape[0] == 4 * 2  # c_out * n_in rows


def test_missing_key_is_named():
    layer = _pair(NPLinear, MLP_2331, 0)
    ref = nfn_layer_state_dict_to_reference(layer)
    del ref["layer_1_c.bias"]
    with pytest.raises(KeyError, match="layer_1_c.bias"):
        load_nfn_layer_state_dict(layer, ref)


def test_wrong_shape_is_named():
    layer = _pair(HNPLinear, MLP_2331, 0)
    ref = nfn_layer_state_dict_to_reference(layer)
    ref["wfin_cpt.weight"] = ref["wfin_cpt.weight"][:, :-1]
    with pytest.raises(ValueError, match=r"wfin_cpt.weight: shape .* expected"):
        load_nfn_layer_state_dict(layer, ref)
    ref = nfn_layer_state_dict_to_reference(layer)
    ref["layer_1.weight"] = ref["layer_1.weight"].flatten(1)  # a Linear's shape where a Conv2d's belongs
    with pytest.raises(ValueError, match="conv2d"):
        load_nfn_layer_state_dict(layer, ref)


def test_left_over_key_is_an_error():
    layer = _pair(NPLinear, MLP_2331, 0)
    ref = nfn_layer_state_dict_to_reference(layer) | {"in_embed": torch.zeros(1, 3, 1, 2)}  # io_embed=True
    with pytest.raises(KeyError, match="in_embed"):
        load_nfn_layer_state_dict(layer, ref)


def test_layers_without_counterpart_are_refused():
    with pytest.raises(ValueError, match="complete"):
        nfn_layer_state_dict_to_reference(HNPLinear(MLP_2331, 1, 1, complete=True))
    with pytest.raises(ValueError, match=">= 2 layers"):
        nfn_layer_state_dict_to_reference(HNPLinear(NetworkSpec.mlp([2, 3]), 1, 1))


def _reference_model_state(model) -> dict:
    """Our classifier's state under ``InvariantNFN``'s names (Fourier, then layer/ReLU pairs; the
    head's Linears at 2, 5, 8 after pool and flatten)."""
    sd = {"nfnet_features.0._B": model.fourier.B.clone()}
    for k, layer in enumerate(model.layers):
        sd |= nfn_layer_state_dict_to_reference(layer, prefix=f"nfnet_features.{1 + 2 * k}.")
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    for j, lin in zip((2, 5, 8), linears):
        sd |= {f"head.head.{j}.weight": lin.weight.detach().clone(), f"head.head.{j}.bias": lin.bias.detach().clone()}
    return sd


def test_whole_model_round_trip_and_errors():
    spec = NetworkSpec.siren(2, [4, 4], 1)
    kw = dict(out_features=10, hidden_channels=6, fourier_features=4, head_hidden=(7, 7))
    torch.manual_seed(0)
    a = create_model("nfn-hnp-mnist-inr", spec, **kw)
    torch.manual_seed(1)
    b = create_model("nfn-hnp-mnist-inr", spec, fourier_seed=1, **kw)
    sd = _reference_model_state(a)
    load_nfn_state_dict(b, sd)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(KeyError, match="mean_weights_0"):  # the reference's input normalisation
        load_nfn_state_dict(b, sd | {"mean_weights_0": torch.zeros(1)})
    with pytest.raises(KeyError, match="feature modules"):  # e.g. a layer norm between NF layers
        load_nfn_state_dict(b, sd | {"nfnet_features.9.weight": torch.zeros(1)})
