"""A light hidden-neuron-permutation-equivariant layer: a *subset* of the DWSNets basis.

This is not DWSNets (that is `weightspace.models.dws`, the complete basis): on a 2->3->3->1 MLP
the linear maps commuting with hidden-neuron permutations span 75 dimensions and this layer
realises 35 (with ``io="permutable"``: 57 and 33). It leaves out summaries of non-adjacent layers,
the input-coordinate axis in messages leaving the first layer, and set layers. It is kept,
under its own name (`dws_light`), because earlier benchmarks (BENCHMARKS.md, classify_inrs*)
were measured with it and because it is fast.

`EquivariantLayer` is a linear map from weight-space features with C channels to C'
channels that commutes with every permutation of hidden neurons (`NetworkSpec`'s
group). It is built from the standard equivariant terms — each entry mixed with
summaries (means) of its row, its column, its layer, its bias, and the adjacent layers
that share one of its neuron axes — plus the terms that DWSNets gains over the fully
permutation-symmetric NP layer of NFN: along the axes of *input* and *output* neurons,
which the group never permutes, the layer mixes freely (a dense map over that axis).

Conv kernels are folded into channels (``C * kh * kw``), so MLPs and plain CNNs go
through the same code. Everything is batched tensor ops; the only Python loop is over
the (few) layers.

`DWSClassifier` stacks equivariant layers, each followed by batch norm (`LayerBatchNorm`,
as in DWSNets; ``norm="channel"`` normalises each network on its own instead) and ReLU, and
pools over hidden axes (mean and max) to an invariant vector.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.registry import register_model


def _k(spec: NetworkSpec, i: int) -> int:
    return math.prod(spec.layers[i].kernel_size) if spec.layers[i].kernel_size else 1


def fold(w: Weights) -> tuple[list[Tensor], list[Tensor]]:
    """Channels last: weights ``[B, o, n, C*K]`` and biases ``[B, o, C]`` (zeros where absent)."""
    ws, bs = [], []
    for t, b in zip(w.weights, w.biases):
        bsz, c, o, n = t.shape[:4]
        ws.append(t.reshape(bsz, c, o, n, -1).permute(0, 2, 3, 1, 4).reshape(bsz, o, n, -1))
        bs.append(b.permute(0, 2, 1) if b is not None else t.new_zeros(bsz, o, c))
    return ws, bs


def unfold(spec: NetworkSpec, ws: list[Tensor], bs: list[Tensor], channels: int) -> Weights:
    """Inverse of `fold` for ``channels`` channels (biases are always returned)."""
    out_w = []
    for layer, t in zip(spec.layers, ws):
        bsz, o, n = t.shape[:3]
        t = t.reshape(bsz, o, n, channels, -1).permute(0, 3, 1, 2, 4)
        out_w.append(t.reshape(bsz, channels, o, n, *layer.kernel_size))
    filled = filled_spec(spec)
    return Weights(filled, tuple(out_w), tuple(b.permute(0, 2, 1) for b in bs))


def restore_spec(w: Weights, spec: NetworkSpec) -> Weights:
    """Drop the biases that ``spec`` does not have (after a layer that always makes them)."""
    return Weights(spec, w.weights, tuple(b if layer.bias else None for b, layer in zip(w.biases, spec.layers)))


def filled_spec(spec: NetworkSpec) -> NetworkSpec:
    return NetworkSpec(tuple(_with_bias(layer) for layer in spec.layers), pool=spec.pool)


def _with_bias(layer):
    from dataclasses import replace

    return layer if layer.bias else replace(layer, bias=True)


class EquivariantLayer(nn.Module):
    """Hidden-neuron-permutation-equivariant linear map, C -> C' channels.

    forward: `Weights` ``[B, C, ...]`` -> `Weights` ``[B, C', ...]`` (biases always present).
    """

    def __init__(self, spec: NetworkSpec, in_channels: int, out_channels: int, io: str = "fixed", reduction: str = "mean") -> None:
        super().__init__()
        if io not in ("fixed", "permutable"):
            raise ValueError(f"io must be 'fixed' (DWS / NFN-HNP) or 'permutable' (NFN-NP), got {io!r}")
        if reduction not in ("mean", "max"):
            raise ValueError(f"reduction must be 'mean' or 'max' (how rows, columns and layers are summarised), got {reduction!r}")
        self.spec, self.cin, self.cout, self.io, self.reduction = spec, in_channels, out_channels, io, reduction
        L = spec.num_layers
        ck = [in_channels * _k(spec, i) for i in range(L)]
        cko = [out_channels * _k(spec, i) for i in range(L)]
        c, co = in_channels, out_channels
        lin = nn.Linear
        self.w_self = nn.ModuleList(lin(ck[i], cko[i]) for i in range(L))
        self.w_row = nn.ModuleList(lin(ck[i], cko[i], bias=False) for i in range(L))
        self.w_col = nn.ModuleList(lin(ck[i], cko[i], bias=False) for i in range(L))
        self.w_all = nn.ModuleList(lin(ck[i], cko[i], bias=False) for i in range(L))
        self.w_bias = nn.ModuleList(lin(c, cko[i], bias=False) for i in range(L))
        self.w_bias_all = nn.ModuleList(lin(c, cko[i], bias=False) for i in range(L))
        # adjacent layers sharing an axis: layer i-1's rows (and bias) index layer i's columns,
        # layer i+1's columns index layer i's rows
        self.w_prev_row = nn.ModuleList(lin(ck[i - 1], cko[i], bias=False) for i in range(1, L))
        self.w_prev_bias = nn.ModuleList(lin(c, cko[i], bias=False) for i in range(1, L))
        self.w_next_col = nn.ModuleList(lin(ck[i + 1], cko[i], bias=False) for i in range(L - 1))
        # fixed input axis of layer 0 and output axis of the last layer: dense mixing
        # (absent in NP mode, which treats input and output neurons as permutable too)
        n0, oL = spec.layers[0].in_features, spec.layers[-1].out_features
        dense = io == "fixed"
        self.w_in_dense = lin(n0 * ck[0], n0 * cko[0], bias=False) if dense else None
        self.w_out_dense = lin(oL * ck[-1], oL * cko[-1], bias=False) if dense else None
        self.b_self = nn.ModuleList(lin(c, co) for i in range(L))
        self.b_row = nn.ModuleList(lin(ck[i], co, bias=False) for i in range(L))
        self.b_all = nn.ModuleList(lin(c, co, bias=False) for i in range(L))
        self.b_layer = nn.ModuleList(lin(ck[i], co, bias=False) for i in range(L))
        self.b_next_col = nn.ModuleList(lin(ck[i + 1], co, bias=False) for i in range(L - 1))
        self.b_out_dense = lin(oL * c, oL * co, bias=False) if dense else None
        self._init_scale()

    def _init_scale(self) -> None:
        # Each output sums ~8 terms; shrink them so activations keep unit scale at init.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.data.mul_(1 / math.sqrt(8))

    def forward(self, w: Weights) -> Weights:
        if w.channels != self.cin:
            raise ValueError(f"layer expects {self.cin} channels, got {w.channels}")
        ws, bs = fold(w)
        L = len(ws)
        # summaries over permuted axes: any symmetric reduction keeps equivariance (the DWSNets
        # reference trainer uses max)
        red = torch.mean if self.reduction == "mean" else torch.amax
        rows = [red(t, dim=2) for t in ws]  # [B, o_i, CK]: summary of each out neuron's row
        cols = [red(t, dim=1) for t in ws]  # [B, n_i, CK]: summary of each in neuron's column
        alls = [red(t, dim=(1, 2)) for t in ws]  # [B, CK]
        ball = [red(b, dim=1) for b in bs]  # [B, C]
        out_w, out_b = [], []
        for i in range(L):
            t = ws[i]
            bsz, o, n, _ = t.shape
            y = self.w_self[i](t)
            y = y + self.w_row[i](rows[i]).unsqueeze(2) + self.w_col[i](cols[i]).unsqueeze(1)
            y = y + (self.w_all[i](alls[i]) + self.w_bias_all[i](ball[i]))[:, None, None]
            y = y + self.w_bias[i](bs[i]).unsqueeze(2)
            if i > 0:
                y = y + (self.w_prev_row[i - 1](rows[i - 1]) + self.w_prev_bias[i - 1](bs[i - 1])).unsqueeze(1)
            if i < L - 1:
                y = y + self.w_next_col[i](cols[i + 1]).unsqueeze(2)
            if i == 0 and self.w_in_dense is not None:
                y = y + self.w_in_dense(t.reshape(bsz, o, -1)).reshape(bsz, o, n, -1)
            if i == L - 1 and self.w_out_dense is not None:
                y = y + self.w_out_dense(t.transpose(1, 2).reshape(bsz, n, -1)).reshape(bsz, n, o, -1).transpose(1, 2)
            out_w.append(y)

            b = self.b_self[i](bs[i]) + self.b_row[i](rows[i])
            b = b + (self.b_all[i](ball[i]) + self.b_layer[i](alls[i])).unsqueeze(1)
            if i < L - 1:
                b = b + self.b_next_col[i](cols[i + 1])
            elif self.b_out_dense is not None:
                b = b + self.b_out_dense(bs[i].reshape(bsz, -1)).reshape(bsz, o, -1)
            out_b.append(b)
        return unfold(self.spec, out_w, out_b, self.cout)


class InvariantPool(nn.Module):
    """Weights ``[B, C, ...]`` -> ``[B, F]``: statistics (``"mean"``, ``"max"``) over every
    hidden axis; with ``io="fixed"`` the axes of input and output neurons are kept (the group
    does not move them), with ``io="permutable"`` they are pooled too."""

    def __init__(self, spec: NetworkSpec, channels: int, io: str = "fixed", stats: tuple[str, ...] = ("mean", "max")) -> None:
        super().__init__()
        self.spec, self.io, self.stats = spec, io, stats
        L = spec.num_layers
        feats = 0
        for i, layer in enumerate(spec.layers):
            keep_n = layer.in_features if i == 0 and io == "fixed" else 1
            keep_o = layer.out_features if i == L - 1 and io == "fixed" else 1
            feats += len(stats) * (keep_o * keep_n * channels * _k(spec, i) + keep_o * channels)
        self.out_features = feats

    def forward(self, w: Weights) -> Tensor:
        ws, bs = fold(w)
        L = len(ws)
        parts = []
        perm = self.io == "permutable"
        for i, (t, b) in enumerate(zip(ws, bs)):
            dims_w = tuple(d for d, moves in ((1, i < L - 1 or perm), (2, i > 0 or perm)) if moves)
            dims_b = (1,) if i < L - 1 or perm else ()
            for x, dims in ((t, dims_w), (b, dims_b)):
                for stat in self.stats:
                    if not dims:
                        parts.append(x.flatten(1))
                    else:
                        parts.append((x.mean(dim=dims) if stat == "mean" else x.amax(dim=dims)).flatten(1))
        return torch.cat(parts, dim=1)


class ChannelNorm(nn.Module):
    """Normalises each channel over all entries of each layer, per network: invariant
    statistics, so the map stays equivariant."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))

    def forward(self, w: Weights) -> Weights:
        def norm(t: Tensor) -> Tensor:
            dims = tuple(range(2, t.dim()))
            return t / (t.square().mean(dim=dims, keepdim=True) + 1e-6).sqrt() * self.gain.view(1, -1, *([1] * len(dims)))

        return w.map(norm)


class LayerBatchNorm(nn.Module):
    """Batch normalisation of each weight and bias tensor over its channels, with statistics
    pooled over the batch and every entry of the tensor (as in DWSNets): entries are pooled
    alike, so the map stays equivariant, and unlike `ChannelNorm` it keeps each network's scale
    relative to the others."""

    def __init__(self, spec: NetworkSpec, channels: int) -> None:
        super().__init__()
        self.w_norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in spec.layers)
        self.b_norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in spec.layers)

    def forward(self, w: Weights) -> Weights:
        def norm(bn: nn.BatchNorm1d, t: Tensor) -> Tensor:
            x = t.reshape(t.shape[0], t.shape[1], -1)
            if bn.training and x.shape[0] * x.shape[2] == 1:
                # one value per channel (one network's one-entry tensor, e.g. a scalar output's
                # bias): batch statistics are undefined, so normalise with the running ones
                # (left unchanged) instead of failing on a batch of one
                return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps).reshape(t.shape)
            return bn(x).reshape(t.shape)

        ws = tuple(norm(bn, t) for bn, t in zip(self.w_norms, w.weights))
        bs = tuple(None if b is None else norm(bn, b) for bn, b in zip(self.b_norms, w.biases))
        return Weights(w.spec, ws, bs)


class EquivariantClassifier(nn.Module):
    """Equivariant layers (ReLU, a norm: `ChannelNorm`, `LayerBatchNorm` or none) -> `InvariantPool` -> MLP head.

    Subclasses fix the published design choices: ``io`` (fixed or permutable input/output
    neurons), ``norm``, the pooling ``stats`` and the head's depth.
    """

    io: str = "fixed"
    norm: str = "channel"  # default of the ``norm`` option: "channel", "batch" or "none"
    stats: tuple[str, ...] = ("mean", "max")
    head_layers: int = 1

    def __init__(
        self,
        spec: NetworkSpec,
        out_features: int,
        hidden_channels: int = 16,
        num_layers: int = 3,
        head_hidden: int = 128,
        dropout: float = 0.1,
        in_channels: int = 1,
        reduction: str = "mean",
        norm: str | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        norm = norm or self.norm
        if norm not in ("channel", "batch", "none"):
            raise ValueError(f"norm must be 'channel' (per network), 'batch' (DWSNets' batch norm) or 'none', got {norm!r}")
        chans = [in_channels] + [hidden_channels] * num_layers
        filled = filled_spec(spec)
        self.layers = nn.ModuleList(
            EquivariantLayer(filled, a, b, io=self.io, reduction=reduction) for a, b in zip(chans[:-1], chans[1:])
        )
        make = {"channel": lambda c: ChannelNorm(c), "batch": lambda c: LayerBatchNorm(filled, c), "none": lambda c: nn.Identity()}
        self.norms = nn.ModuleList(make[norm](c) for c in chans[1:])
        self.pool = InvariantPool(filled, chans[-1], io=self.io, stats=self.stats)
        head: list[nn.Module] = []
        width = self.pool.out_features
        for _ in range(self.head_layers):
            head += [nn.Linear(width, head_hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = head_hidden
        self.head = nn.Sequential(*head, nn.Linear(width, out_features))

    def features(self, weights: Weights) -> Weights:
        """The equivariant trunk: `Weights` [B, C, ...] -> [B, hidden_channels, ...]."""
        h = weights.with_biases_filled()
        for layer, norm in zip(self.layers, self.norms):
            h = norm(layer(h)).map(torch.relu)
        return h

    def forward(self, weights: Weights) -> Tensor:
        """``weights`` [B, C, ...] -> logits ``[B, out_features]``."""
        return self.head(self.pool(self.features(weights)))


@register_model("dws_light", output="invariant", supports_conv=True,
                summary="light subset of the DWSNets basis (the model called dws before 2026-12-07) + invariant pooling")
class DWSLightClassifier(EquivariantClassifier):
    # batch norm as in DWSNets (the default until 2026-11-28 was "channel": on the full MNIST
    # INR zoo it reached 73.2% against 87.1% with batch norm, see BENCHMARKS.md)
    io, norm, stats, head_layers = "fixed", "batch", ("mean", "max"), 1
