"""Zoos of vectors: functa latents and hypernetwork codes stored in the zoo format.

A vector ``z`` of ``d`` numbers is stored as the one-layer network ``x -> z x`` from one
input to ``d`` outputs without bias (`vector_spec`): its only weight is ``[d, 1]``, the
vector as a column. So a "functaset" or a set of codes is an ordinary zoo (same shards,
table, splits, resume, `weightspace zoo info`, `weightspace train`), and
``forward(weights, ones(1, 1))`` returns the vectors. The spec has no hidden neurons, so
its permutation group is trivial: any registry model applies, and the flat MLP on it is
exactly an MLP on the vectors.

The zoo's provenance says what the vectors are (``kind``: ``"functa"`` / ``"hyperinr-codes"``)
and names the shared network that decodes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from torch import Tensor

from weightspace.core.spec import LayerSpec, NetworkSpec
from weightspace.core.weights import Weights
from weightspace.zoo.store import Zoo, ZooWriter


def vector_spec(dim: int) -> NetworkSpec:
    """The spec that holds a ``dim``-vector: one linear layer 1 -> dim, no bias."""
    return NetworkSpec((LayerSpec("linear", 1, int(dim), bias=False),))


def is_vector_spec(spec: NetworkSpec) -> bool:
    layer = spec.layers[0]
    return spec.num_layers == 1 and layer.kind == "linear" and layer.in_features == 1 and not layer.bias


def vectors_to_weights(vectors: Tensor) -> Weights:
    """``[N, d]`` -> `Weights` of `vector_spec(d)` (weight ``[N, 1, d, 1]``, a view)."""
    if vectors.dim() != 2:
        raise ValueError(f"expected vectors [N, d], got shape {tuple(vectors.shape)}")
    return Weights(vector_spec(vectors.shape[1]), (vectors[:, None, :, None],), (None,))


def weights_to_vectors(weights: Weights) -> Tensor:
    """Inverse of `vectors_to_weights`: ``[N, d]`` (raw weights, C = 1)."""
    if not is_vector_spec(weights.spec):
        raise ValueError(f"not a vector zoo spec (one linear 1->d layer without bias): {weights.spec.describe()}")
    if weights.channels != 1:
        raise ValueError(f"expected raw weights (C = 1), got C = {weights.channels}")
    return weights.weights[0][:, 0, :, 0]


def write_vector_zoo(
    path: str | os.PathLike,
    vectors: Tensor,
    columns: Mapping[str, Sequence[Any]],
    *,
    provenance: Mapping[str, Any],
    shard_size: int = 4096,
) -> Zoo:
    """Write ``vectors`` ``[N, d]`` with one table row each (``columns``: label, split ...)."""
    n = vectors.shape[0]
    writer = ZooWriter(path, vector_spec(vectors.shape[1]), shard_size=shard_size, provenance=provenance, num_networks=n)
    for k, start in enumerate(range(0, n, shard_size)):
        if k in writer.completed_shards():
            continue
        stop = min(n, start + shard_size)
        writer.write_shard(k, vectors_to_weights(vectors[start:stop].detach().cpu().float()),
                           {name: list(values[start:stop]) for name, values in columns.items()})
    return writer.finalize()


def read_vectors(zoo: Zoo, split: str | None = None) -> tuple[Tensor, pd.DataFrame]:
    """The vectors ``[N, d]`` of a vector zoo (of one split, or all) and their table rows."""
    if not is_vector_spec(zoo.spec):
        raise ValueError(f"{zoo.path}: not a vector zoo (spec {zoo.spec.describe()})")
    w, table = zoo.load(split)
    return weights_to_vectors(w).clone(), table


__all__ = ["is_vector_spec", "read_vectors", "vector_spec", "vectors_to_weights", "weights_to_vectors", "write_vector_zoo"]
