"""`graph`: NG-GNN, the neural-graph PNA of Kofinas et al. (Graph Neural Networks for
Learning Equivariant Representations of Neural Networks, ICLR 2024), as their code builds it
(mkofinas/neural-graphs: ``nn/gnn.py``, ``nn/graph_constructor.py``,
``experiments/inr_classification/configs/model/pna.yaml`` and ``scripts/mnist_cls_pna.sh``).

- Input (``GraphConstructor``, `GraphInput`): every weight and bias through random Fourier
  features (128 frequencies, sigma 3) and two linear layers; nodes add a positional embedding
  (one per input neuron, one per output neuron, one per hidden layer). With
  ``reverse_edge_features`` (the MNIST script's ``rev_edge_features=True``) every weight is also
  a reverse edge, upper neuron -> lower neuron, and edges read ``[w_ij, w_ji, w_ij + w_ji]``.
- Layers (``PNA`` / ``PNAConv``, one tower, one pre and one post layer, ``modulate_edges``):
  the message on edge j -> i is ``scale(e) * Lin([x_i, x_j]) + shift(e)`` (FiLM by the edge);
  a node aggregates its messages with mean, min, max and std, each also scaled by
  ``log(deg + 1) / mean log(deg + 1)`` (PNA's amplification), and updates to
  ``Lin(Lin([x, aggregates]))``. Between layers: layer norm, SiLU, dropout, then the edges
  update (``EdgeMLP``: ``Lin(SiLU(Lin e + Lin x_src + Lin x_dst))``); not after the last.
- Readout (``pooling_method=cat``, ``pooling_layer_idx=last``): the output neurons' states,
  concatenated, through a 3-layer ReLU MLP.

Differences from the reference code, all deliberate:

- no PyG: a batch of one architecture runs dense per-layer tensors (`graph_features`), and
  mixed architectures a `NeuralGraph` built once per batch, not a PyG ``Data`` per network on
  every forward pass (the reference's ``to_pyg_batch``);
- the norm between layers is PyG's ``LayerNorm(mode="graph")`` *per network*; the reference
  calls it without the batch vector, so its statistics pool the whole mini-batch (an
  output then depends on the other networks in the batch, in training and evaluation alike);
- PNA's average log-degree comes from the degrees of the graph the model processes (with
  reverse edges), as PNA defines it; the reference's histogram counts forward in-degrees only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.graph_features import (
    GraphInput,
    GraphLimits,
    NeuralGraph,
    dense_features,
    layer_sizes,
    names,
    scatter_count,
    scatter_extreme,
    scatter_sum,
    split_linear,
)
from weightspace.models.registry import Preset, register_model, register_preset

__all__ = ["NeuralGraph", "NGGNN", "PNAConv", "GraphNorm"]

AGGREGATORS = ("sum", "mean", "min", "max", "var", "std")
SCALERS = ("identity", "amplification", "attenuation", "linear", "inverse_linear")


class PNAConv(nn.Module):
    """PyG's ``PNAConv`` as the reference configures it (towers 1, pre/post layers 1,
    ``modulate_edges``), with its aggregation written from per-node moments so the dense and
    the sparse path share it."""

    def __init__(self, d: int, d_edge: int, aggregators: Sequence[str], scalers: Sequence[str],
                 avg_deg_log: float, avg_deg_lin: float) -> None:
        super().__init__()
        self.aggregators, self.scalers = tuple(aggregators), tuple(scalers)
        self.avg_deg_log, self.avg_deg_lin = avg_deg_log, avg_deg_lin
        self.edge_encoder = nn.Linear(d_edge, 2 * d)
        self.pre = nn.Linear(2 * d, d)  # on [x_dst, x_src]
        self.post = nn.Linear((len(self.aggregators) * len(self.scalers) + 1) * d, d)
        self.lin = nn.Linear(d, d)

    def _messages(self, e: Tensor, pre: Tensor) -> Tensor:
        scale, shift = self.edge_encoder(e).chunk(2, dim=-1)
        return scale * pre + shift

    def _update(self, x: Tensor, s: Tensor, s2: Tensor | None, mn: Tensor | None, mx: Tensor | None,
                count: Tensor) -> Tensor:
        """Aggregates from each node's message moments (sum, sum of squares, min, max: zeros
        where a node has no messages, as PyG), degree scalers, post and final linear layers."""
        c = count.clamp_min(1)
        out = []
        for name in self.aggregators:
            if name == "sum":
                out.append(s)
            elif name == "mean":
                out.append(s / c)
            elif name in ("min", "max"):
                out.append(mn if name == "min" else mx)
            else:  # PyG's VarAggregation and StdAggregation
                var = s2 / c - (s / c) ** 2
                if name == "std":
                    var = var.clamp(min=1e-5).sqrt()
                    var = var.masked_fill(var <= math.sqrt(1e-5), 0.0)
                out.append(var)
        agg = torch.cat(out, dim=-1)
        factors = {
            "identity": None,
            "amplification": torch.log(c + 1) / self.avg_deg_log,
            "attenuation": self.avg_deg_log / torch.log(c + 1),
            "linear": c / self.avg_deg_lin,
            "inverse_linear": self.avg_deg_lin / c,
        }
        scaled = [agg if factors[k] is None else agg * factors[k] for k in self.scalers]
        return self.lin(self.post(torch.cat([x, *scaled], dim=-1)))

    def _wants(self) -> tuple[bool, bool, bool]:
        a = set(self.aggregators)
        return bool(a & {"var", "std"}), "min" in a, "max" in a

    def forward(self, h: Tensor, e: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        """Sparse: node states ``[N, d]``, edge states ``[E, d_edge]``, messages src -> dst."""
        pre = split_linear(self.pre, h, 0, 2, bias=True)[dst] + split_linear(self.pre, h, 1, 2, bias=False)[src]
        m = self._messages(e, pre)
        n = len(h)
        sq, want_min, want_max = self._wants()
        return self._update(
            h,
            scatter_sum(m, dst, n),
            scatter_sum(m * m, dst, n) if sq else None,
            scatter_extreme(m, dst, n, "amin") if want_min else None,
            scatter_extreme(m, dst, n, "amax") if want_max else None,
            scatter_count(dst, n, h).unsqueeze(1),
        )

    def forward_dense(self, hs: list[Tensor], fwd: list[Tensor], rev: list[Tensor] | None) -> list[Tensor]:
        """Dense: ``hs[k]`` ``[B, n_k, d]``; ``fwd[l]`` / ``rev[l]`` ``[B, n_(l+1), n_l, d_edge]``
        the states of the edges lower -> upper / upper -> lower neuron (``rev`` None: none)."""
        p_dst = [split_linear(self.pre, h, 0, 2, bias=True) for h in hs]
        p_src = [split_linear(self.pre, h, 1, 2, bias=False) for h in hs]
        parts: list[list[tuple[Tensor, int]]] = [[] for _ in hs]  # messages into layer k, neighbour axis
        for l, e in enumerate(fwd):
            parts[l + 1].append((self._messages(e, p_dst[l + 1].unsqueeze(2) + p_src[l].unsqueeze(1)), 2))
            if rev is not None:
                parts[l].append((self._messages(rev[l], p_dst[l].unsqueeze(1) + p_src[l + 1].unsqueeze(2)), 1))
        sq, want_min, want_max = self._wants()
        out = []
        for h, ps in zip(hs, parts):
            if not ps:
                z = torch.zeros_like(h)
                out.append(self._update(h, z, z, z, z, h.new_zeros(())))
                continue
            count = h.new_tensor(float(sum(m.shape[a] for m, a in ps)))
            s = sum(m.sum(a) for m, a in ps)
            s2 = sum((m * m).sum(a) for m, a in ps) if sq else None
            mn = _fold(torch.minimum, [m.amin(a) for m, a in ps]) if want_min else None
            mx = _fold(torch.maximum, [m.amax(a) for m, a in ps]) if want_max else None
            out.append(self._update(h, s, s2, mn, mx, count))
        return out


def _fold(fn, xs: list[Tensor]) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


class EdgeMLP(nn.Module):
    """The reference's edge update: ``Lin(act(Lin e + Lin x_src + Lin x_dst))``."""

    def __init__(self, d_edge: int, d_node: int) -> None:
        super().__init__()
        self.lin_e = nn.Linear(d_edge, d_edge)
        self.lin_s, self.lin_t = nn.Linear(d_node, d_edge), nn.Linear(d_node, d_edge)
        self.lin1 = nn.Linear(d_edge, d_edge)

    def forward(self, e: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """``s``/``t``: ``lin_s``/``lin_t`` of the endpoints, already gathered or broadcastable."""
        return self.lin1(F.silu(self.lin_e(e) + s + t))


class GraphNorm(nn.Module):
    """PyG's ``LayerNorm(mode="graph")`` with the batch vector: one mean and variance per
    network over all its nodes and channels, then a per-channel affine map."""

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight, self.bias = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(self, h: Tensor, graph: Tensor | None = None, num_graphs: int = 0) -> Tensor:
        """``h`` ``[B, N, d]`` (dense), or ``[N, d]`` with ``graph`` ``[N]`` (sparse)."""
        if graph is None:
            x = h - h.mean(dim=(1, 2), keepdim=True)
            var = (x * x).mean(dim=(1, 2), keepdim=True)
        else:
            n = scatter_count(graph, num_graphs, h).clamp_min(1) * h.shape[1]
            x = h - (scatter_sum(h.sum(1), graph, num_graphs) / n)[graph].unsqueeze(1)
            var = (scatter_sum((x * x).sum(1), graph, num_graphs) / n)[graph].unsqueeze(1)
        return x / (var + self.eps).sqrt() * self.weight + self.bias


def graph_degrees(spec: NetworkSpec, reverse: bool) -> tuple[float, float]:
    """PNA's normalisers: the mean of ``log(deg + 1)`` and of ``deg`` over the nodes of the
    spec's neural graph (deg: number of incoming edges, reverse edges included)."""
    sizes = layer_sizes(spec)
    degs = []
    for k, n in enumerate(sizes):
        d = (sizes[k - 1] if k > 0 else 0) + (sizes[k + 1] if reverse and k + 1 < len(sizes) else 0)
        degs += [d] * n
    return sum(math.log(d + 1) for d in degs) / len(degs), sum(degs) / len(degs)


@register_model("graph", output="invariant", supports_conv=True,
                summary="NG-GNN: the neural-graph PNA of Kofinas et al. (ICLR 2024)")
class NGGNN(nn.Module):
    """NG-GNN (see the module doc). ``hidden`` is the node and edge width (reference
    ``d_hid``); options name the reference's: ``aggregators``/``scalers`` (PNA's, as a
    sequence or text joined by ``+``), ``edge_updates`` (``update_edge_attr``),
    ``reverse_edge_features`` (``rev_edge_features``), ``sin_emb_dim``/``sin_emb_sigma``
    (``sin_emb_dim``/``inp_factor``; 0: linear input maps), ``pos_embed``, ``norm`` ("graph":
    per-network layer norm, "layer": per node, "none"), ``dropout``."""

    def __init__(
        self,
        spec: NetworkSpec,
        out_features: int,
        hidden: int = 32,
        num_layers: int = 3,
        aggregators: str | Sequence[str] = ("mean", "min", "max", "std"),
        scalers: str | Sequence[str] = ("identity", "amplification"),
        edge_updates: bool = True,
        reverse_edge_features: bool = True,
        sin_emb_dim: int = 64,
        sin_emb_sigma: float = 3.0,
        pos_embed: bool = True,
        norm: str = "graph",
        dropout: float = 0.0,
        in_channels: int = 1,
        max_inputs: int = 16,
        max_outputs: int = 16,
        max_layers: int = 16,
        max_kernel: int | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if norm not in ("graph", "layer", "none"):
            raise ValueError(f"norm must be 'graph', 'layer' or 'none', got {norm!r}")
        self.spec, self.norm_kind, self.dropout = spec, norm, dropout
        self.reverse = reverse_edge_features
        self.limits = GraphLimits.for_spec(spec, max_inputs, max_outputs, max_layers, max_kernel)
        self.input = GraphInput(in_channels, in_channels * self.limits.max_kernel, hidden, hidden, self.limits.num_ids,
                                sin_emb_dim=sin_emb_dim, sigma=sin_emb_sigma, reverse_edge_features=reverse_edge_features,
                                pos_embed=pos_embed)
        aggr, scal = names(aggregators, AGGREGATORS, "aggregators"), names(scalers, SCALERS, "scalers")
        avg_log, avg_lin = graph_degrees(spec, reverse_edge_features)
        self.convs = nn.ModuleList(PNAConv(hidden, hidden, aggr, scal, avg_log, avg_lin) for _ in range(num_layers))
        make_norm = {"graph": lambda: GraphNorm(hidden), "layer": lambda: nn.LayerNorm(hidden), "none": nn.Identity}[norm]
        self.norms = nn.ModuleList(make_norm() for _ in range(num_layers - 1))
        self.edge_mlps = nn.ModuleList(EdgeMLP(hidden, hidden) for _ in range(num_layers - 1)) if edge_updates else None
        self.head = nn.Sequential(
            nn.Linear(spec.out_features * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, out_features),
        )

    def graph(self, weights: Weights) -> NeuralGraph:
        return NeuralGraph.from_weights(weights, self.limits)

    def forward(self, x: Weights | NeuralGraph) -> Tensor:
        """`Weights` [B, C, ...] (or a `NeuralGraph` batch of mixed architectures) -> ``[B, out_features]``."""
        return self._forward_dense(x) if isinstance(x, Weights) else self._forward_sparse(x)

    def _between(self, i: int, h: Tensor, graph: Tensor | None = None, num_graphs: int = 0) -> Tensor:
        if self.norm_kind == "graph":
            h = self.norms[i](h, graph, num_graphs)
        else:
            h = self.norms[i](h)
        return F.dropout(F.silu(h), p=self.dropout, training=self.training)

    def _forward_sparse(self, g: NeuralGraph) -> Tensor:
        h = self.input.nodes(g.node_feat, g.node_id)
        if self.reverse:
            fwd, rev = self.input.edges(g.edge_feat)
            e, src, dst = torch.cat([fwd, rev]), torch.cat([g.src, g.dst]), torch.cat([g.dst, g.src])
        else:
            e, src, dst = self.input.forward_edges(g.edge_feat), g.src, g.dst
        for i, conv in enumerate(self.convs):
            h = conv(h, e, src, dst)
            if i == len(self.convs) - 1:
                break
            h = self._between(i, h, g.node_graph, g.num_graphs)
            if self.edge_mlps is not None:
                mlp = self.edge_mlps[i]
                e = mlp(e, mlp.lin_s(h)[src], mlp.lin_t(h)[dst])
        return self.head(g.output_nodes(h, self.spec.out_features))

    def _forward_dense(self, weights: Weights) -> Tensor:
        nodes, edges = dense_features(weights, self.limits)
        ids = self.limits.node_ids(weights.spec)
        hs = [self.input.nodes(n, i.to(weights.device)) for n, i in zip(nodes, ids)]
        if self.reverse:
            fwd, rev = map(list, zip(*(self.input.edges(e) for e in edges)))
        else:
            fwd, rev = [self.input.forward_edges(e) for e in edges], None
        sizes = [h.shape[1] for h in hs]
        for i, conv in enumerate(self.convs):
            hs = conv.forward_dense(hs, fwd, rev)
            if i == len(self.convs) - 1:
                break
            hs = list(self._between(i, torch.cat(hs, dim=1)).split(sizes, dim=1))
            if self.edge_mlps is not None:
                mlp = self.edge_mlps[i]
                s, t = [mlp.lin_s(h) for h in hs], [mlp.lin_t(h) for h in hs]
                fwd = [mlp(e, s[l].unsqueeze(1), t[l + 1].unsqueeze(2)) for l, e in enumerate(fwd)]
                if rev is not None:
                    rev = [mlp(e, s[l + 1].unsqueeze(2), t[l].unsqueeze(1)) for l, e in enumerate(rev)]
        return self.head(hs[-1].flatten(1))


NG_SOURCE = ("Kofinas et al., Graph Neural Networks for Learning Equivariant Representations of Neural Networks, "
             "ICLR 2024; mkofinas/neural-graphs experiments/inr_classification ")

register_preset(Preset(
    name="ng-gnn-mnist-inr",
    model="graph",
    config=dict(hidden=32, num_layers=4, aggregators=("mean", "min", "max", "std"), scalers=("identity", "amplification"),
                edge_updates=True, reverse_edge_features=True, sin_emb_dim=128, sin_emb_sigma=3.0, pos_embed=True,
                norm="graph", dropout=0.2),
    train=dict(optimizer="adamw", amsgrad=True, lr=1e-3, weight_decay=5e-4, batch_size=128, epochs=200,
               schedule="constant", warmup_steps=1000, grad_clip=10.0),
    augment="affine",
    source=NG_SOURCE + "(configs/model/pna.yaml, configs/base.yaml, scripts/mnist_cls_pna.sh: d_hid 32, 4 PNA layers, "
           "mean/min/max/std x identity/amplification, edge updates, rev_edge_features, sin_emb 128 with inp_factor 3, "
           "positional embeddings, dropout 0.2, cat readout of the output neuron; AdamW amsgrad lr 1e-3 wd 5e-4, "
           "1000 warm-up steps then constant, batch 128, 200 epochs, grad-norm clip 10; 3 seeds)",
    published={"mnist-inr": 91.4},
    deviations="per-network graph layer norm (the reference's pools its statistics over the whole mini-batch); PNA's "
               "average log-degree from the processed graph's degrees (the reference counts forward in-degrees only); "
               "inputs standardised per tensor by the task (the reference's per-layer statistics, the same map); "
               "augmentation 'affine' (exact rotation 45 deg / scale 0.2 / shift 0.25 of the image domain) for the "
               "reference's DWSNets INR augmentations, without their weight dropout (p 0.01) and constant 'noise' shift",
))
