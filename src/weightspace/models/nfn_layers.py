"""NFN's weight-space layers (Zhou et al., "Permutation Equivariant Neural Functionals",
NeurIPS 2023; reference code AllanYangZhou/nfn, ``nfn/layers/layers.py``).

- `NPLinear`: equivariant to permutations of *every* neuron set, the input and output neurons
  included (NFN's "NP" group). It is the complete space of such linear maps (checked by
  ``tests/models/test_nfn.py`` with `weightspace.core.basis`).
- `HNPLinear`: equivariant to permutations of hidden neurons only ("HNP"), exactly as the
  reference builds it, which is one family of maps short of complete (see its docstring).
- `NPPool`, `HNPPool`: the reference's invariant pooling, ``Weights`` -> ``[B, C * N]``.

Layout. Layers take `Weights` with C channels (weights ``[B, C, out, in, *kernel]``, biases
``[B, C, out]``; missing biases count as zeros) and return `Weights` with C' channels of the
spec with every bias present. Conv kernels are folded into channels, ``[B, C * K, out, in]``
with ``K = kh * kw`` (channel-major, as the reference's ``"b c o i h w -> b (c h w) o i"``):
kernel positions are never permuted, so they are just more features of an entry.

Parametrisation. Every reference ``Conv1d``/``Conv2d``/``Linear`` is one `_Map` here, whose
weight is kept split by input block (``W_k x_k`` summed instead of one ``W [x_1; x_2; ...]``;
the same function and parameter count, including one additive bias per reference module). The
split names each term, so a test can remove exactly one and see the layer lose a dimension.
Initialisation follows the reference's ``set_init_``: maps that add into one output share one
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` over their summed fan-in.

Neuron sets are numbered by layer boundary: set ``k`` (``0 <= k <= L``) has ``n_k`` neurons,
the columns of ``W_k`` and the rows of ``W_{k-1}`` and ``b_{k-1}``; set 0 are the inputs and
set L the outputs. Features "on set k" are tensors ``[B, F, n_k]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.dws_light import filled_spec, restore_spec  # noqa: F401 (re-exported)


# ---------------------------------------------------------------------- layout helpers
def kernel_volumes(spec: NetworkSpec) -> list[int]:
    """``K_i``: kernel positions of layer i (1 for linear layers)."""
    return [math.prod(layer.kernel_size) if layer.kernel_size else 1 for layer in spec.layers]


def fold(w: Weights) -> tuple[list[Tensor], list[Tensor]]:
    """Weights ``[B, C, o, i, *k]`` -> ``[B, C*K, o, i]``; biases ``[B, C, o]`` (zeros if absent)."""
    ws, bs = [], []
    for t, b in zip(w.weights, w.biases):
        bsz, c, o, n = t.shape[:4]
        if t.dim() > 4:
            t = t.movedim((2, 3), (-2, -1)).reshape(bsz, -1, o, n)
        ws.append(t)
        bs.append(b if b is not None else t.new_zeros(bsz, c, o))
    return ws, bs


def unfold(spec: NetworkSpec, ws: list[Tensor], bs: list[Tensor]) -> Weights:
    """Inverse of `fold`, onto ``spec`` with every bias present."""
    out = []
    for t, layer in zip(ws, spec.layers):
        if layer.kernel_size:
            bsz, _, o, n = t.shape
            t = t.reshape(bsz, -1, *layer.kernel_size, o, n).movedim((-2, -1), (2, 3))
        out.append(t)
    return Weights(filled_spec(spec), tuple(out), tuple(bs))


# ---------------------------------------------------------------------- one reference module
class _Map(nn.Module):
    """``y = sum_k W_k x_k + bias``: one channel-mixing map of the reference (a 1x1 conv or a
    Linear over the concatenation of its input blocks). ``blocks`` names the input blocks and
    their widths; every ``x_k`` is ``[B, F_k, *positions]`` (the same positions for all blocks),
    ``y`` is ``[B, out, *positions]``. Parameters: ``w.<block>`` ``[out, F_k]`` and ``bias``."""

    def __init__(self, blocks: dict[str, int], out: int) -> None:
        super().__init__()
        # a list of pairs keeps the reference's block order (a plain dict would be sorted)
        self.w = nn.ParameterDict([(k, nn.Parameter(torch.empty(out, f))) for k, f in blocks.items()])
        self.bias = nn.Parameter(torch.empty(out))

    @property
    def fan_in(self) -> int:
        return sum(p.shape[1] for p in self.w.values())

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        # one matmul over the concatenated blocks, as the reference's single conv does; a map of one
        # block (the middle layers' W_i -> W'_i, [B, C, n, n]) uses its input as it is: concatenating
        # one tensor copies it, 67 MB a layer at 512 channels, batch 32
        if len(self.w) == 1:
            (key, weight), = self.w.items()
            x = feats[key]
        elif next(iter(feats.values())).dim() == 2:
            # global features [B, F_k] into wide maps (up to 1024 x 5120 at 512 channels): one matmul
            # per block, so no concatenated copy of the weight is made forward and split backward
            blocks = iter(self.w.items())
            key, weight = next(blocks)
            y = nn.functional.linear(feats[key], weight, self.bias)
            for key, weight in blocks:
                y = y.addmm(feats[key], weight.t())
            return y
        else:
            x = torch.cat([feats[k] for k in self.w], dim=1)
            weight = torch.cat(list(self.w.values()), dim=1)
        # channel mixing as the reference runs it (1x1 convolutions over the positions): a
        # channels-last matmul instead ran at ~0.6x the reference's speed at 512 channels
        if x.dim() == 4:
            return nn.functional.conv2d(x, weight[:, :, None, None], self.bias)
        if x.dim() == 3:
            return nn.functional.conv1d(x, weight[:, :, None], self.bias)
        return nn.functional.linear(x, weight, self.bias)


def _init(*maps: _Map) -> None:
    """The reference's ``set_init_`` (PyTorch's default init when one map is alone)."""
    bound = 1.0 / math.sqrt(sum(m.fan_in for m in maps))
    with torch.no_grad():
        for m in maps:
            for p in m.parameters():
                p.uniform_(-bound, bound)


def _summaries(ws: list[Tensor], bs: list[Tensor]) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
    """Global features ``{name: [B, F]}`` and the features on each neuron set k (module doc):
    ``W{i}_in`` = mean of W_i over its rows (on set i), ``W{i}_out`` = mean over its columns
    (on set i+1), ``b{i}`` (on set i+1), ``W{i}_all`` / ``b{i}_all`` = full means."""
    L = len(ws)
    glob = {f"W{i}_all": w.mean((2, 3)) for i, w in enumerate(ws)}
    glob |= {f"b{i}_all": b.mean(2) for i, b in enumerate(bs)}
    on: list[dict[str, Tensor]] = [{} for _ in range(L + 1)]
    for i, (w, b) in enumerate(zip(ws, bs)):
        on[i][f"W{i}_in"] = w.mean(2)
        on[i + 1][f"W{i}_out"] = w.mean(3)
        on[i + 1][f"b{i}"] = b
    return glob, on


# ---------------------------------------------------------------------- NP
class NPLinear(nn.Module):
    """NFN's NP layer: ``Weights`` [B, C, ...] -> ``Weights`` [B, C', ...] (every bias present),
    equivariant to permuting every neuron set, inputs and outputs included.

    Output weight ``W'_i[j, k]`` (j on set i+1, k on set i), from the reference's four maps:
    ``w_{i}_self`` (W_i[j, k] itself), ``w_{i}_global`` (the full mean of every weight and bias),
    ``w_{i}_in`` (features on set i at k: W_i's mean over rows, and W_{i-1}'s mean over columns
    and b_{i-1}, which share that neuron), ``w_{i}_out`` (features on set i+1 at j: W_i's mean
    over columns, b_i, W_{i+1}'s mean over rows). Output bias ``b'_i[j]``: ``b_{i}_out`` (the
    features on set i+1 at j) plus ``b_{i}_global``. These are all the orbits of the group on
    pairs of entries, so the layer is complete (where every neuron set has >= 2 neurons each
    term is needed; with a set of one some coincide, e.g. W_i and its mean over rows)."""

    def __init__(self, spec: NetworkSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.spec = filled_spec(spec)
        L, K, ci, co = spec.num_layers, kernel_volumes(spec), in_channels, out_channels
        self.in_channels, self.out_channels = ci, co
        glob = {f"W{j}_all": K[j] * ci for j in range(L)} | {f"b{j}_all": ci for j in range(L)}
        for i in range(L):
            on_in = {f"W{i}_in": K[i] * ci} | ({f"W{i-1}_out": K[i - 1] * ci, f"b{i-1}": ci} if i > 0 else {})
            on_out = {f"W{i}_out": K[i] * ci, f"b{i}": ci}
            if i < L - 1:
                on_out[f"W{i+1}_in"] = K[i + 1] * ci
            w_maps = {"self": _Map({f"W{i}": K[i] * ci}, K[i] * co), "global": _Map(glob, K[i] * co),
                      "in": _Map(on_in, K[i] * co), "out": _Map(on_out, K[i] * co)}
            b_maps = {"out": _Map(on_out, co), "global": _Map(glob, co)}
            for name, m in w_maps.items():
                self.add_module(f"w_{i}_{name}", m)
            for name, m in b_maps.items():
                self.add_module(f"b_{i}_{name}", m)
            _init(*w_maps.values())
            _init(*b_maps.values())

    def forward(self, w: Weights) -> Weights:
        ws, bs = fold(w)
        glob, on = _summaries(ws, bs)
        out_w, out_b = [], []
        for i in range(len(ws)):
            m = lambda name: getattr(self, name)  # noqa: E731
            y = m(f"w_{i}_self")({f"W{i}": ws[i]})
            y = y + m(f"w_{i}_global")(glob)[..., None, None]
            y = y + m(f"w_{i}_in")(on[i]).unsqueeze(2)  # [B, C'K, 1, n_i]: repeated over rows
            y = y + m(f"w_{i}_out")(on[i + 1]).unsqueeze(3)  # [B, C'K, n_{i+1}, 1]: over columns
            out_w.append(y)
            out_b.append(m(f"b_{i}_out")(on[i + 1]) + m(f"b_{i}_global")(glob)[..., None])
        return unfold(self.spec, out_w, out_b)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, layers={len(self.spec.layers)}"


# ---------------------------------------------------------------------- HNP
class HNPLinear(nn.Module):
    """NFN's HNP layer: ``Weights`` [B, C, ...] -> ``Weights`` [B, C', ...] (every bias present),
    equivariant to permuting hidden neurons; input and output neurons stay fixed, so whatever is
    indexed by them is mixed densely. As in the reference (L >= 2 layers):

    - first layer: each row j of W_0 (all n_in * K_0 entries) with b_0[j] and W_1's mean over rows
      at j (and, for L = 2, the whole column j of W_1) -> row j of W'_0 and b'_0[j]
      (``w_0_out``, ``b_0_out``);
    - last layer: each column k of W_{L-1} with W_{L-2}'s mean over columns at k (and, for L = 2,
      the whole row k of W_0) -> column k of W'_{L-1} (``w_{L-1}_in``); b'_{L-1} reads global
      features only;
    - middle layers: the NP terms, plus the whole rows of W_0 next to layer 1 and the whole
      columns of W_{L-1} next to layer L-2;
    - every output adds a map of the global features: the full means of every weight and bias,
      W_0's mean over rows (per input), W_{L-1}'s mean over columns and b_{L-1} (per output).

    Not complete: it misses the maps ``b_{L-2}[k] -> W'_{L-1}[o, k]`` (one per output neuron,
    kernel position and channel pair), the one dimension lost on a 2->3->3->1 MLP (74 of 75).
    Why: the reference's last layer gathers, per column k, W_{L-1}'s column and W_{L-2}'s mean over
    columns (its ``cpt``) but not ``biases[-2]``, the bias of the neuron k belongs to, although every
    middle layer's column features (``row_bdcst``) include ``biases[i-1]``. Nothing in the code says
    whether this is deliberate (the paper's text was not checked for it). ``complete=True`` adds the
    block (``w_{L-1}_in.w.b{L-2}``) and the layer then realises every map. With a single layer (no hidden neurons, where the reference fails) every entry is
    fixed and the layer is one dense map of all entries, the complete answer for the trivial group.
    """

    def __init__(self, spec: NetworkSpec, in_channels: int, out_channels: int, complete: bool = False) -> None:
        super().__init__()
        self.spec = filled_spec(spec)
        L, K, ci, co = spec.num_layers, kernel_volumes(spec), in_channels, out_channels
        n_in, n_out = spec.in_features, spec.out_features
        self.in_channels, self.out_channels, self.complete = ci, co, complete
        if L == 1:
            dense = {"W0": K[0] * ci * n_out * n_in, "b0": ci * n_out}
            self.w_0_dense, self.b_0_dense = _Map(dense, K[0] * co * n_out * n_in), _Map(dense, co * n_out)
            _init(self.w_0_dense)
            _init(self.b_0_dense)
            return
        last = L - 1
        glob = {f"W{j}_all": K[j] * ci for j in range(L)} | {f"b{j}_all": ci for j in range(L)}
        glob |= {"W0_in": K[0] * ci * n_in, f"W{last}_out": K[last] * ci * n_out, f"b{last}": ci * n_out}
        whole_w0 = {"W0": K[0] * ci * n_in}  # rows of W_0, on set 1
        whole_wl = {f"W{last}": K[last] * ci * n_out}  # columns of W_{L-1}, on set L-1
        for i in range(L):
            if i == 0:
                rows = whole_w0 | {"W1_in": K[1] * ci, "b0": ci} | (whole_wl if L == 2 else {})
                # the reference initialises w0_rpt and w0_rbdcst each on its own
                self.w_0_out, self.w_0_global = _Map(rows, K[0] * co * n_in), _Map(glob, K[0] * co * n_in)
                self.b_0_out, self.b_0_global = _Map(rows, co), _Map(glob, co)
                _init(self.w_0_out)
                _init(self.w_0_global)
                _init(self.b_0_out, self.b_0_global)
            elif i == last:
                cols = whole_wl | {f"W{i-1}_out": K[i - 1] * ci} | (whole_w0 if L == 2 else {})
                if complete:
                    cols[f"b{i-1}"] = ci
                w_in, w_glob = _Map(cols, K[i] * co * n_out), _Map(glob, K[i] * co * n_out)
                self.add_module(f"w_{i}_in", w_in)
                self.add_module(f"w_{i}_global", w_glob)
                self.add_module(f"b_{i}_global", _Map(glob, co * n_out))
                _init(w_in, w_glob)
                _init(getattr(self, f"b_{i}_global"))
            else:
                on_in = {f"W{i}_in": K[i] * ci, f"W{i-1}_out": K[i - 1] * ci, f"b{i-1}": ci}
                on_in |= whole_w0 if i == 1 else {}
                on_out = {f"W{i}_out": K[i] * ci, f"b{i}": ci, f"W{i+1}_in": K[i + 1] * ci}
                on_out |= whole_wl if i == L - 2 else {}
                w_maps = {"self": _Map({f"W{i}": K[i] * ci}, K[i] * co), "global": _Map(glob, K[i] * co),
                          "in": _Map(on_in, K[i] * co), "out": _Map(on_out, K[i] * co)}
                b_maps = {"out": _Map(on_out, co), "global": _Map(glob, co)}
                for name, m in w_maps.items():
                    self.add_module(f"w_{i}_{name}", m)
                for name, m in b_maps.items():
                    self.add_module(f"b_{i}_{name}", m)
                _init(*w_maps.values())
                _init(*b_maps.values())

    def forward(self, w: Weights) -> Weights:
        ws, bs = fold(w)
        L, bsz = len(ws), ws[0].shape[0]
        if L == 1:
            f0, n_out, n_in = ws[0].shape[1:]
            x = {"W0": ws[0].flatten(1), "b0": bs[0].flatten(1)}
            y = self.w_0_dense(x).reshape(bsz, -1, n_out, n_in)
            return unfold(self.spec, [y], [self.b_0_dense(x).reshape(bsz, -1, n_out)])
        glob, on = _summaries(ws, bs)
        last, n_in, n_out = L - 1, ws[0].shape[3], ws[-1].shape[2]
        glob |= {"W0_in": on[0]["W0_in"].flatten(1), f"W{last}_out": on[L][f"W{last}_out"].flatten(1),
                 f"b{last}": bs[last].flatten(1)}
        # whole rows of W_0 as features on set 1, whole columns of W_{L-1} on set L-1
        on[1]["W0"] = ws[0].transpose(2, 3).flatten(1, 2)  # "b c o i -> b (c i) o"
        on[last][f"W{last}"] = ws[last].flatten(1, 2)  # "b c o i -> b (c o) i"
        out_w, out_b = [], []
        for i in range(L):
            m = lambda name: getattr(self, name)  # noqa: E731
            if i == 0:
                y = m("w_0_out")(on[1]) + m("w_0_global")(glob)[..., None]  # [B, C'K n_in, n_1]
                out_w.append(y.reshape(bsz, -1, n_in, y.shape[-1]).transpose(2, 3))
                out_b.append(m("b_0_out")(on[1]) + m("b_0_global")(glob)[..., None])
            elif i == last:
                y = m(f"w_{i}_in")(on[i]) + m(f"w_{i}_global")(glob)[..., None]  # [B, C'K n_out, n_i]
                out_w.append(y.reshape(bsz, -1, n_out, y.shape[-1]))
                out_b.append(m(f"b_{i}_global")(glob).reshape(bsz, -1, n_out))
            else:
                y = m(f"w_{i}_self")({f"W{i}": ws[i]}) + m(f"w_{i}_global")(glob)[..., None, None]
                y = y + m(f"w_{i}_in")(on[i]).unsqueeze(2) + m(f"w_{i}_out")(on[i + 1]).unsqueeze(3)
                out_w.append(y)
                out_b.append(m(f"b_{i}_out")(on[i + 1]) + m(f"b_{i}_global")(glob)[..., None])
        return unfold(self.spec, out_w, out_b)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"layers={self.spec.num_layers}, complete={self.complete}")


# ---------------------------------------------------------------------- pooling
_AGG = {"mean": lambda t, d: t.mean(d), "max": lambda t, d: t.amax(d), "sum": lambda t, d: t.sum(d)}


class NPPool(nn.Module):
    """NFN's NPPool: ``Weights`` [B, C, ...] -> ``[B, C * sum_i (K_i + 1)]``, the aggregate
    (mean by default) of every weight over both neuron axes (per kernel position) and of every
    bias. Invariant to permutations of every neuron set."""

    def __init__(self, spec: NetworkSpec, agg: str = "mean") -> None:
        super().__init__()
        if agg not in _AGG:
            raise ValueError(f"agg must be one of {sorted(_AGG)}, got {agg!r}")
        self.agg = agg

    @staticmethod
    def num_outputs(spec: NetworkSpec) -> int:
        """Features per channel."""
        return sum(k + 1 for k in kernel_volumes(spec))

    def forward(self, w: Weights) -> Tensor:
        agg, w = _AGG[self.agg], w.with_biases_filled()
        out = []
        for t, b in zip(w.weights, w.biases):
            full = agg(t, (2, 3))  # [B, C, *k]
            out += [full.flatten(2) if t.dim() > 4 else full.unsqueeze(-1), agg(b, 2).unsqueeze(-1)]
        return torch.cat(out, dim=-1).flatten(1)  # [B, C, N] -> [B, C * N], as the reference head


class HNPPool(nn.Module):
    """NFN's HNPPool: ``Weights`` [B, C, ...] -> ``[B, C * N]``. Aggregates over hidden axes only:
    W_0 over its rows (one feature per input neuron and kernel position), W_{L-1} over its
    columns (one per output neuron), middle weights and all but the last bias fully; the last
    bias is kept whole. With one layer (no hidden axis; the reference needs two) W_0 and b_0 are
    kept whole. Invariant to hidden-neuron permutations."""

    def __init__(self, spec: NetworkSpec, agg: str = "mean") -> None:
        super().__init__()
        if agg not in _AGG:
            raise ValueError(f"agg must be one of {sorted(_AGG)}, got {agg!r}")
        self.agg = agg

    @staticmethod
    def num_outputs(spec: NetworkSpec) -> int:
        """Features per channel."""
        K, L = kernel_volumes(spec), spec.num_layers
        if L == 1:
            return spec.in_features * spec.out_features * K[0] + spec.out_features
        mid = sum(k + 1 for k in K[1:-1])
        return spec.in_features * K[0] + 1 + mid + spec.out_features * K[-1] + spec.out_features

    def forward(self, w: Weights) -> Tensor:
        agg, w = _AGG[self.agg], w.with_biases_filled()
        L, out = w.spec.num_layers, []
        for i, (t, b) in enumerate(zip(w.weights, w.biases)):
            if L == 1:
                out.append(t.flatten(2))
            elif i == 0:
                out.append(agg(t, 2).flatten(2))  # over rows: [B, C, n_in * K]
            elif i == L - 1:
                out.append(agg(t, 3).flatten(2))  # over columns: [B, C, n_out * K]
            else:
                out.append(agg(t, (2, 3)).flatten(2) if t.dim() > 4 else agg(t, (2, 3)).unsqueeze(-1))
            out.append(b if i == L - 1 else agg(b, 2).unsqueeze(-1))
        return torch.cat(out, dim=-1).flatten(1)
