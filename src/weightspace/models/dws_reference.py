"""Loading a DWSNets reference checkpoint (AvivNavon/DWSNets, ``DWSModelForClassification``) into
`weightspace.models.dws.DWSClassifier` of the same configuration.

Every reference parameter has exactly one counterpart (the two models have the same parameter
count, 552,650 for the MNIST-INR configuration), so a trained reference model runs in weightspace
unchanged; `benchmarks/dwsnets_reference.py` checks that both compute the same logits on the
same weights. Names map block by block: the reference's ``{weight,bias}_to_{weight,bias}.layers.
{i}_{j}`` is our ``blocks.{t}_{o}`` with ``t = 2i`` (``2i + 1``) for layer i's weight (bias); the
reference lays weights out as ``(in, out)``, so its ``lin_n`` (pooled over input neurons) is our
column summary and ``lin_m`` our row summary. The invariant head concatenates in another order
(middle weights, first weight, last weight, then biases), so its columns are reordered.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from weightspace.models.dws import SAB, DeepSetLayer, DWSClassifier, feature_sizes, permuted_sets

_GROUP = {(0, 0): "weight_to_weight", (1, 1): "bias_to_bias", (1, 0): "bias_to_weight", (0, 1): "weight_to_bias"}
_KRON = ("lin_all.0", "lin_m.0", "lin_n.0", "lin_both.0")  # our [full, rows, cols, both]


def _suffixes(module: torch.nn.Module, kind: str) -> dict[str, str]:
    """Our parameter suffix -> the ending of the reference's name, for one block."""
    if kind == "kron":
        return {f"{k}.{p}": f"{ref}.{p}" for k, ref in enumerate(_KRON) for p in ("weight", "bias")}
    if isinstance(module, SAB):
        return {f"{a}.{p}": f"mab.fc_{a}.{p}" for a in "qkvo" for p in ("weight", "bias")}
    if isinstance(module, DeepSetLayer):
        return {"gamma.weight": "Gamma.0.weight", "gamma.bias": "Gamma.0.bias", "lam.weight": "Lambda.0.weight"}
    return {"weight": "layer.0.weight", "bias": "layer.0.bias"}


def _head_order(model: DWSClassifier) -> list[int]:
    """For each column of our head's input, the reference's column."""
    spec = model.layers[0].spec
    sizes = feature_sizes(spec, permuted_sets(spec), model.layers[-1].cout)
    L = spec.num_layers
    ours = [x for i in range(L) for x in (("w", i), ("b", i))]
    ref = [("w", i) for i in range(1, L - 1)] + [("w", 0), ("w", L - 1)] + [("b", i) for i in range(L)]
    size = dict(zip(ours, sizes))
    start, pos = {}, 0
    for key in ref:
        start[key] = pos
        pos += size[key]
    return [start[key] + k for key in ours for k in range(size[key])]


def dwsnets_names(model: DWSClassifier) -> dict[str, str]:
    """Our state-dict key -> the reference's, for every entry but the head's reordered weight."""
    names: dict[str, str] = {}
    bn = not isinstance(model.norms[0], torch.nn.Identity) if len(model.norms) else False
    for k, layer in enumerate(model.layers):
        idx = 0 if k == 0 else (4 * k if bn else 3 * k)
        for key, block in layer.blocks.items():
            t, o = map(int, key.split("_"))
            prefix = f"layers.layers.{idx}.{_GROUP[(t % 2, o % 2)]}.layers.{t // 2}_{o // 2}."
            for ours, ending in _suffixes(block, layer.kind[key]).items():
                names[f"layers.{k}.blocks.{key}.{ours}"] = prefix + "*" + ending
        if k > 0 and bn:
            for side, ref in (("w_norms", "weights_bn"), ("b_norms", "biases_bn")):
                for i in range(len(layer.spec.layers)):
                    for buf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                        names[f"norms.{k - 1}.{side}.{i}.{buf}"] = f"layers.layers.{4 * k - 3}.{ref}.{i}.{buf}"
    names["head.mlp.0.bias"] = "clf.layer.0.bias"
    return names


def load_dwsnets_state_dict(model: DWSClassifier, state_dict: Mapping[str, Tensor]) -> DWSClassifier:
    """Copy a reference ``DWSModelForClassification`` state dict into ``model`` (built with the
    same options). Every key and shape is checked; nothing is left over on either side."""
    if len(model.head.mlp) != 1:
        raise ValueError("only a single-layer invariant head (the reference's n_out_fc=1) is mapped")
    names = dwsnets_names(model)
    ref_keys = set(state_dict)
    ours = model.state_dict()
    new: dict[str, Tensor] = {}
    for key, pattern in names.items():
        head, _, ending = pattern.partition("*")
        found = [r for r in ref_keys if r.startswith(head) and r.endswith(ending)] if ending else [pattern] * (pattern in ref_keys)
        if len(found) != 1:
            raise KeyError(f"reference key for {key!r} ({pattern!r}): found {found or 'none'}")
        value = state_dict[found[0]]
        if value.shape != ours[key].shape:
            raise ValueError(f"{found[0]}: shape {tuple(value.shape)}, ours {key} {tuple(ours[key].shape)}")
        new[key] = value
        ref_keys.discard(found[0])
    w = state_dict["clf.layer.0.weight"]
    new["head.mlp.0.weight"] = w[:, _head_order(model)]
    ref_keys.discard("clf.layer.0.weight")
    missing = set(ours) - set(new)
    if missing or ref_keys:
        raise KeyError(f"unmatched keys: ours {sorted(missing)[:5]}, reference {sorted(ref_keys)[:5]}")
    model.load_state_dict(new)
    return model


def import_dwsnets_checkpoint(path: str | Path, model: DWSClassifier) -> DWSClassifier:
    """Load a reference checkpoint file (a state dict, read with ``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return load_dwsnets_state_dict(model, state)
