"""The neural graph shared by the graph models (`graph`, `graph_light`, `ngt`, `scalegmn`).

A network is a graph whose nodes are its neurons (input neurons included) and whose edges
are its weights (a conv kernel, flattened and zero-padded to ``max_kernel`` values, is one
edge's feature vector); a neuron's bias is its node feature (absent biases and input neurons:
zeros, or a model's choice of input value). Identities: input and output neurons get an
embedding index of their own (the group never moves them), hidden neurons only their
layer's, so relabelling hidden neurons relabels nodes and nothing else. Edges get the same
kind of index (ScaleGMN's edge positional embeddings): an edge out of input ``i`` gets ``i``,
an edge into output ``o`` gets ``max_inputs + o``, an edge between hidden layers its layer's.

Two layouts of one graph, which every model here computes the same function on:

- dense, per layer, for a batch of one architecture (a `Weights`): nodes of layer ``k`` as
  ``[B, n_k, C]``, the edges from layer ``l`` to ``l + 1`` as the grid ``[B, n_(l+1), n_l, C*K]``
  of that layer's weights (row = upper neuron, column = lower neuron). Gathering endpoint
  states is broadcasting and aggregating is a reduction over one grid axis: no index ops.
- sparse (`NeuralGraph`): all nodes and edges of a batch concatenated, PyG-style, so that
  networks of different widths and depths batch together (`NeuralGraph.cat`). Its edges are
  the dense grids flattened in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights


@dataclass(frozen=True)
class GraphLimits:
    """The largest networks a model's embeddings cover: inputs, outputs, layers, kernel size."""

    max_inputs: int
    max_outputs: int
    max_layers: int
    max_kernel: int

    @classmethod
    def for_spec(cls, spec: NetworkSpec, max_inputs: int = 16, max_outputs: int = 16, max_layers: int = 16,
                 max_kernel: int | None = None) -> GraphLimits:
        limits = cls(max_inputs, max_outputs, max_layers, max_kernel or max(_kernel(layer) for layer in spec.layers))
        limits.check(spec)
        return limits

    @property
    def num_ids(self) -> int:
        """Size of a node (or edge) embedding table."""
        return self.max_inputs + self.max_outputs + self.max_layers

    def check(self, spec: NetworkSpec) -> None:
        L = spec.num_layers
        if spec.in_features > self.max_inputs or spec.out_features > self.max_outputs or L > self.max_layers:
            raise ValueError(
                f"spec with {spec.in_features} inputs, {spec.out_features} outputs, {L} layers exceeds the model's "
                f"limits ({self.max_inputs}, {self.max_outputs}, {self.max_layers}); build the model with larger "
                f"max_* values"
            )
        for i, layer in enumerate(spec.layers):
            if _kernel(layer) > self.max_kernel:
                raise ValueError(f"layer {i}: kernel of {_kernel(layer)} values exceeds max_kernel={self.max_kernel}")

    def node_ids(self, spec: NetworkSpec) -> list[Tensor]:
        """Embedding index of every node, per layer of nodes: inputs ``0..max_inputs-1``,
        outputs next, then one shared index per hidden layer."""
        sizes = layer_sizes(spec)
        L = spec.num_layers
        ids = [torch.arange(sizes[0])]
        for k in range(1, L + 1):
            ids.append(self.max_inputs + torch.arange(sizes[k]) if k == L
                       else torch.full((sizes[k],), self.max_inputs + self.max_outputs + k - 1))
        return ids

    def edge_ids(self, spec: NetworkSpec) -> list[Tensor]:
        """Embedding index of every edge, per layer, ``[n_(l+1), n_l]``: the first layer's edges
        by their input neuron, the last layer's by their output neuron, hidden ones by layer
        (ScaleGMN's edge types; a one-layer network's edges count as first-layer edges)."""
        sizes = layer_sizes(spec)
        L = spec.num_layers
        out = []
        for l in range(L):
            shape = (sizes[l + 1], sizes[l])
            if l == 0:
                ids = torch.arange(sizes[0]).expand(shape)
            elif l == L - 1:
                ids = (self.max_inputs + torch.arange(sizes[l + 1])).unsqueeze(1).expand(shape)
            else:
                ids = torch.full(shape, self.max_inputs + self.max_outputs + l - 1)
            out.append(ids)
        return out


def _kernel(layer) -> int:
    return math.prod(layer.kernel_size) if layer.kernel_size else 1


def layer_sizes(spec: NetworkSpec) -> list[int]:
    return [spec.in_features] + [layer.out_features for layer in spec.layers]


def dense_features(weights: Weights, limits: GraphLimits, input_value: float = 0.0) -> tuple[list[Tensor], list[Tensor]]:
    """Raw node features per layer ``[B, n_k, C]`` (biases; ``input_value`` for input
    neurons, zeros for absent biases) and raw edge features per layer ``[B, n_(l+1), n_l, C*K]``."""
    spec, b, c = weights.spec, weights.batch_size, weights.channels
    limits.check(spec)
    kmax = limits.max_kernel
    w0 = weights.weights[0]
    nodes = [torch.full((b, spec.in_features, c), input_value, dtype=w0.dtype, device=w0.device)]
    edges = []
    for w, bias in zip(weights.weights, weights.biases):
        o, k_in = w.shape[2], w.shape[3]
        k = math.prod(w.shape[4:]) if w.dim() > 4 else 1
        feat = w.reshape(b, c, o, k_in, k).permute(0, 2, 3, 1, 4)
        edges.append(nn.functional.pad(feat, (0, kmax - k)).reshape(b, o, k_in, c * kmax))
        nodes.append(bias.permute(0, 2, 1) if bias is not None else w.new_zeros(b, o, c))
    return nodes, edges


@dataclass(frozen=True)
class NeuralGraph:
    """A batch of neural graphs, PyG-style: all nodes and edges concatenated.

    node_feat ``[N, C]`` (biases), node_id ``[N]`` (embedding index), node_graph ``[N]`` (which
    network), is_input / is_output ``[N]`` bool, edge_feat ``[E, C * K]``, edge_id ``[E]``,
    src / dst ``[E]`` (lower / upper neuron of each weight), num_graphs. Within a network the
    nodes are ordered layer by layer and the edges as the dense grids (`dense_features`).
    """

    node_feat: Tensor
    node_id: Tensor
    node_graph: Tensor
    is_input: Tensor
    is_output: Tensor
    edge_feat: Tensor
    edge_id: Tensor
    src: Tensor
    dst: Tensor
    num_graphs: int

    @staticmethod
    def from_weights(weights: Weights, limits: GraphLimits) -> NeuralGraph:
        spec, b = weights.spec, weights.batch_size
        nodes, edges = dense_features(weights, limits)
        sizes = layer_sizes(spec)
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        n, dev = offsets[-1], weights.device
        kind = torch.zeros(n, dtype=torch.long)
        kind[: sizes[0]] = 1
        kind[offsets[-2]:] = 2
        srcs, dsts = [], []
        for l in range(spec.num_layers):
            dst, src = torch.meshgrid(torch.arange(sizes[l + 1]), torch.arange(sizes[l]), indexing="ij")
            srcs.append(src.reshape(-1) + offsets[l])
            dsts.append(dst.reshape(-1) + offsets[l + 1])
        src1, dst1 = torch.cat(srcs).to(dev), torch.cat(dsts).to(dev)
        e = len(src1)
        shift = (torch.arange(b, device=dev) * n).unsqueeze(1)
        return NeuralGraph(
            node_feat=torch.cat(nodes, dim=1).reshape(b * n, -1),
            node_id=torch.cat(limits.node_ids(spec)).to(dev).repeat(b),
            node_graph=torch.arange(b, device=dev).repeat_interleave(n),
            is_input=(kind == 1).to(dev).repeat(b),
            is_output=(kind == 2).to(dev).repeat(b),
            edge_feat=torch.cat([x.reshape(b, -1, x.shape[-1]) for x in edges], dim=1).reshape(b * e, -1),
            edge_id=torch.cat([x.reshape(-1) for x in limits.edge_ids(spec)]).to(dev).repeat(b),
            src=(src1.unsqueeze(0) + shift).reshape(-1),
            dst=(dst1.unsqueeze(0) + shift).reshape(-1),
            num_graphs=b,
        )

    @staticmethod
    def cat(graphs: Sequence[NeuralGraph]) -> NeuralGraph:
        """Batch graphs of different architectures (feature sizes must agree)."""
        node_shift, graph_shift = 0, 0
        keys = ("node_feat", "node_id", "node_graph", "is_input", "is_output", "edge_feat", "edge_id", "src", "dst")
        parts: dict[str, list[Tensor]] = {k: [] for k in keys}
        for g in graphs:
            for k in keys:
                v = getattr(g, k)
                parts[k].append(v + node_shift if k in ("src", "dst") else v + graph_shift if k == "node_graph" else v)
            node_shift += len(g.node_feat)
            graph_shift += g.num_graphs
        return NeuralGraph(**{k: torch.cat(v) for k, v in parts.items()}, num_graphs=graph_shift)

    @property
    def is_hidden(self) -> Tensor:
        return ~(self.is_input | self.is_output)

    def output_nodes(self, h: Tensor, out_features: int) -> Tensor:
        """The output neurons' states, concatenated per network: ``[num_graphs, out_features * d]``."""
        return self.per_graph(h[self.is_output], out_features)

    def per_graph(self, h_out: Tensor, out_features: int) -> Tensor:
        """States of the output neurons (``h[is_output]``), concatenated per network."""
        if h_out.shape[0] != self.num_graphs * out_features:
            raise ValueError(f"this readout concatenates the output neurons, so every network needs {out_features} "
                             f"outputs (the model's spec); this batch has {h_out.shape[0]} output neurons in "
                             f"{self.num_graphs} networks")
        return h_out.reshape(self.num_graphs, -1)


# ---------------------------------------------------------------------- scatter helpers
def scatter_sum(values: Tensor, index: Tensor, size: int) -> Tensor:
    return values.new_zeros(size, *values.shape[1:]).index_add_(0, index, values)


def scatter_count(index: Tensor, size: int, like: Tensor) -> Tensor:
    return like.new_zeros(size).index_add_(0, index, torch.ones_like(index, dtype=like.dtype))


def scatter_mean(values: Tensor, index: Tensor, size: int) -> Tensor:
    count = scatter_count(index, size, values).clamp_min(1)
    return scatter_sum(values, index, size) / count.view(-1, *([1] * (values.dim() - 1)))


def scatter_extreme(values: Tensor, index: Tensor, size: int, reduce: str) -> Tensor:
    """``"amin"``/``"amax"`` per index; 0 where an index has no values (as PyG)."""
    idx = index.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    return values.new_zeros(size, *values.shape[1:]).scatter_reduce(0, idx, values, reduce, include_self=False)


def scatter_softmax(scores: Tensor, index: Tensor, size: int) -> Tensor:
    """Softmax of ``scores`` ``[E, ...]`` over the entries that share an index."""
    idx = index.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    top = scores.new_full((size, *scores.shape[1:]), -torch.inf).scatter_reduce(0, idx, scores, "amax")
    ex = (scores - top[index].detach()).exp()
    return ex / scatter_sum(ex, index, size)[index]


class FourierFeatures(nn.Module):
    """Random Fourier features ``[cos(2 pi x B^T), sin(2 pi x B^T)]`` with fixed ``B ~ N(0, sigma^2)``
    ``[size, in_features]`` (the ``rff`` package's GaussianEncoding that neural-graphs uses)."""

    def __init__(self, in_features: int, size: int, sigma: float) -> None:
        super().__init__()
        self.register_buffer("b", torch.randn(size, in_features) * sigma)

    def forward(self, x: Tensor) -> Tensor:
        vp = 2 * math.pi * x @ self.b.to(x.dtype).T
        return torch.cat([torch.cos(vp), torch.sin(vp)], dim=-1)


class GraphInput(nn.Module):
    """Initial node and edge states, as neural-graphs' ``GraphConstructor``: each raw bias
    (weight) goes through random Fourier features (``sin_emb_dim`` frequencies, scale
    ``sigma``; ``sin_emb_dim=0``: a plain linear map) and a linear layer, then one more linear
    layer (``proj_node_in`` / ``proj_edge_in``); nodes add their positional embedding.

    With ``reverse_edge_features`` an edge i -> j reads ``[w_ij, w_ji, w_ij + w_ji]`` (the
    reference's ``rev_edge_features``): a weight's forward edge ``[w, 0, w]``, its reverse
    edge ``[0, w, w]``. Without it, the reverse direction reads the zero vector."""

    def __init__(self, node_in: int, edge_in: int, d_node: int, d_edge: int, num_ids: int, *,
                 sin_emb_dim: int, sigma: float, reverse_edge_features: bool, pos_embed: bool = True) -> None:
        super().__init__()
        self.reverse_edge_features = reverse_edge_features
        e_in = 3 * edge_in if reverse_edge_features else edge_in

        def proj(d_in: int, d_out: int) -> nn.Sequential:
            if sin_emb_dim:
                return nn.Sequential(FourierFeatures(d_in, sin_emb_dim, sigma), nn.Linear(2 * sin_emb_dim, d_out))
            return nn.Sequential(nn.Linear(d_in, d_out))

        self.proj_weight, self.proj_bias = proj(e_in, d_edge), proj(node_in, d_node)
        self.proj_node_in, self.proj_edge_in = nn.Linear(d_node, d_node), nn.Linear(d_edge, d_edge)
        self.pos_embed = nn.Embedding(num_ids, d_node) if pos_embed else None  # N(0, 1), as torch.randn

    def nodes(self, feat: Tensor, ids: Tensor) -> Tensor:
        h = self.proj_node_in(self.proj_bias(feat))
        return h + self.pos_embed(ids) if self.pos_embed is not None else h

    def edges(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """(forward, reverse) initial states of the edges with raw features ``w`` ``[..., C*K]``."""
        if self.reverse_edge_features:
            zero = torch.zeros_like(w)
            rev = self.proj_edge_in(self.proj_weight(torch.cat([zero, w, w], dim=-1)))
        else:  # every reverse edge starts from the same state: compute it once
            rev = self.proj_edge_in(self.proj_weight(w.new_zeros(w.shape[-1]))).expand(*w.shape[:-1], -1)
        return self.forward_edges(w), rev

    def forward_edges(self, w: Tensor) -> Tensor:
        fwd = torch.cat([w, torch.zeros_like(w), w], dim=-1) if self.reverse_edge_features else w
        return self.proj_edge_in(self.proj_weight(fwd))


def names(value: str | Sequence[str], known: Sequence[str], what: str) -> tuple[str, ...]:
    """Option values given as a sequence or as text joined by ``+`` (e.g. ``"mean+max"``)."""
    items = tuple(v.strip() for v in value.split("+")) if isinstance(value, str) else tuple(value)
    if not items or any(v not in known for v in items):
        raise ValueError(f"{what} must be chosen from {', '.join(known)}; got {value!r}")
    return items


def split_linear(linear: nn.Linear, x: Tensor, part: int, parts: int, bias: bool) -> Tensor:
    """``x`` times the ``part``-th of ``parts`` equal column blocks of ``linear``'s weight (plus
    its bias if ``bias``): a linear map of concatenated inputs, evaluated per input so that a
    map of an edge's two endpoint states costs one product per node, not per edge."""
    d = linear.in_features // parts
    return nn.functional.linear(x, linear.weight[:, part * d:(part + 1) * d], linear.bias if bias else None)
