"""DWSNets (Navon et al., ICML 2023): the complete basis of linear maps between weight spaces
that commute with permutations of hidden neurons, and the DWSNets classifier built on it.

Layout. Neuron set ``k`` (``k = 0..L``) is the input of layer ``k`` (``k = 0``: the network's
inputs) and the output of layer ``k - 1``. Hidden sets (``1 <= k <= L - 1``) are permuted by the
group; the input and output sets are not, so they are *features*: `to_sets` folds them, the
channels and conv kernel positions into the last axis. Every tensor then has the set form
``[B, R, Q, F]``: ``R`` = its row (output-neuron) set if permuted, else 1; ``Q`` = its column
(input-neuron) set if permuted, else 1 (biases have ``Q = 1``); ``F`` = channels x fixed axes x
kernel.

The layer (`DWSLayer`) sums one block per ordered pair (input tensor t, output tensor o), as the
reference does (``nn/layers/{weight_to_weight,bias_to_weight,weight_to_bias,bias_to_bias}.py``):

- t and o share two permuted sets (t = o, a hidden-to-hidden weight): four maps of the entries,
  their row summaries, their column summaries and the whole-tensor summary (``kron``);
- they share one set s: t is summarised over its other permuted axis, a *set layer* runs over
  s (DeepSets ``Gamma(x) - Lambda(reduce(x))``, linear, or SAB: self-attention over the set),
  and the result is broadcast over o's other axis;
- they share none: t's full summary, a linear map, broadcast over o.

With linear DeepSets and mean summaries this spans the whole commutant: on 2->3->3->1 all 75
dimensions, counted in tests/models/test_dws_basis.py, where removing any one block loses some.
``reduction="max"`` (the reference trainer's choice) and ``set_layer="sab"`` make each block
non-linear; equivariance is unchanged.

Conv kernels fold into features, so plain CNN specs work too (hidden channels are the sets).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.dws_light import LayerBatchNorm, filled_spec
from weightspace.models.registry import Preset, register_model, register_preset

__all__ = ["DWSLayer", "DWSInvariantHead", "DWSClassifier", "to_sets", "from_sets", "permuted_sets"]


def permuted_sets(spec: NetworkSpec, io: str = "fixed") -> list[bool]:
    """Whether neuron set k (k = 0..L) is permuted by the group."""
    L = spec.num_layers
    return [io == "permutable" or 0 < k < L for k in range(L + 1)]


def _kernel(spec: NetworkSpec, i: int) -> int:
    return math.prod(spec.layers[i].kernel_size) if spec.layers[i].kernel_size else 1


def tensor_sets(spec: NetworkSpec, perm: list[bool]) -> list[tuple[int | None, int | None]]:
    """(row set, column set) of each tensor in `to_sets` order (W_0, b_0, W_1, b_1, ...), None
    where the axis is folded into features (not permuted, or a bias's missing column axis)."""
    out = []
    for i in range(spec.num_layers):
        row = i + 1 if perm[i + 1] else None
        out.append((row, i if perm[i] else None))
        out.append((row, None))
    return out


def feature_sizes(spec: NetworkSpec, perm: list[bool], channels: int) -> list[int]:
    """F of each tensor in set form."""
    sizes = []
    for i, layer in enumerate(spec.layers):
        o = 1 if perm[i + 1] else layer.out_features
        n = 1 if perm[i] else layer.in_features
        sizes += [o * n * channels * _kernel(spec, i), o * channels]
    return sizes


def to_sets(w: Weights, perm: list[bool]) -> list[Tensor]:
    """`Weights` ``[B, C, out, in, *k]`` (biases filled) -> set form ``[B, R, Q, F]`` per tensor,
    in the order W_0, b_0, W_1, b_1, ... ``F`` is ordered (fixed out, fixed in, C, kernel)."""
    xs = []
    for i, (t, b) in enumerate(zip(w.weights, w.biases)):
        bsz, c, o, n = t.shape[:4]
        x = t.reshape(bsz, c, o, n, -1).permute(0, 2, 3, 1, 4)  # [B, o, n, C, K]
        rp, cp = perm[i + 1], perm[i]
        if rp and cp:
            x = x.reshape(bsz, o, n, -1)
        elif rp:
            x = x.reshape(bsz, o, 1, -1)
        elif cp:
            x = x.permute(0, 2, 1, 3, 4).reshape(bsz, 1, n, -1)
        else:
            x = x.reshape(bsz, 1, 1, -1)
        xs.append(x)
        bb = b.permute(0, 2, 1)  # [B, o, C]
        xs.append(bb.reshape(bsz, o, 1, -1) if rp else bb.reshape(bsz, 1, 1, -1))
    return xs


def from_sets(spec: NetworkSpec, xs: list[Tensor], perm: list[bool], channels: int) -> Weights:
    """Inverse of `to_sets` for ``channels`` channels; the spec's biases are all present."""
    ws, bs = [], []
    for i, layer in enumerate(spec.layers):
        x, bb = xs[2 * i], xs[2 * i + 1]
        bsz, o, n = x.shape[0], layer.out_features, layer.in_features
        rp, cp = perm[i + 1], perm[i]
        if not rp and cp:
            x = x.reshape(bsz, n, o, channels, -1).permute(0, 2, 1, 3, 4)
        else:
            x = x.reshape(bsz, o, n, channels, -1)
        ws.append(x.permute(0, 3, 1, 2, 4).reshape(bsz, channels, o, n, *layer.kernel_size))
        bs.append(bb.reshape(bsz, o, channels).permute(0, 2, 1))
    return Weights(filled_spec(spec), tuple(ws), tuple(bs))


def _reduce(x: Tensor, dims: tuple[int, ...], how: str) -> Tensor:
    if not dims:
        return x
    return x.mean(dim=dims, keepdim=True) if how == "mean" else x.amax(dim=dims, keepdim=True)


class DeepSetLayer(nn.Module):
    """DeepSets over axis 1 of ``[B, n, F]``: ``Gamma(x) - Lambda(reduce_n(x))`` (linear)."""

    def __init__(self, fin: int, fout: int, reduction: str) -> None:
        super().__init__()
        self.gamma, self.lam, self.reduction = nn.Linear(fin, fout), nn.Linear(fin, fout, bias=False), reduction

    def forward(self, x: Tensor) -> Tensor:
        return self.gamma(x) - self.lam(_reduce(x, (1,), self.reduction))


class SAB(nn.Module):
    """Set attention block over axis 1 of ``[B, n, F]`` (Set Transformer's MAB(X, X), as DWSNets
    uses it, no layer norm): ``O = Q + softmax(Q K^T / sqrt(F_out)) V`` per head, then
    ``O + relu(fc_o(O))``. (The reference scales by the full width, not the head width.)"""

    def __init__(self, fin: int, fout: int, num_heads: int) -> None:
        super().__init__()
        heads = math.gcd(num_heads, fout)  # the reference splits the width evenly across heads
        self.q, self.k, self.v, self.o = nn.Linear(fin, fout), nn.Linear(fin, fout), nn.Linear(fin, fout), nn.Linear(fout, fout)
        self.heads, self.fout = heads, fout

    def forward(self, x: Tensor) -> Tensor:
        lead, n = x.shape[:-2], x.shape[-2]
        x = x.reshape(-1, n, x.shape[-1])
        q, k, v = self.q(x), self.k(x), self.v(x)

        def split(t: Tensor) -> Tensor:
            return t.reshape(t.shape[0], n, self.heads, -1).transpose(1, 2)

        att = F.scaled_dot_product_attention(split(q), split(k), split(v), scale=1 / math.sqrt(self.fout))
        o = q + att.transpose(1, 2).reshape(q.shape)
        o = o + torch.relu(self.o(o))
        return o.reshape(*lead, n, self.fout)


class DWSLayer(nn.Module):
    """The DWSNets layer: `Weights` ``[B, C, ...]`` -> `Weights` ``[B, C', ...]`` (biases always
    present), equivariant to the permutations of hidden neurons (``io="fixed"``) or of every
    neuron (``io="permutable"``). See the module docstring for its blocks.

    ``reduction``: ``"mean"`` or ``"max"`` summaries; ``set_layer``: ``"ds"`` (linear DeepSets:
    with mean summaries the layer is linear and spans the complete basis) or ``"sab"``.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        in_channels: int,
        out_channels: int,
        *,
        reduction: str = "mean",
        set_layer: str = "ds",
        num_heads: int = 8,
        io: str = "fixed",
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "max"):
            raise ValueError(f"reduction must be 'mean' or 'max', got {reduction!r}")
        if set_layer not in ("ds", "sab"):
            raise ValueError(f"set_layer must be 'ds' (DeepSets) or 'sab' (set attention), got {set_layer!r}")
        if io not in ("fixed", "permutable"):
            raise ValueError(f"io must be 'fixed' or 'permutable', got {io!r}")
        self.spec, self.cin, self.cout = filled_spec(spec), in_channels, out_channels
        self.reduction, self.set_layer, self.io = reduction, set_layer, io
        self.perm = permuted_sets(spec, io)
        self.sets = tensor_sets(spec, self.perm)
        fin, fout = feature_sizes(spec, self.perm, in_channels), feature_sizes(spec, self.perm, out_channels)
        T = len(self.sets)
        self.blocks = nn.ModuleDict()
        self.kind: dict[str, str] = {}
        for t in range(T):
            st = {s for s in self.sets[t] if s is not None}
            for o in range(T):
                so = {s for s in self.sets[o] if s is not None}
                shared = st & so
                key = f"{t}_{o}"
                if len(shared) == 2:
                    self.blocks[key] = nn.ModuleList(nn.Linear(fin[t], fout[o]) for _ in range(4))
                    self.kind[key] = "kron"
                elif len(shared) == 1:
                    make = DeepSetLayer(fin[t], fout[o], reduction) if set_layer == "ds" else SAB(fin[t], fout[o], num_heads)
                    self.blocks[key] = make
                    self.kind[key] = "set"
                else:
                    self.blocks[key] = nn.Linear(fin[t], fout[o])
                    self.kind[key] = "pool"
        self.num_tensors = T
        self._init()

    def _init(self) -> None:
        # the reference's init: xavier normal times sqrt(2 fan_in / fan_out), biases ~U(-1e-4, 1e-4)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                out_c, in_c = m.weight.shape
                nn.init.xavier_normal_(m.weight)
                m.weight.data.mul_((2 * in_c / out_c) ** 0.5)
                if m.bias is not None:
                    m.bias.data.uniform_(-1e-4, 1e-4)

    def forward(self, w: Weights) -> Weights:
        if w.channels != self.cin:
            raise ValueError(f"layer expects {self.cin} channels, got {w.channels}")
        xs = to_sets(w.with_biases_filled(), self.perm)
        # every summary of an input tensor is computed once and shared by all the blocks reading it
        summaries: dict[tuple[int, tuple[int, ...]], Tensor] = {}

        def summary(t: int, dims: tuple[int, ...]) -> Tensor:
            if (t, dims) not in summaries:
                summaries[(t, dims)] = _reduce(xs[t], dims, self.reduction)
            return summaries[(t, dims)]

        outs = []
        for o in range(self.num_tensors):
            # terms of one broadcast shape ([B, R, Q, F], [B, R, 1, F], [B, 1, Q, F], [B, 1, 1, F])
            # are summed among themselves first: one full-size addition per shape, not per term
            by_shape: dict[tuple[int, int], Tensor] = {}
            for t in range(self.num_tensors):
                y = self._block(summary, t, o)
                key = (y.shape[1], y.shape[2])
                by_shape[key] = by_shape[key] + y if key in by_shape else y
            acc = None
            for key in sorted(by_shape, key=lambda k: k[0] * k[1]):
                acc = by_shape[key] if acc is None else acc + by_shape[key]
            shape = (xs[o].shape[0], xs[o].shape[1], xs[o].shape[2], acc.shape[-1])
            outs.append((acc / self.num_tensors).expand(shape))
        return from_sets(self.spec, outs, self.perm, self.cout)

    def _block(self, summary, t: int, o: int) -> Tensor:
        """The block from input tensor t to output tensor o; ``summary(t, dims)`` is tensor t
        reduced over ``dims`` (kept as size-1 axes)."""
        key = f"{t}_{o}"
        kind, block = self.kind[key], self.blocks[key]
        rt, qt = self.sets[t]
        ro, qo = self.sets[o]
        if kind == "kron":
            full, rows, cols, both = block
            return (full(summary(t, ())) + rows(summary(t, (1,))) + cols(summary(t, (2,)))
                    + both(summary(t, (1, 2)))) / 4
        if kind == "pool":
            return block(summary(t, tuple(d for d, s in ((1, rt), (2, qt)) if s is not None)))
        (s,) = ({rt, qt} - {None}) & ({ro, qo} - {None})
        axis_t = 1 if rt == s else 2
        other = 2 if axis_t == 1 else 1
        z = summary(t, (other,) if (qt if axis_t == 1 else rt) is not None else ()).squeeze(other)  # [B, n_s, F_t]
        y = block(z)  # [B, n_s, F_o]
        return y.unsqueeze(2) if ro == s else y.unsqueeze(1)


class DWSInvariantHead(nn.Module):
    """DWSNets' invariant layer: every tensor summarised over its permuted axes (its fixed axes
    stay features: the first layer's inputs, the last layer's outputs), concatenated, then an
    MLP of ``layers`` linear layers. `Weights` ``[B, C, ...]`` -> ``[B, out_features]``."""

    def __init__(self, spec: NetworkSpec, channels: int, out_features: int, *, reduction: str = "max",
                 io: str = "fixed", layers: int = 1) -> None:
        super().__init__()
        self.perm, self.reduction = permuted_sets(spec, io), reduction
        self.sets = tensor_sets(spec, self.perm)
        width = sum(feature_sizes(spec, self.perm, channels))
        mods: list[nn.Module] = [nn.Linear(width, out_features)]
        for _ in range(layers - 1):
            mods += [nn.ReLU(), nn.Linear(out_features, out_features)]
        self.mlp = nn.Sequential(*mods)  # the reference's _get_mlp: every layer has the output width
        self.features = width

    def forward(self, w: Weights) -> Tensor:
        xs = to_sets(w.with_biases_filled(), self.perm)
        parts = []
        for x, (r, q) in zip(xs, self.sets):
            dims = tuple(d for d, s in ((1, r), (2, q)) if s is not None)
            parts.append(_reduce(x, dims, self.reduction).flatten(1))
        return self.mlp(torch.cat(parts, dim=1))


class _Dropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, w: Weights) -> Weights:
        return w if self.p == 0 else w.map(lambda t: F.dropout(t, self.p, self.training))


@register_model("dws", output="invariant", supports_conv=True,
                summary="DWSNets: complete basis of hidden-permutation-equivariant layers (DeepSets or SAB), invariant head")
class DWSClassifier(nn.Module):
    """DWSNets' ``DWSModelForClassification``: ``num_layers`` `DWSLayer` s (the first from
    ``in_channels``), each after the first preceded by [batch norm], ReLU and dropout; then ReLU,
    dropout and `DWSInvariantHead`. The preset ``dwsnets-mnist-inr`` is the published MNIST-INR
    classifier; the defaults here are a smaller, faster model on the same complete basis.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        out_features: int,
        hidden_channels: int = 16,
        num_layers: int = 3,
        reduction: str = "mean",
        set_layer: str = "ds",
        num_heads: int = 8,
        batch_norm: bool = True,
        dropout: float = 0.0,
        head_layers: int = 1,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.spec = spec
        filled = filled_spec(spec)
        chans = [in_channels] + [hidden_channels] * num_layers
        self.layers = nn.ModuleList(
            # the reference gives the last layer one attention head
            DWSLayer(filled, a, b, reduction=reduction, set_layer=set_layer,
                     num_heads=num_heads if k < num_layers - 1 else 1)
            for k, (a, b) in enumerate(zip(chans[:-1], chans[1:]))
        )
        self.norms = nn.ModuleList(
            LayerBatchNorm(filled, hidden_channels) if batch_norm else nn.Identity() for _ in range(num_layers - 1)
        )
        self.drop = _Dropout(dropout)
        self.head = DWSInvariantHead(filled, hidden_channels, out_features, reduction=reduction, layers=head_layers)

    def features(self, weights: Weights) -> Weights:
        """The equivariant trunk: `Weights` [B, C, ...] -> [B, hidden_channels, ...] (before the final ReLU)."""
        h = self.layers[0](weights.with_biases_filled())
        for norm, layer in zip(self.norms, self.layers[1:]):
            h = layer(self.drop(norm(h).map(torch.relu)))
        return h

    def forward(self, weights: Weights) -> Tensor:
        """``weights`` [B, C, ...] -> logits ``[B, out_features]``."""
        return self.head(self.drop(self.features(weights).map(torch.relu)))


register_preset(Preset(
    name="dwsnets-mnist-inr",
    model="dws",
    config=dict(hidden_channels=32, num_layers=5, reduction="max", set_layer="sab", num_heads=8,
                batch_norm=True, dropout=0.0, head_layers=1),
    train=dict(optimizer="adamw", amsgrad=True, lr=5e-3, weight_decay=5e-4, batch_size=512, epochs=100,
               schedule="constant", grad_clip=None),
    augment="affine",
    source="Navon et al., Equivariant Architectures for Learning in Deep Weight Spaces, ICML 2023; "
           "AvivNavon/DWSNets experiments/mnist/trainer.py defaults (dim-hidden 32, n-hidden 4, reduction max, "
           "set-layer sab, n-heads 8, n-out-fc 1, add-bn, do-rate 0, AdamW amsgrad lr 5e-3 wd 5e-4, batch 512, 100 epochs)",
    published={"mnist-inr": 85.71},
    deviations="inputs are standardised per tensor (one mean and std per weight/bias tensor), not per entry as the "
               "reference's statistics file does (per-entry statistics are not permutation-symmetric); the "
               "augmentation is the exact domain map `affine` (rotation 45 deg, scale 0.2, shift 0.25) instead of "
               "the reference's first-layer perturbations, and no 'noise' (the reference's adds a constant shift)",
))
