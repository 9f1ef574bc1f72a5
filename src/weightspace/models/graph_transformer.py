"""`ngt`: NG-T, the neural-graph relational transformer of Kofinas et al. (ICLR 2024), as
their code builds it (mkofinas/neural-graphs ``nn/relational_transformer.py``,
``experiments/inr_classification/configs/model/rtransformer.yaml``, ``scripts/mnist_cls_rt.sh``).

Every node and every *directed* pair of neurons joined by a weight carries a state. The
input is neural-graphs' ``GraphConstructor`` (`GraphInput`; sigma 1). Each layer:

- attention (``RTAttention``): node i attends to node j through the state ``e_ij`` of the
  pair: ``q_ij = q_i + Q e_ij``, ``k_ij = k_j + K e_ij``, ``v_ij = v_j * M e_ij + V e_ij``
  (``modulate_v``), scores ``<q_ij, k_ij> / sqrt(d_attn_hid)`` per head, softmax over j;
  ``x = LN(x + Lin(attention))``, ``x = LN(x + MLP(x))`` (GELU MLPs);
- edge update (not in the last layer, whose edges the readout does not read):
  ``e_ij = LN(e_ij + Lin(GELU(Lin[e_ij, e_ji] + Lin x_i + Lin x_j)))``, ``e = LN(e + MLP(e))``.

Readout: the output neurons' states, concatenated, through ``Lin -> ReLU -> Lin``.

The edge mask, applied. The reference builds a dense ``N x N`` grid of pair states (every
pair, joined by a weight or not: the absent ones start from the encoding of a zero weight),
computes a mask of the real edges and never applies it (the masking line is commented out
and its fill value is ``-1e-9``, not ``-1e9``), so every neuron attends to every neuron of
the network. Here attention runs over real edges only: node i attends to exactly the
neurons it shares a weight with, in either direction (its previous and next layer), and the
softmax normalises over those. Both directions of a weight keep a state, as in the
reference: ``e_ij`` (lower -> upper) starts from the weight and ``e_ji`` from the encoding of
zero (or ``[0, w, w]`` with ``reverse_edge_features``); the edge update reads the pair's
other direction. Pairs with no weight have no state at all, so memory grows with the number
of weights (2E states, not N^2). Other differences: no ``torch.jit``; a batch of one
architecture runs dense per-layer grids, mixed architectures a `NeuralGraph`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.graph_features import (
    GraphInput,
    GraphLimits,
    NeuralGraph,
    dense_features,
    scatter_softmax,
    scatter_sum,
)
from weightspace.models.registry import Preset, register_model, register_preset

__all__ = ["NGT", "RTLayer", "RTAttention"]


def _linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    """The reference's ``Linear``: Xavier-uniform weight, zero bias."""
    m = nn.Linear(d_in, d_out, bias)
    nn.init.xavier_uniform_(m.weight)
    if bias:
        nn.init.zeros_(m.bias)
    return m


class RTAttention(nn.Module):
    """Relational attention; heads split as the reference's ``(h d)`` rearrange (each head's
    slice of the node (edge) projection holds its q, k, v (and modulation) in turn)."""

    def __init__(self, d_node: int, d_edge: int, d_hid: int, n_heads: int, modulate_v: bool = True) -> None:
        super().__init__()
        if d_hid % n_heads:
            raise ValueError(f"d_attn_hid={d_hid} must be divisible by num_heads={n_heads}")
        self.n_heads, self.modulate_v = n_heads, modulate_v
        self.scale = 1 / math.sqrt(d_hid)  # the reference scales by the full width, not the head's
        self.qkv_node = _linear(d_node, 3 * d_hid, bias=False)
        self.edge_factor = 4 if modulate_v else 3
        self.qkv_edge = _linear(d_edge, self.edge_factor * d_hid, bias=False)
        self.proj_out = _linear(d_hid, d_node)

    def _heads(self, t: Tensor, parts: int) -> tuple[Tensor, ...]:
        return t.unflatten(-1, (self.n_heads, -1)).chunk(parts, dim=-1)

    def _pair(self, q: Tensor, k: Tensor, v: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """Scores ``[..., H]`` and values ``[..., H, dh]`` of pairs with node terms ``q``
        (attending side), ``k``/``v`` (attended side) and pair state ``e``."""
        qkv_e = self._heads(self.qkv_edge(e), self.edge_factor)
        scores = ((q + qkv_e[0]) * (k + qkv_e[1])).sum(-1) * self.scale
        values = v * qkv_e[3] + qkv_e[2] if self.modulate_v else v + qkv_e[2]
        return scores, values

    def forward(self, x: Tensor, e: Tensor, row: Tensor, col: Tensor) -> Tensor:
        """Sparse: node ``row[p]`` attends to node ``col[p]`` through state ``e[p]``."""
        q, k, v = self._heads(self.qkv_node(x), 3)
        scores, values = self._pair(q[row], k[col], v[col], e)
        attn = scatter_softmax(scores, row, len(x))
        return self.proj_out(scatter_sum(attn.unsqueeze(-1) * values, row, len(x)).flatten(-2))

    def forward_dense(self, xs: list[Tensor], fwd: list[Tensor], rev: list[Tensor]) -> list[Tensor]:
        """Dense: ``xs[k]`` ``[B, n_k, d]``; ``fwd[l]`` / ``rev[l]`` ``[B, n_(l+1), n_l, d_edge]``
        the states e_ij / e_ji of lower neuron i and upper neuron j."""
        qkv = [self._heads(self.qkv_node(x), 3) for x in xs]
        scores: list[list[Tensor]] = [[] for _ in xs]  # per node layer: [B, n_k, m, H] per neighbour layer
        values: list[list[Tensor]] = [[] for _ in xs]
        for l, (f, r) in enumerate(zip(fwd, rev)):
            (q_lo, k_lo, v_lo), (q_up, k_up, v_up) = qkv[l], qkv[l + 1]
            # lower neuron i attends to upper neuron j through e_ij = fwd[l][:, j, i]
            s, v = self._pair(q_lo.unsqueeze(1), k_up.unsqueeze(2), v_up.unsqueeze(2), f)
            scores[l].append(s.transpose(1, 2))
            values[l].append(v.transpose(1, 2))
            # upper neuron j attends to lower neuron i through e_ji = rev[l][:, j, i]
            s, v = self._pair(q_up.unsqueeze(2), k_lo.unsqueeze(1), v_lo.unsqueeze(1), r)
            scores[l + 1].append(s)
            values[l + 1].append(v)
        out = []
        for s, v in zip(scores, values):
            attn = torch.softmax(torch.cat(s, dim=2), dim=2)  # over the node's neighbours only
            out.append(self.proj_out((attn.unsqueeze(-1) * torch.cat(v, dim=2)).sum(2).flatten(-2)))
        return out


class EdgeLayer(nn.Module):
    """The reference's ``EdgeLayer`` (``EdgeMLP`` then an MLP, each with a residual and LN)."""

    def __init__(self, d_node: int, d_edge: int, d_edge_hid: int, dropout: float) -> None:
        super().__init__()
        self.lin0_e = _linear(2 * d_edge, d_edge_hid)
        self.lin0_s, self.lin0_t = _linear(d_node, d_edge_hid), _linear(d_node, d_edge_hid)
        self.lin1 = _linear(d_edge_hid, d_edge)
        self.drop = nn.Dropout(dropout)
        self.edge_mlp1 = nn.Sequential(_linear(d_edge, d_edge_hid, bias=False), nn.GELU(), _linear(d_edge_hid, d_edge),
                                       nn.Dropout(dropout))
        self.eln0, self.eln1 = nn.LayerNorm(d_edge), nn.LayerNorm(d_edge)

    def forward(self, e: Tensor, partner: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """``e`` the pair states i -> j, ``partner`` those of j -> i, ``s``/``t`` ``lin0_s x_i`` /
        ``lin0_t x_j`` (gathered or broadcastable)."""
        h = self.drop(self.lin1(nn.functional.gelu(self.lin0_e(torch.cat([e, partner], dim=-1)) + s + t)))
        e = self.eln0(e + h)
        return self.eln1(e + self.edge_mlp1(e))


class RTLayer(nn.Module):
    def __init__(self, d_node: int, d_edge: int, d_attn_hid: int, d_node_hid: int, d_edge_hid: int, n_heads: int,
                 dropout: float, edge_update: bool, modulate_v: bool) -> None:
        super().__init__()
        self.self_attn = RTAttention(d_node, d_edge, d_attn_hid, n_heads, modulate_v)
        self.lin0 = _linear(d_node, d_node)
        self.dropout0 = nn.Dropout(dropout)
        self.node_ln0, self.node_ln1 = nn.LayerNorm(d_node), nn.LayerNorm(d_node)
        self.node_mlp = nn.Sequential(_linear(d_node, d_node_hid, bias=False), nn.GELU(), _linear(d_node_hid, d_node),
                                      nn.Dropout(dropout))
        self.edge_updates = EdgeLayer(d_node, d_edge, d_edge_hid, dropout) if edge_update else None

    def node_update(self, x: Tensor, attn: Tensor) -> Tensor:
        x = self.node_ln0(x + self.dropout0(self.lin0(attn)))
        return self.node_ln1(x + self.node_mlp(x))

    def forward(self, x: Tensor, e: Tensor, row: Tensor, col: Tensor) -> tuple[Tensor, Tensor]:
        """Sparse; ``e`` holds both directions of every weight, the second half reversed."""
        x = self.node_update(x, self.self_attn(x, e, row, col))
        if self.edge_updates is not None:
            half = len(e) // 2
            eu = self.edge_updates
            e = eu(e, torch.cat([e[half:], e[:half]]), eu.lin0_s(x)[row], eu.lin0_t(x)[col])
        return x, e

    def forward_dense(self, xs: list[Tensor], fwd: list[Tensor], rev: list[Tensor]):
        xs = [self.node_update(x, a) for x, a in zip(xs, self.self_attn.forward_dense(xs, fwd, rev))]
        if self.edge_updates is not None:
            eu = self.edge_updates
            s, t = [eu.lin0_s(x) for x in xs], [eu.lin0_t(x) for x in xs]
            fwd, rev = (
                [eu(f, r, s[l].unsqueeze(1), t[l + 1].unsqueeze(2)) for l, (f, r) in enumerate(zip(fwd, rev))],
                [eu(r, f, s[l + 1].unsqueeze(2), t[l].unsqueeze(1)) for l, (f, r) in enumerate(zip(fwd, rev))],
            )
        return xs, fwd, rev


@register_model("ngt", output="invariant", supports_conv=True,
                summary="NG-T: the neural-graph relational transformer of Kofinas et al. (ICLR 2024), edge mask applied")
class NGT(nn.Module):
    """NG-T (see the module doc). Options name the reference's (``d_node``, ``d_edge``,
    ``d_attn_hid``, ``d_node_hid``, ``d_edge_hid``, ``d_out_hid``, ``num_layers`` = ``n_layers``,
    ``num_heads`` = ``n_heads``, ``dropout``, ``modulate_v``, ``reverse_edge_features`` =
    ``rev_edge_features``, ``sin_emb_dim``, ``sin_emb_sigma`` = ``inp_factor``, ``pos_embed``).

    Attention over real edges moves information one neuron layer per model layer, and a
    weight meets its neuron's other weights one layer later, so the default depth is the
    spec's number of layers + 1 (4 for an MNIST SIREN, as the reference's)."""

    def __init__(
        self,
        spec: NetworkSpec,
        out_features: int,
        d_node: int = 32,
        d_edge: int = 16,
        d_attn_hid: int = 32,
        d_node_hid: int = 64,
        d_edge_hid: int = 32,
        d_out_hid: int = 64,
        num_layers: int | None = None,
        num_heads: int = 4,
        dropout: float = 0.0,
        modulate_v: bool = True,
        reverse_edge_features: bool = False,
        sin_emb_dim: int = 64,
        sin_emb_sigma: float = 1.0,
        pos_embed: bool = True,
        in_channels: int = 1,
        max_inputs: int = 16,
        max_outputs: int = 16,
        max_layers: int = 16,
        max_kernel: int | None = None,
    ) -> None:
        super().__init__()
        num_layers = spec.num_layers + 1 if num_layers is None else num_layers
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.spec = spec
        self.limits = GraphLimits.for_spec(spec, max_inputs, max_outputs, max_layers, max_kernel)
        self.input = GraphInput(in_channels, in_channels * self.limits.max_kernel, d_node, d_edge, self.limits.num_ids,
                                sin_emb_dim=sin_emb_dim, sigma=sin_emb_sigma, reverse_edge_features=reverse_edge_features,
                                pos_embed=pos_embed)
        self.layers = nn.ModuleList(
            RTLayer(d_node, d_edge, d_attn_hid, d_node_hid, d_edge_hid, num_heads, dropout,
                    edge_update=i < num_layers - 1, modulate_v=modulate_v)
            for i in range(num_layers)
        )
        self.head = nn.Sequential(nn.Linear(spec.out_features * d_node, d_out_hid), nn.ReLU(),
                                  nn.Linear(d_out_hid, out_features))

    def graph(self, weights: Weights) -> NeuralGraph:
        return NeuralGraph.from_weights(weights, self.limits)

    def forward(self, x: Weights | NeuralGraph) -> Tensor:
        """`Weights` [B, C, ...] (or a `NeuralGraph` batch of mixed architectures) -> ``[B, out_features]``."""
        return self._forward_dense(x) if isinstance(x, Weights) else self._forward_sparse(x)

    def _forward_sparse(self, g: NeuralGraph) -> Tensor:
        x = self.input.nodes(g.node_feat, g.node_id)
        fwd, rev = self.input.edges(g.edge_feat)
        e, row, col = torch.cat([fwd, rev]), torch.cat([g.src, g.dst]), torch.cat([g.dst, g.src])
        for layer in self.layers:
            x, e = layer(x, e, row, col)
        return self.head(g.output_nodes(x, self.spec.out_features))

    def _forward_dense(self, weights: Weights) -> Tensor:
        nodes, edges = dense_features(weights, self.limits)
        ids = self.limits.node_ids(weights.spec)
        xs = [self.input.nodes(n, i.to(weights.device)) for n, i in zip(nodes, ids)]
        fwd, rev = map(list, zip(*(self.input.edges(e) for e in edges)))
        for layer in self.layers:
            xs, fwd, rev = layer.forward_dense(xs, fwd, rev)
        return self.head(xs[-1].flatten(1))


register_preset(Preset(
    name="ng-t-mnist-inr",
    model="ngt",
    config=dict(d_node=64, d_edge=32, d_attn_hid=128, d_node_hid=128, d_edge_hid=64, d_out_hid=128, num_layers=4,
                num_heads=8, dropout=0.2, modulate_v=True, reverse_edge_features=False, sin_emb_dim=128,
                sin_emb_sigma=1.0, pos_embed=True),
    train=dict(optimizer="adamw", amsgrad=True, lr=1e-3, weight_decay=5e-4, batch_size=128, epochs=200,
               schedule="constant", warmup_steps=1000, grad_clip=10.0),
    augment="affine",
    source="Kofinas et al., Graph Neural Networks for Learning Equivariant Representations of Neural Networks, "
           "ICLR 2024; mkofinas/neural-graphs experiments/inr_classification (configs/model/rtransformer.yaml, "
           "configs/base.yaml, scripts/mnist_cls_rt.sh: d_node 64, d_edge 32, d_attn_hid 128, d_node_hid 128, "
           "d_edge_hid 64, d_out_hid 128, 4 layers, 8 heads, modulate_v, sin_emb 128 with inp_factor 1, positional "
           "embeddings, dropout 0.2, cat readout; AdamW amsgrad lr 1e-3 wd 5e-4, 1000 warm-up steps then constant, "
           "batch 128, 200 epochs, grad-norm clip 10; 3 seeds)",
    published={"mnist-inr": 92.4},
    deviations="attention restricted to real edges (both directions of each weight; the reference computes the edge "
               "mask and never applies it, so every neuron attends to all N neurons and the N^2 - 2E pairs without a "
               "weight carry states too); inputs standardised per tensor by the task (the reference's per-layer "
               "statistics, the same map); augmentation 'affine' for the reference's DWSNets INR augmentations "
               "(without their weight dropout p 0.01 and constant 'noise' shift)",
))
