"""Neural graphs (after Kofinas et al., ICLR 2024): a network as a graph whose nodes are
its neurons and whose edges are its weights, processed by message passing.

Nodes carry the neuron's bias (zero for input neurons) and an identity: input and output
neurons get an embedding of their index (the group never moves them), hidden neurons only
an embedding of their layer, so relabelling hidden neurons relabels nodes and the pooled
output is invariant. Edges carry the weight (a conv kernel, flattened and zero-padded).

The graph is stored sparsely (an edge list, like the weights themselves), so memory grows
with the number of weights, not with the square of the number of neurons, and networks of
different widths and depths batch together (`NeuralGraph.cat`). A batch of one architecture
(a `Weights`) takes a dense path instead that computes the same function: the edges between
two layers are the grid ``[B, out, in, d]`` of that layer's weights, gathering endpoint
features is broadcasting and averaging messages is a mean over one grid axis, with no index
gathers or scatters (several times faster on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.registry import register_model


@dataclass(frozen=True)
class NeuralGraph:
    """A batch of neural graphs, PyG-style: all nodes and edges concatenated.

    node_feat ``[N, C]`` (bias channels), node_id ``[N]`` (embedding index), node_graph ``[N]``,
    is_output ``[N]`` bool, edge_feat ``[E, C * K]``, src/dst ``[E]`` (node indices), num_graphs.
    """

    node_feat: Tensor
    node_id: Tensor
    node_graph: Tensor
    is_output: Tensor
    edge_feat: Tensor
    src: Tensor
    dst: Tensor
    num_graphs: int

    @staticmethod
    def check_limits(spec: NetworkSpec, *, max_inputs: int, max_outputs: int, max_layers: int, max_kernel: int) -> None:
        L = spec.num_layers
        if spec.in_features > max_inputs or spec.out_features > max_outputs or L > max_layers:
            raise ValueError(
                f"spec with {spec.in_features} inputs, {spec.out_features} outputs, {L} layers exceeds the model's "
                f"limits ({max_inputs}, {max_outputs}, {max_layers}); build the model with larger max_* values"
            )
        for i, layer in enumerate(spec.layers):
            k = math.prod(layer.kernel_size or (1,))
            if k > max_kernel:
                raise ValueError(f"layer {i}: kernel of {k} values exceeds max_kernel={max_kernel}")

    @staticmethod
    def node_ids(spec: NetworkSpec, max_inputs: int, max_outputs: int) -> list[Tensor]:
        """Embedding index of every node, per layer of nodes: inputs ``0..max_inputs-1``,
        outputs next, then one shared id per hidden layer (hidden neurons are exchangeable)."""
        sizes = [spec.in_features] + [layer.out_features for layer in spec.layers]
        L = spec.num_layers
        ids = [torch.arange(sizes[0])]
        for i in range(1, L + 1):
            ids.append(max_inputs + torch.arange(sizes[i]) if i == L
                       else torch.full((sizes[i],), max_inputs + max_outputs + i - 1))
        return ids

    @staticmethod
    def from_weights(weights: Weights, *, max_inputs: int, max_outputs: int, max_layers: int, max_kernel: int) -> NeuralGraph:
        spec, b, c = weights.spec, weights.batch_size, weights.channels
        L = spec.num_layers
        NeuralGraph.check_limits(spec, max_inputs=max_inputs, max_outputs=max_outputs, max_layers=max_layers,
                                 max_kernel=max_kernel)
        sizes = [spec.in_features] + [layer.out_features for layer in spec.layers]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        n = offsets[-1]
        dev = weights.device
        node_id = torch.cat(NeuralGraph.node_ids(spec, max_inputs, max_outputs)).to(dev)
        is_out = torch.zeros(n, dtype=torch.bool, device=dev)
        is_out[offsets[L] :] = True
        bias = [weights.weights[0].new_zeros(b, c, sizes[0])]
        bias += [bb if bb is not None else w.new_zeros(b, c, w.shape[2]) for w, bb in zip(weights.weights, weights.biases)]
        node_feat = torch.cat(bias, dim=2).permute(0, 2, 1).reshape(b * n, c)
        srcs, dsts, feats = [], [], []
        for i, w in enumerate(weights.weights):
            o, k_in = w.shape[2], w.shape[3]
            k = math.prod(w.shape[4:]) if w.dim() > 4 else 1
            if k > max_kernel:
                raise ValueError(f"layer {i}: kernel of {k} values exceeds max_kernel={max_kernel}")
            dst, src = torch.meshgrid(torch.arange(o), torch.arange(k_in), indexing="ij")
            srcs.append(src.reshape(-1) + offsets[i])
            dsts.append(dst.reshape(-1) + offsets[i + 1])
            e = w.reshape(b, c, o, k_in, k).permute(0, 2, 3, 1, 4).reshape(b, o * k_in, c, k)
            feats.append(nn.functional.pad(e, (0, max_kernel - k)).reshape(b, o * k_in, c * max_kernel))
        src1, dst1 = torch.cat(srcs).to(dev), torch.cat(dsts).to(dev)
        shift = (torch.arange(b, device=dev) * n).unsqueeze(1)
        return NeuralGraph(
            node_feat=node_feat,
            node_id=node_id.repeat(b),
            node_graph=torch.arange(b, device=dev).repeat_interleave(n),
            is_output=is_out.repeat(b),
            edge_feat=torch.cat(feats, dim=1).reshape(-1, c * max_kernel),
            src=(src1.unsqueeze(0) + shift).reshape(-1),
            dst=(dst1.unsqueeze(0) + shift).reshape(-1),
            num_graphs=b,
        )

    @staticmethod
    def cat(graphs: list[NeuralGraph]) -> NeuralGraph:
        """Batch graphs of different architectures (feature sizes must agree)."""
        node_shift, graph_shift = 0, 0
        parts: dict[str, list[Tensor]] = {k: [] for k in ("node_feat", "node_id", "node_graph", "is_output", "edge_feat", "src", "dst")}
        for g in graphs:
            parts["node_feat"].append(g.node_feat)
            parts["node_id"].append(g.node_id)
            parts["node_graph"].append(g.node_graph + graph_shift)
            parts["is_output"].append(g.is_output)
            parts["edge_feat"].append(g.edge_feat)
            parts["src"].append(g.src + node_shift)
            parts["dst"].append(g.dst + node_shift)
            node_shift += len(g.node_feat)
            graph_shift += g.num_graphs
        return NeuralGraph(**{k: torch.cat(v) for k, v in parts.items()}, num_graphs=graph_shift)


def _mlp(a: int, h: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, h), nn.SiLU(), nn.Linear(h, b))


def _scatter_mean(values: Tensor, index: Tensor, size: int) -> Tensor:
    out = values.new_zeros(size, values.shape[1]).index_add_(0, index, values)
    count = values.new_zeros(size).index_add_(0, index, torch.ones_like(index, dtype=values.dtype))
    return out / count.clamp_min(1).unsqueeze(1)


class MessagePassing(nn.Module):
    """One round: edges update from their endpoints; nodes gather messages from their
    incoming and their outgoing edges separately (the graph is directed, layer to layer).

    Per-edge work is kept to a few ``d x d`` products: endpoint terms are projected once per
    node and gathered, since edges outnumber nodes ~20:1 in an INR's graph."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.src_e, self.dst_e, self.edge_e = nn.Linear(d, d), nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.edge_out = nn.Linear(d, d)
        self.src_m, self.dst_m = nn.Linear(d, d), nn.Linear(d, d)
        self.edge_fwd, self.edge_bwd = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.node = _mlp(3 * d, d, d)
        self.norm_n, self.norm_e = nn.LayerNorm(d), nn.LayerNorm(d)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, e: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
        e = self.norm_e(e + self.edge_out(self.act(self.src_e(h)[src] + self.dst_e(h)[dst] + self.edge_e(e))))
        n = len(h)
        inc = _scatter_mean(self.act(self.src_m(h)[src] + self.edge_fwd(e)), dst, n)
        out = _scatter_mean(self.act(self.dst_m(h)[dst] + self.edge_bwd(e)), src, n)
        return self.norm_n(h + self.node(torch.cat([h, inc, out], dim=1))), e

    def forward_dense(self, hs: list[Tensor], es: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The same round on one architecture: ``hs[i]`` ``[B, n_i, d]`` (nodes of layer i),
        ``es[i]`` ``[B, n_(i+1), n_i, d]`` (edges from layer i to i + 1)."""
        es = [
            self.norm_e(e + self.edge_out(self.act(
                self.src_e(hs[i]).unsqueeze(1) + self.dst_e(hs[i + 1]).unsqueeze(2) + self.edge_e(e))))
            for i, e in enumerate(es)
        ]
        # a node with no incoming (input layer) or outgoing (output layer) edges gets zeros,
        # as the scatter mean gives it
        inc = [torch.zeros_like(hs[0])] + [
            self.act(self.src_m(hs[i]).unsqueeze(1) + self.edge_fwd(e)).mean(dim=2) for i, e in enumerate(es)
        ]
        out = [
            self.act(self.dst_m(hs[i + 1]).unsqueeze(2) + self.edge_bwd(e)).mean(dim=1) for i, e in enumerate(es)
        ] + [torch.zeros_like(hs[-1])]
        hs = [self.norm_n(h + self.node(torch.cat([h, a, b], dim=2))) for h, a, b in zip(hs, inc, out)]
        return hs, es


@register_model("graph", output="invariant", supports_conv=True, summary="message passing on the neural graph (Kofinas et al.)")
class NeuralGraphClassifier(nn.Module):
    def __init__(
        self,
        spec: NetworkSpec,
        out_features: int,
        hidden: int = 32,
        num_layers: int = 3,
        dropout: float = 0.1,
        in_channels: int = 1,
        max_inputs: int = 16,
        max_outputs: int = 16,
        max_layers: int = 16,
        max_kernel: int | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.limits = dict(
            max_inputs=max_inputs,
            max_outputs=max_outputs,
            max_layers=max_layers,
            max_kernel=max_kernel or max(math.prod(layer.kernel_size or (1,)) for layer in spec.layers),
        )
        self.node_in = nn.Linear(in_channels, hidden)
        self.node_emb = nn.Embedding(max_inputs + max_outputs + max_layers, hidden)
        self.edge_in = nn.Linear(in_channels * self.limits["max_kernel"], hidden)
        self.layers = nn.ModuleList(MessagePassing(hidden) for _ in range(num_layers))
        self.head = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, out_features))

    def graph(self, weights: Weights) -> NeuralGraph:
        return NeuralGraph.from_weights(weights, **self.limits)

    def forward(self, x: Weights | NeuralGraph) -> Tensor:
        """`Weights` [B, C, ...] (or a `NeuralGraph` batch of mixed architectures) -> ``[B, out_features]``."""
        if isinstance(x, Weights):
            return self._forward_dense(x)
        g = x
        h = self.node_in(g.node_feat) + self.node_emb(g.node_id)
        e = self.edge_in(g.edge_feat)
        for layer in self.layers:
            h, e = layer(h, e, g.src, g.dst)
        mean = _scatter_mean(h, g.node_graph, g.num_graphs)
        idx = g.node_graph.unsqueeze(1).expand_as(h)
        mx = h.new_full((g.num_graphs, h.shape[1]), -torch.inf).scatter_reduce(0, idx, h, "amax")
        outs = _scatter_mean(h[g.is_output], g.node_graph[g.is_output], g.num_graphs)
        return self.head(torch.cat([mean, mx, outs], dim=1))

    def _forward_dense(self, weights: Weights) -> Tensor:
        # the sparse graph's node and edge features and identities, laid out per layer
        spec, b, c = weights.spec, weights.batch_size, weights.channels
        NeuralGraph.check_limits(spec, **self.limits)
        ids = NeuralGraph.node_ids(spec, self.limits["max_inputs"], self.limits["max_outputs"])
        kmax = self.limits["max_kernel"]
        hs = [self.node_in(weights.weights[0].new_zeros(b, spec.in_features, c)) + self.node_emb(ids[0].to(weights.device))]
        es = []
        for i, (w, bias) in enumerate(zip(weights.weights, weights.biases)):
            o, k_in = w.shape[2], w.shape[3]
            k = math.prod(w.shape[4:]) if w.dim() > 4 else 1
            feat = w.reshape(b, c, o, k_in, k).permute(0, 2, 3, 1, 4)
            feat = nn.functional.pad(feat, (0, kmax - k)).reshape(b, o, k_in, c * kmax)
            es.append(self.edge_in(feat))
            node = bias.permute(0, 2, 1) if bias is not None else w.new_zeros(b, o, c)
            hs.append(self.node_in(node) + self.node_emb(ids[i + 1].to(weights.device)))
        for layer in self.layers:
            hs, es = layer.forward_dense(hs, es)
        h = torch.cat(hs, dim=1)  # [B, N, d]
        return self.head(torch.cat([h.mean(dim=1), h.amax(dim=1), hs[-1].mean(dim=1)], dim=1))
