"""The hyper-representation autoencoder (after Schürholt et al. 2021/2022 and SANE):
neuron tokens -> transformer encoder -> compact embedding -> transformer decoder -> tokens.

Pipeline of `HyperRepresentation.encode`::

    Weights -> per-tensor standardisation -> canonical neuron order -> tokens [B, T, width]
            -> linear + layer / neuron-index embeddings -> transformer encoder
            -> K learned queries attend to the tokens (pooling) -> z [B, K * latent_dim]

`decode` runs K latent vectors through a transformer decoder whose T queries are the
layer / neuron-index embeddings alone, maps each to a token and undoes tokenisation and
standardisation: an embedding becomes a runnable network of the model's spec.

Symmetry. A transformer over neuron tokens with neuron-index embeddings is *not*
invariant to permutations of hidden neurons: permuting layer i moves its tokens *and*
reorders the entries inside every token of layer i + 1. With ``canonical=True`` (the
default) the encoder first puts each network into the canonical neuron order of
`weightspace.core.align.canonicalize` (neurons sorted by bias, then first incoming
weight, then row sum, then outgoing weights, layer by layer), so ``encode(g . w) ==
encode(w)`` exactly for every hidden-neuron permutation g, up to ties in all the sort keys
(trained zoos do have neurons with identical incoming weights - dead units decayed to one
point - which the outgoing-weight key separates). The decoder then produces networks in canonical order. With ``canonical=False``
the model is the published non-invariant one and learns the symmetry from permutation
augmentation only; `weightspace.tasks.hyperrep.invariance_gap` measures how far it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from weightspace.core.align import canonicalize
from weightspace.core.spec import NetworkSpec
from weightspace.core.tokens import TokenLayout, detokenize, token_width, tokenize
from weightspace.core.transforms import Standardize
from weightspace.core.weights import Weights


@dataclass(frozen=True)
class HyperRepConfig:
    d_model: int = 64
    num_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    latent_tokens: int | None = 4  # K pooled latent vectors; None: one latent per neuron token (SANE)
    latent_dim: int = 16
    projection_dim: int = 32  # contrastive head
    dropout: float = 0.0
    canonical: bool = True
    width: int | None = None  # token width; None: the spec's widest token
    max_layers: int | None = None  # layer-embedding table size; None: the spec's depth
    max_neurons: int | None = None  # neuron-index table size; None: the spec's widest layer

    def embedding_dim(self, num_tokens: int) -> int:
        """Values per embedding for a spec of ``num_tokens`` neuron tokens."""
        return (self.latent_tokens or num_tokens) * self.latent_dim


def _shape_key(spec: NetworkSpec) -> tuple:
    return spec.pool, tuple((la.kind, la.in_features, la.out_features, la.kernel_size, la.bias) for la in spec.layers)


def _block(d: int, heads: int, dropout: float, decoder: bool) -> nn.Module:
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    return cls(d, heads, 2 * d, dropout, batch_first=True, norm_first=True)


class HyperRepresentation(nn.Module):
    """Encoder ``Weights -> [B, E]`` and decoder ``[B, E] -> Weights`` for networks of ``spec``.

    Call `fit_normalisation` on training weights before training (the per-tensor means
    and stds live in buffers, so they are saved with the model).
    """

    def __init__(self, spec: NetworkSpec, config: HyperRepConfig = HyperRepConfig()) -> None:
        super().__init__()
        self.spec, self.config = spec, config
        c = config
        self.width = c.width or token_width(spec)
        self.layout = TokenLayout(spec, self.width)
        max_layers = c.max_layers or spec.num_layers
        max_neurons = c.max_neurons or max(layer.out_features for layer in spec.layers)
        if max_layers < spec.num_layers or max_neurons < max(layer.out_features for layer in spec.layers):
            raise ValueError(f"max_layers / max_neurons ({max_layers}, {max_neurons}) too small for {spec.describe()}")
        self.register_buffer("layer_ids", self.layout.layer_ids, persistent=False)
        self.register_buffer("neuron_ids", self.layout.neuron_ids, persistent=False)
        self.register_buffer("mask", self.layout.mask, persistent=False)
        n_tensors = len(Weights.unflatten(spec, torch.zeros(1, spec.num_params)).tensors())
        self.register_buffer("norm_mean", torch.zeros(n_tensors))
        self.register_buffer("norm_std", torch.ones(n_tensors))

        d = c.d_model
        self.embed = nn.Linear(self.width, d)
        self.layer_emb = nn.Embedding(max_layers, d)
        self.neuron_emb = nn.Embedding(max_neurons, d)
        self.encoder = nn.TransformerEncoder(_block(d, c.num_heads, c.dropout, False), c.encoder_layers, enable_nested_tensor=False)
        self.latents = c.latent_tokens or self.layout.num_tokens
        self.embedding_dim = c.embedding_dim(self.layout.num_tokens)
        if c.latent_tokens:  # K learned queries pool the tokens; decoder queries attend to the K latents
            self.queries = nn.Parameter(torch.randn(c.latent_tokens, d) * 0.02)
            self.pool = nn.MultiheadAttention(d, c.num_heads, batch_first=True)
            self.pool_norm = nn.LayerNorm(d)
            self.latent_pos = nn.Parameter(torch.randn(c.latent_tokens, d) * 0.02)
            self.decoder = nn.TransformerDecoder(_block(d, c.num_heads, c.dropout, True), c.decoder_layers)
        else:  # one latent per token: the decoder is a transformer over the latent tokens
            self.decoder = nn.TransformerEncoder(_block(d, c.num_heads, c.dropout, False), c.decoder_layers, enable_nested_tensor=False)
        self.to_latent = nn.Linear(d, c.latent_dim)
        self.from_latent = nn.Linear(c.latent_dim, d)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, self.width))
        e = self.embedding_dim
        self.project = nn.Sequential(nn.Linear(e, min(e, 256)), nn.ReLU(), nn.Linear(min(e, 256), c.projection_dim))

    # ------------------------------------------------------------------ normalisation
    def fit_normalisation(self, weights: Weights) -> None:
        """Per-tensor scalar mean / std from training weights (scalars keep every symmetry)."""
        s = Standardize.fit(weights)
        self.norm_mean.copy_(torch.tensor(s.mean))
        self.norm_std.copy_(torch.tensor(s.std))

    def _standardize(self) -> Standardize:
        return Standardize(tuple(self.norm_mean.tolist()), tuple(self.norm_std.tolist()))

    def prepare(self, weights: Weights) -> Weights:
        """Raw weights -> standardised, canonically ordered weights (the encoder's view)."""
        weights = self.adopt(weights)
        w = self._standardize()(weights.to(self.norm_mean.device))
        return canonicalize(w, signs=False, scales=False) if self.config.canonical else w

    def adopt(self, weights: Weights) -> Weights:
        """``weights`` relabelled with this model's spec. Specs may differ in activations only
        (a zoo whose runs vary the activation stores one spec); other differences raise."""
        if weights.spec == self.spec:
            return weights
        if _shape_key(weights.spec) != _shape_key(self.spec):
            raise ValueError(f"weights of {weights.spec.describe()} given to a model of {self.spec.describe()}")
        return Weights(self.spec, weights.weights, weights.biases)

    def tokens(self, prepared: Weights) -> Tensor:
        """Prepared weights -> tokens ``[B, T, width]``."""
        return tokenize(prepared, self.width)

    # ------------------------------------------------------------------ encoder / decoder
    def _positions(self) -> Tensor:
        return self.layer_emb(self.layer_ids) + self.neuron_emb(self.neuron_ids)  # [T, d]

    def encode_tokens(self, tokens: Tensor) -> Tensor:
        """Tokens ``[B, T, width]`` -> embedding ``[B, E]`` (E = K or T latents x latent_dim)."""
        h = self.encoder(self.embed(tokens) + self._positions())
        if self.config.latent_tokens:
            q = self.queries.unsqueeze(0).expand(len(h), -1, -1)
            pooled, _ = self.pool(q, h, h, need_weights=False)
            h = self.pool_norm(pooled + q)
        return self.to_latent(h).flatten(1)

    def decode_tokens(self, z: Tensor) -> Tensor:
        """Embedding ``[B, E]`` -> tokens ``[B, T, width]`` (standardised, canonical order)."""
        latents = self.from_latent(z.view(len(z), self.latents, self.config.latent_dim))
        positions = self._positions().unsqueeze(0).expand(len(z), -1, -1)
        if self.config.latent_tokens:
            return self.out(self.decoder(positions, latents + self.latent_pos))
        return self.out(self.decoder(latents + positions))

    def encode(self, weights: Weights) -> Tensor:
        """Raw weights -> embedding ``[B, E]``."""
        return self.encode_tokens(self.tokens(self.prepare(weights)))

    @property
    def pooled_dim(self) -> int:
        """Values per `encode_pooled` readout: (mean, std) x latent_dim per layer."""
        return 2 * self.config.latent_dim * self.spec.num_layers

    def pool_layers(self, z: Tensor) -> Tensor:
        """Per-token embeddings ``[B, T * latent_dim]`` -> ``[B, L * 2 * latent_dim]``: for each
        layer, the mean and the (biased) standard deviation of its neuron tokens' latents.

        Why: the flat embedding keeps one latent per neuron position, so a probe on it has to
        learn the same function at every position (and relies on the canonical order to line
        positions up across networks). Pooling over a layer's neurons is invariant to their
        order by construction, whatever the encoder, and gives the probe statistics of
        *learned* neuron features, as StatNN gives statistics of the raw weights (SANE
        likewise averages its token embeddings for downstream tasks).
        """
        if self.config.latent_tokens:
            raise ValueError("layer pooling needs one latent per neuron token (latent_tokens=None); "
                             f"this model pools into {self.config.latent_tokens} latent vectors")
        z = z.view(len(z), self.layout.num_tokens, self.config.latent_dim)
        parts = []
        for layer in range(self.spec.num_layers):
            zl = z[:, self.layer_ids == layer]
            parts += [zl.mean(1), zl.std(1, unbiased=False)]
        return torch.cat(parts, 1)

    def encode_pooled(self, weights: Weights) -> Tensor:
        """Raw weights -> layer-pooled embedding ``[B, pooled_dim]`` (see `pool_layers`)."""
        return self.pool_layers(self.encode(weights))

    def decode(self, z: Tensor) -> Weights:
        """Embedding ``[B, E]`` -> raw weights of ``spec`` (undoes the standardisation)."""
        return self.unprepare(detokenize(self.decode_tokens(z), self.spec))

    def unprepare(self, prepared: Weights) -> Weights:
        """Standardised weights -> raw weights (the inverse of the standardisation step)."""
        stats = iter(zip(self.norm_mean, self.norm_std))
        ws, bs = [], []
        for w, b in zip(prepared.weights, prepared.biases):  # tensors() order: weight, then bias
            m, s = next(stats)
            ws.append(w * s + m)
            if b is not None:
                m, s = next(stats)
                b = b * s + m
            bs.append(b)
        return Weights(prepared.spec, tuple(ws), tuple(bs))

    def forward(self, weights: Weights) -> Tensor:
        return self.encode(weights)

    def describe(self) -> dict:
        return {"spec": self.spec.to_dict(), "config": asdict(self.config)}
