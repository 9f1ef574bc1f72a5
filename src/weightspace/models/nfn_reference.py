"""Loading NFN reference parameters (AllanYangZhou/nfn) into weightspace's NFN layers and models.

Every reference ``Conv1d`` / ``Conv2d`` / ``Linear`` of ``nfn.layers.NPLinear`` and ``HNPLinear``
is one `weightspace.models.nfn_layers._Map` here, whose weight is kept split by input block, in
the order in which the reference concatenates its inputs. So a reference weight ``[out, in, 1...]``
is cut into our blocks ``w.<block> [out, F_k]`` column by column, and its bias is our ``bias``.
Names, ours -> the reference's (``i`` the layer, ``L`` the number of layers):

=====================  ==========================  ======================
ours                    NPLinear / HNPLinear middle  HNPLinear first / last
=====================  ==========================  ======================
``w_{i}_self``          ``layer_{i}`` (Conv2d)
``w_{i}_global``        ``layer_{i}_rc`` (Linear)   ``w0_rbdcst`` / ``wfin_cbdcst`` (Linear)
``w_{i}_in``            ``layer_{i}_r`` (Conv1d)    ``wfin_cpt`` (Conv1d, last layer)
``w_{i}_out``           ``layer_{i}_c`` (Conv1d)    ``w0_rpt`` (Conv1d, first layer)
``b_{i}_out``           ``bias_{i}`` (Conv1d)       ``bias_0`` (Conv1d, first layer)
``b_{i}_global``        ``bias_{i}_rc`` (Linear)    ``bias_0_rc`` / ``bias_fin_rc`` (Linear)
=====================  ==========================  ======================

Not mapped (the reference has no such module): `HNPLinear` with one layer or ``complete=True``,
and the reference's ``NPLinear(io_embed=True)`` (its ``in_embed`` etc. are reported left over).

`load_nfn_state_dict` does the same for a whole ``experiments.models.InvariantNFN`` with its
``MlpHead`` (the configuration of presets ``nfn-hnp-mnist-inr`` / ``nfn-np-mnist-inr``) into an
`weightspace.models.nfn.NFNClassifier`. `benchmarks/nfn_reference.py` checks that both compute the
same outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from weightspace.models.nfn_layers import HNPLinear, NPLinear, _Map

# reference module kinds: the trailing singleton axes of their weight
_TRAIL = {"conv2d": (1, 1), "conv1d": (1,), "linear": ()}


def _middle(i: int) -> dict[str, tuple[str, str]]:
    return {f"w_{i}_self": (f"layer_{i}", "conv2d"), f"w_{i}_global": (f"layer_{i}_rc", "linear"),
            f"w_{i}_in": (f"layer_{i}_r", "conv1d"), f"w_{i}_out": (f"layer_{i}_c", "conv1d"),
            f"b_{i}_out": (f"bias_{i}", "conv1d"), f"b_{i}_global": (f"bias_{i}_rc", "linear")}


def nfn_layer_names(layer: nn.Module) -> dict[str, tuple[str, str]]:
    """Our map name -> (the reference module's name, its kind: "conv2d" | "conv1d" | "linear")."""
    if isinstance(layer, NPLinear):
        return {k: v for i in range(layer.spec.num_layers) for k, v in _middle(i).items()}
    if isinstance(layer, HNPLinear):
        L = layer.spec.num_layers
        if L < 2:
            raise ValueError("the reference's HNPLinear needs >= 2 layers; a one-layer HNPLinear has no counterpart")
        if layer.complete:
            raise ValueError("HNPLinear(complete=True) has a block (w_{L-1}_in.w.b{L-2}) the reference lacks")
        names = {"w_0_out": ("w0_rpt", "conv1d"), "w_0_global": ("w0_rbdcst", "linear"),
                 "b_0_out": ("bias_0", "conv1d"), "b_0_global": ("bias_0_rc", "linear"),
                 f"w_{L-1}_in": ("wfin_cpt", "conv1d"), f"w_{L-1}_global": ("wfin_cbdcst", "linear"),
                 f"b_{L-1}_global": ("bias_fin_rc", "linear")}
        for i in range(1, L - 1):
            names |= _middle(i)
        return names
    raise TypeError(f"expected NPLinear or HNPLinear, got {type(layer).__name__}")


def _maps(layer: nn.Module) -> dict[str, _Map]:
    maps = {name: m for name, m in layer.named_children() if isinstance(m, _Map)}
    names = nfn_layer_names(layer)
    if set(maps) != set(names):
        raise ValueError(f"{type(layer).__name__}: maps {sorted(set(maps) ^ set(names))} are not named")
    return maps


def nfn_layer_state_dict_to_reference(layer: nn.Module, prefix: str = "") -> dict[str, Tensor]:
    """Our layer's parameters under the reference's names and shapes (the inverse of
    `load_nfn_layer_state_dict`): each reference weight is our blocks concatenated in order."""
    names, out = nfn_layer_names(layer), {}
    for ours, m in _maps(layer).items():
        ref, kind = names[ours]
        w = torch.cat([p.detach() for p in m.w.values()], dim=1)
        out[f"{prefix}{ref}.weight"] = w.reshape(*w.shape, *_TRAIL[kind]).clone()
        out[f"{prefix}{ref}.bias"] = m.bias.detach().clone()
    return out


def _layer_tensors(layer: nn.Module, state_dict: Mapping[str, Tensor], prefix: str, used: set[str]) -> dict[str, Tensor]:
    """Our layer-local state-dict entries, from the reference's (keys added to ``used``)."""
    names, new = nfn_layer_names(layer), {}
    for ours, m in _maps(layer).items():
        ref, kind = names[ours]
        wkey, bkey = f"{prefix}{ref}.weight", f"{prefix}{ref}.bias"
        for key in (wkey, bkey):
            if key not in state_dict:
                raise KeyError(f"reference key {key!r} (for our {ours!r}) is missing")
        w, b = state_dict[wkey], state_dict[bkey]
        expect = (m.bias.shape[0], m.fan_in, *_TRAIL[kind])
        if tuple(w.shape) != expect:
            raise ValueError(f"{wkey}: shape {tuple(w.shape)}, expected {expect} (our {ours}, a {kind})")
        if tuple(b.shape) != tuple(m.bias.shape):
            raise ValueError(f"{bkey}: shape {tuple(b.shape)}, expected {tuple(m.bias.shape)} (our {ours}.bias)")
        w = w.reshape(w.shape[0], w.shape[1])
        start = 0
        for block, p in m.w.items():  # the reference's concatenation order
            new[f"{ours}.w.{block}"] = w[:, start:start + p.shape[1]]
            start += p.shape[1]
        new[f"{ours}.bias"] = b
        used.update((wkey, bkey))
    return new


def load_nfn_layer_state_dict(layer: nn.Module, state_dict: Mapping[str, Tensor], prefix: str = "") -> nn.Module:
    """Copy a reference ``NPLinear`` / ``HNPLinear`` state dict (keys under ``prefix``) into our
    `NPLinear` / `HNPLinear` of the same spec and channels. Every key and shape is checked; a
    reference key under ``prefix`` that is not used (or one of ours not filled) is an error."""
    used: set[str] = set()
    new = _layer_tensors(layer, state_dict, prefix, used)
    left = sorted(k for k in state_dict if k.startswith(prefix) and k not in used)
    missing = sorted(set(layer.state_dict()) - set(new))
    if left or missing:
        raise KeyError(f"unmatched keys: reference {left[:5]}, ours {missing[:5]}")
    layer.load_state_dict(new)
    return layer


def load_nfn_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> nn.Module:
    """Copy a reference ``experiments.models.InvariantNFN`` (with ``MlpHead``, no layer norm, no
    input normalisation, no appended statistics) state dict into our `NFNClassifier` of the same
    configuration: the Gaussian Fourier matrix ``nfnet_features.0._B`` -> ``fourier.B``, the NF
    layers ``nfnet_features.{j}.*`` in order -> ``layers.{k}``, the head's ``nn.Linear``\\ s
    ``head.head.{j}`` in order -> ours. Both pool ``[B, C, N]`` channel-major, so the head's
    first weight needs no reordering. Every key and shape is checked, nothing is left over."""
    from weightspace.models.nfn import NFNClassifier

    if not isinstance(model, NFNClassifier):
        raise TypeError(f"expected an NFNClassifier, got {type(model).__name__}")
    used: set[str] = set()
    new: dict[str, Tensor] = {}
    fourier = [k for k in state_dict if re.fullmatch(r"nfnet_features\.\d+\._B", k)]
    if (model.fourier is None) != (not fourier):
        raise KeyError(f"Fourier features: ours {model.fourier is not None}, reference keys {fourier}")
    if fourier:
        (key,) = fourier
        if state_dict[key].shape != model.fourier.B.shape:
            raise ValueError(f"{key}: shape {tuple(state_dict[key].shape)}, ours fourier.B {tuple(model.fourier.B.shape)}")
        new["fourier.B"] = state_dict[key]
        used.add(key)
    # NF layers: the other parameterised modules of nfnet_features, in order
    idx = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"nfnet_features\.(\d+)\.", k))
                  and k not in used})
    if len(idx) != len(model.layers):
        raise KeyError(f"reference has {len(idx)} parameterised feature modules ({idx}), ours {len(model.layers)} "
                       "NF layers (layer norms are not mapped)")
    for k, (j, layer) in enumerate(zip(idx, model.layers)):
        new |= {f"layers.{k}.{n}": t for n, t in _layer_tensors(layer, state_dict, f"nfnet_features.{j}.", used).items()}
    ref_head = sorted({int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"head\.head\.(\d+)\.weight", k))})
    our_head = [n for n, m in model.head.named_children() if isinstance(m, nn.Linear)]
    if len(ref_head) != len(our_head):
        raise KeyError(f"reference head has {len(ref_head)} Linear layers, ours {len(our_head)}")
    ours_sd = model.state_dict()
    for j, n in zip(ref_head, our_head):
        for p in ("weight", "bias"):
            key = f"head.head.{j}.{p}"
            if key not in state_dict or state_dict[key].shape != ours_sd[f"head.{n}.{p}"].shape:
                got = tuple(state_dict[key].shape) if key in state_dict else "missing"
                raise ValueError(f"{key}: {got}, ours head.{n}.{p} {tuple(ours_sd[f'head.{n}.{p}'].shape)}")
            new[f"head.{n}.{p}"] = state_dict[key]
            used.add(key)
    left = sorted(set(state_dict) - used)
    missing = sorted(set(ours_sd) - set(new))
    if left or missing:
        raise KeyError(f"unmatched keys: reference {left[:5]}, ours {missing[:5]}")
    model.load_state_dict(new)
    return model
