"""`graph_light`: a light message-passing model on the neural graph (this library's own
design, after Kofinas et al.; the reference NG-GNN is `graph`).

Nodes carry the neuron's bias and an identity embedding, edges the weight; each round
updates edges from their endpoints, then nodes from the mean of the messages on their
incoming and (separately) their outgoing edges; the readout pools the mean and max of all
node states and the mean of the output neurons'. Dense per-layer path for a batch of one
architecture, sparse path (`NeuralGraph`) for mixed ones (see `graph_features`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.graph_features import GraphLimits, NeuralGraph, dense_features, scatter_mean
from weightspace.models.registry import register_model


def _mlp(a: int, h: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, h), nn.SiLU(), nn.Linear(h, b))


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
        inc = scatter_mean(self.act(self.src_m(h)[src] + self.edge_fwd(e)), dst, n)
        out = scatter_mean(self.act(self.dst_m(h)[dst] + self.edge_bwd(e)), src, n)
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


@register_model("graph_light", output="invariant", supports_conv=True,
                summary="light message passing on the neural graph (this library's design; NG-GNN is 'graph')")
class LightGraphClassifier(nn.Module):
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
        self.limits = GraphLimits.for_spec(spec, max_inputs, max_outputs, max_layers, max_kernel)
        self.node_in = nn.Linear(in_channels, hidden)
        self.node_emb = nn.Embedding(self.limits.num_ids, hidden)
        self.edge_in = nn.Linear(in_channels * self.limits.max_kernel, hidden)
        self.layers = nn.ModuleList(MessagePassing(hidden) for _ in range(num_layers))
        self.head = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, out_features))

    def graph(self, weights: Weights) -> NeuralGraph:
        return NeuralGraph.from_weights(weights, self.limits)

    def forward(self, x: Weights | NeuralGraph) -> Tensor:
        """`Weights` [B, C, ...] (or a `NeuralGraph` batch of mixed architectures) -> ``[B, out_features]``."""
        if isinstance(x, Weights):
            return self._forward_dense(x)
        g = x
        h = self.node_in(g.node_feat) + self.node_emb(g.node_id)
        e = self.edge_in(g.edge_feat)
        for layer in self.layers:
            h, e = layer(h, e, g.src, g.dst)
        mean = scatter_mean(h, g.node_graph, g.num_graphs)
        idx = g.node_graph.unsqueeze(1).expand_as(h)
        mx = h.new_full((g.num_graphs, h.shape[1]), -torch.inf).scatter_reduce(0, idx, h, "amax")
        outs = scatter_mean(h[g.is_output], g.node_graph[g.is_output], g.num_graphs)
        return self.head(torch.cat([mean, mx, outs], dim=1))

    def _forward_dense(self, weights: Weights) -> Tensor:
        nodes, edges = dense_features(weights, self.limits)
        ids = self.limits.node_ids(weights.spec)
        hs = [self.node_in(n) + self.node_emb(i.to(weights.device)) for n, i in zip(nodes, ids)]
        es = [self.edge_in(e) for e in edges]
        for layer in self.layers:
            hs, es = layer.forward_dense(hs, es)
        h = torch.cat(hs, dim=1)  # [B, N, d]
        return self.head(torch.cat([h.mean(dim=1), h.amax(dim=1), hs[-1].mean(dim=1)], dim=1))
