"""Neural functionals (Zhou et al., "Permutation Equivariant Neural Functionals", NeurIPS 2023;
reference code AllanYangZhou/nfn): the invariant classifiers ``nfn_np`` and ``nfn_hnp``.

The model is the reference's ``InvariantNFN`` (``experiments/models.py``) with its ``MlpHead``:

    Weights -> [Gaussian Fourier features] -> [IO sinusoidal encoding] -> (NF layer -> ReLU) x n
            -> NPPool / HNPPool -> Linear -> (ReLU -> Dropout -> Linear) per head width

The NF layers, pools and folding of conv kernels are in `weightspace.models.nfn_layers`.
Missing biases enter as zeros. ``nfn_np`` defaults to NP pooling and no IO encoding, so the whole
model is invariant to permutations of input and output neurons as well; the reference's NP
classifier (``nfnet=inv_ff_io``) adds the IO encoding and, since its ``MlpHead`` is never told
otherwise, pools with HNPPool: preset ``nfn-np-mnist-inr`` does the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.nfn_layers import HNPLinear, HNPPool, NPLinear, NPPool
from weightspace.models.registry import Preset, register_model, register_preset


class GaussianFourierFeatures(nn.Module):
    """NFN's ``GaussianFourierFeatureTransform``: every entry's C channels ``x`` ->
    ``[sin(2 pi x B), cos(2 pi x B)]`` with a fixed ``B [C, features] ~ N(0, scale^2)`` (a buffer,
    drawn from its own generator seeded by ``seed``, so building a model does not move the global
    RNG). ``Weights`` [B, C, ...] -> ``Weights`` [B, 2 * features, ...]; missing biases stay
    missing. Acts on each entry alone, so it commutes with every permutation of entries."""

    def __init__(self, in_channels: int = 1, features: int = 128, scale: float = 10.0, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(in_channels, features, generator=gen, device="cpu") * scale)
        self.out_channels, self.scale = 2 * features, scale

    def encode(self, t: Tensor) -> Tensor:
        x = 2 * math.pi * (t.movedim(1, -1) @ self.B).movedim(-1, 1)
        # cat keeps the channels-last strides of x, and every later op would inherit them; the
        # layers run faster on the default layout (as the reference's features end up)
        return torch.cat([torch.sin(x), torch.cos(x)], dim=1).contiguous()

    def forward(self, w: Weights) -> Weights:
        return w.map(self.encode)

    def extra_repr(self) -> str:
        return f"in_channels={self.B.shape[0]}, features={self.B.shape[1]}, scale={self.scale}"


def _sinusoids(x: Tensor, max_freq: float, num_bands: int) -> Tensor:
    """The reference's ``fourier_encode``: ``[n]`` -> ``[n, 2 * num_bands + 1]``."""
    scales = torch.linspace(1.0, max_freq / 2, num_bands, dtype=x.dtype, device=x.device)
    xs = x[:, None] * scales * math.pi
    return torch.cat([xs.sin(), xs.cos(), x[:, None]], dim=-1)


class IOSinusoidalEncoding(nn.Module):
    """NFN's ``IOSinusoidalEncoding``: appends ``d = 2 * num_bands + 1`` channels holding a
    sinusoidal code of each input neuron's index (added on W_0's columns) and of each output
    neuron's index (on W_{L-1}'s rows and b_{L-1}); with ``enc_layers`` also a code of the layer
    index on every tensor (zeros otherwise). This breaks NP's input/output symmetry on purpose and
    keeps the hidden one. ``Weights`` [B, C, ...] (biases present) -> [B, C + d, ...].
    (The reference adds the input code where its conv branch should add the output code; it never
    matters there, as a conv layer is never the last; here both branches broadcast the right code.)"""

    def __init__(
        self, spec: NetworkSpec, max_freq: float = 10.0, num_bands: int = 6, enc_layers: bool = False
    ) -> None:
        super().__init__()
        self.spec, self.max_freq, self.num_bands, self.enc_layers = spec, max_freq, num_bands, enc_layers
        self.extra_channels = 2 * num_bands + 1

    def forward(self, w: Weights) -> Weights:
        L, d = self.spec.num_layers, self.extra_channels
        kw = dict(dtype=w.dtype, device=w.device)

        def code(n: int) -> Tensor:  # [d, n]: one code per neuron index, spread over [-1, 1]
            return _sinusoids(torch.linspace(-1.0, 1.0, n, **kw), self.max_freq, self.num_bands).T

        layer = code(L) if self.enc_layers else torch.zeros(d, L, **kw)
        inp, out = code(self.spec.in_features), code(self.spec.out_features)  # [d, n_in], [d, n_out]
        ws, bs = [], []
        for i, (t, b) in enumerate(zip(w.weights, w.biases)):
            k = (1,) * (t.dim() - 4)  # kernel axes: the code is the same at every position
            enc = layer[:, i].reshape(1, d, 1, 1, *k).expand(t.shape[0], d, *t.shape[2:])
            benc = layer[:, i].reshape(1, d, 1).expand(t.shape[0], d, t.shape[2])
            if i == 0:
                enc = enc + inp.reshape(1, d, 1, -1, *k)
            if i == L - 1:
                enc = enc + out.reshape(1, d, -1, 1, *k)
                benc = benc + out.reshape(1, d, -1)
            ws.append(torch.cat([t, enc], dim=1))
            bs.append(torch.cat([b, benc], dim=1))
        return Weights(w.spec, tuple(ws), tuple(bs))


def _head(in_features: int, hidden: Sequence[int], out_features: int, dropout: float) -> nn.Sequential:
    """The reference's ``MlpHead``: Linear, then (ReLU, Dropout, Linear) per hidden width."""
    dims = [in_features, *hidden, out_features]
    mods: list[nn.Module] = [nn.Linear(dims[0], dims[1])]
    for a, b in zip(dims[1:-1], dims[2:]):
        mods += [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else []) + [nn.Linear(a, b)]
    return nn.Sequential(*mods)


class NFNClassifier(nn.Module):
    """NFN's invariant network: ``Weights`` [B, C_in, ...] -> logits ``[B, out_features]``.

    Options (reference names in brackets): ``hidden_channels`` x ``num_layers`` NF layers
    [``hchannels``]; ``fourier``, ``fourier_features``, ``fourier_scale`` [``inp_enc_cls``:
    ``GaussianFourierFeatureTransform(mapping_size, scale)``]; ``io_encoding``, ``io_max_freq``,
    ``io_num_bands`` [``pos_enc_cls``: ``IOSinusoidalEncoding``]; ``pool`` "np" | "hnp" (None:
    the layer type's own) and ``pool_agg`` "mean" | "max" | "sum"; ``head_hidden`` (widths; an
    int h means (h, h), the reference's ``h_size``) and ``dropout`` [``MlpHead``]."""

    layer_cls: type[nn.Module] = NPLinear
    default_pool = "np"

    def __init__(
        self,
        spec: NetworkSpec,
        out_features: int,
        hidden_channels: int = 16,
        num_layers: int = 2,
        fourier: bool = True,
        fourier_features: int = 16,
        fourier_scale: float = 10.0,
        io_encoding: bool = False,
        io_max_freq: float = 10.0,
        io_num_bands: int = 6,
        pool: str | None = None,
        pool_agg: str = "mean",
        head_hidden: int | Sequence[int] = (64, 64),
        dropout: float = 0.5,
        in_channels: int = 1,
        fourier_seed: int = 0,
    ) -> None:
        super().__init__()
        pool = pool or self.default_pool
        if pool not in ("np", "hnp"):
            raise ValueError(f"pool must be 'np' or 'hnp', got {pool!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.spec = spec
        chans = in_channels
        self.fourier = None
        if fourier:
            self.fourier = GaussianFourierFeatures(chans, fourier_features, fourier_scale, fourier_seed)
            chans = self.fourier.out_channels
        self.io_encoding = IOSinusoidalEncoding(spec, io_max_freq, io_num_bands) if io_encoding else None
        chans += self.io_encoding.extra_channels if io_encoding else 0
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(self.layer_cls(spec, chans, hidden_channels))
            chans = hidden_channels
        pool_cls = NPPool if pool == "np" else HNPPool
        self.pool = pool_cls(spec, pool_agg)
        hidden = (head_hidden, head_hidden) if isinstance(head_hidden, int) else tuple(head_hidden)
        self.head = _head(chans * pool_cls.num_outputs(spec), hidden, out_features, dropout)

    def features(self, weights: Weights) -> Weights:
        """The equivariant trunk: `Weights` with ``hidden_channels`` channels, every bias present."""
        h = weights.with_biases_filled()
        if self.fourier is not None:
            h = self.fourier(h)
        if self.io_encoding is not None:
            h = self.io_encoding(h)
        for layer in self.layers:
            h = layer(h).map(torch.relu)
        return h

    def forward(self, weights: Weights) -> Tensor:
        return self.head(self.pool(self.features(weights)))


@register_model("nfn_np", output="invariant", supports_conv=True,
                summary="NFN (Zhou et al. 2023) with NP layers: every neuron permutable, NP pooling")
class NFNNP(NFNClassifier):
    layer_cls, default_pool = NPLinear, "np"


@register_model("nfn_hnp", output="invariant", supports_conv=True,
                summary="NFN (Zhou et al. 2023) with HNP layers: input/output neurons fixed, HNP pooling")
class NFNHNP(NFNClassifier):
    layer_cls, default_pool = HNPLinear, "hnp"


# ---------------------------------------------------------------------- published configurations
_SOURCE = ("Zhou et al., Permutation Equivariant Neural Functionals, NeurIPS 2023; AllanYangZhou/nfn "
           "experiments/classify_siren_configs (main.yaml, setup/mnist.yaml, opt/adam.yaml, "
           "nfnet/{inv_ff,inv_ff_io}.yaml, head_cls/mlp.yaml, inp_enc_cls/gaussian.yaml, pos_enc_cls/sin.yaml), "
           "experiments/models.py, experiments/classify_siren.py")
_COMMON = dict(hidden_channels=512, num_layers=3, fourier=True, fourier_features=128, fourier_scale=10.0,
               pool="hnp", pool_agg="mean", head_hidden=(1000, 1000), dropout=0.5)
# Adam 1e-4, linear warm-up over 10k steps, then constant; 200k steps at batch 32, no clipping or
# decay. 200k * 32 = 6.4M examples = 142.2 passes over 45k training INRs.
_TRAIN = dict(optimizer="adam", lr=1e-4, weight_decay=0.0, amsgrad=False, warmup_steps=10_000, batch_size=32,
              epochs=142, schedule="constant", grad_clip=None)
_DATA_NOTE = (
    "Epochs: the reference counts 200k steps of batch 32, here 142 epochs of 45k training INRs. Its MNIST "
    "setup (setup/mnist.yaml, extra_aug=10) trains on the 45k INRs plus 10 further fits of every training "
    "image (495k; `weightspace zoo import nfn` keeps those copies), where 200k steps are 12.9 epochs: with "
    "such a zoo set epochs=13. The reference picks the checkpoint by validation accuracy every 3k steps. "
    "Its LR warm-up starts at 0 (step/10k) where TrainConfig's starts at 1/10k. "
)
register_preset(Preset(
    name="nfn-hnp-mnist-inr",
    model="nfn_hnp",
    config=dict(_COMMON, io_encoding=False),
    train=dict(_TRAIN),
    source=_SOURCE + " (nfnet=inv_ff, the default for +setup=mnist)",
    published={"mnist-inr": 79.1},
    deviations=_DATA_NOTE + (
        "Layers, pooling, encodings and head match the reference module by module (same parameter count, "
        "68,844,330 on the 2-32-32-1 SIREN with 10 classes, the published ~69M; same outputs for copied "
        "weights). "
        "The Fourier matrix B is drawn from its own generator (seed 0), not the global RNG. "
        "79.1 is the project's anchor figure for NFN-HNP on MNIST INRs; it was not re-read from the paper here."
    ),
))
register_preset(Preset(
    name="nfn-np-mnist-inr",
    model="nfn_np",
    config=dict(_COMMON, io_encoding=True, io_max_freq=10.0, io_num_bands=6),
    train=dict(_TRAIN),
    source=_SOURCE + " (nfnet=inv_ff_io: NP layers with the IO sinusoidal encoding)",
    published={},
    deviations=_DATA_NOTE + (
        "The NP configuration is the reference's inv_ff_io (NP layers, IO sinusoidal encoding max_freq 10, "
        "6 bands, no layer code); its MlpHead pools with HNPPool (pool_mode is never passed), kept here. "
        "Module by module as the reference (45,668,650 parameters on the 2-32-32-1 SIREN with 10 classes); "
        "the Fourier matrix B is drawn from its own generator (seed 0). "
        "No NP MNIST-INR figure was verified for this preset, so `published` is empty."
    ),
))
