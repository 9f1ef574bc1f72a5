"""SANE: a sequential autoencoder over windows of weight tokens (Schürholt et al. 2024).

Pipeline (`Sane.forward`), for a window of ``W`` consecutive tokens of a network
(`core.sane_tokens`)::

    tokens [B, W, s] -> Linear(s, d) + positions -> transformer encoder -> Linear(d, latent)  = z [B, W, latent]
    z -> Linear(latent, d) + positions -> transformer encoder -> Linear(d, s)                  = tokens' [B, W, s]
    z -> flatten -> (Linear, LayerNorm, ReLU) x 2                                             = projection [B, p]

Positions: learned embeddings of the three token positions ``(n, l, k)`` (sequence index,
layer, neuron): ``concat(E_n[n] + E_l[l], E_k[k])``, each half of ``d`` wide, added to the
token features in the encoder and again in the decoder (the reference's ``PositionEmbs``).
The decoder is built of encoder layers (no cross-attention): it sees only the latents and
their positions. A network's embedding is the mean of its token latents over the whole
sequence, encoded window by window (`Sane.embed`), so networks of any length get one
vector of ``latent_dim`` values — the property that lets one model embed MLPs, CNNs and
ResNets.

What differs from the reference code: its transformer blocks are GPT-2's (no biases) or
PyTorch's post-norm ReLU layers; these are PyTorch's pre-norm GELU layers with a 4x feed-forward.
Not here: aligning a zoo to one neuron order by git re-basin before training (the reference's
``map_to_canonical``; without it SANE's token-wise KDE mixes incompatible neurons, so
`tasks.sane.kde_model_sample` is the sampler that works on these zoos) and haloed windows for
decoding (windows here are decoded independently).

Configurations: `SaneConfig()` is the CPU-sized default this library benchmarks;
`SANE_REFERENCE` is the reference repository's configuration for its ResNet-18 and CNN
zoos (tokens of 288, ``d`` 2048, 16 heads, 8 layers, latent 128, windows of 256, position
tables 55,000 / 100 / 550) — a GPU model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class SaneConfig:
    """tokensize: values per token; d_model / heads / layers: each transformer (encoder and
    decoder alike); latent_dim: per-token latent; window: tokens per training window (and the
    projection head's input); projection_dim: contrastive head output; max_positions: table
    sizes for (sequence index, layer, neuron)."""

    tokensize: int = 64
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    latent_dim: int = 32
    window: int = 32
    projection_dim: int = 30
    dropout: float = 0.0
    max_positions: tuple[int, int, int] = (1024, 32, 256)

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_positions", tuple(int(p) for p in self.max_positions))
        if len(self.max_positions) != 3 or min(self.max_positions) < 1:
            raise ValueError(f"max_positions must be three positive table sizes, got {self.max_positions}")
        if self.d_model % 2 or self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be even and divisible by heads ({self.heads})")
        if min(self.tokensize, self.latent_dim, self.window, self.layers, self.projection_dim) < 1:
            raise ValueError("tokensize, latent_dim, window, layers and projection_dim must be positive")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["max_positions"] = list(self.max_positions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SaneConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown SaneConfig fields {sorted(unknown)}")
        return cls(**{**d, "max_positions": tuple(d.get("max_positions", cls.max_positions))})


# experiments/*/pretrain_sane_*.py of github.com/HSG-AIML/SANE (ResNet-18 and CNN zoos)
SANE_REFERENCE = SaneConfig(tokensize=288, d_model=2048, heads=16, layers=8, latent_dim=128, window=256,
                            projection_dim=30, max_positions=(55000, 100, 550))


class PositionEmbedding(nn.Module):
    """``x [B, W, d] + concat(E_n[n] + E_l[l], E_k[k])`` for positions ``[B, W, 3]``."""

    def __init__(self, max_positions: tuple[int, int, int], d_model: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        half = d_model // 2
        self.n, self.l, self.k = (nn.Embedding(m, half) for m in max_positions)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        for j, m in enumerate(self.max_positions):
            top = int(pos[..., j].max()) if pos.numel() else 0
            if top >= m:
                name = ("sequence index", "layer", "neuron")[j]
                raise ValueError(f"token {name} {top} is beyond this model's table of {m}: the network is larger "
                                 "than SaneConfig.max_positions allows")
        return x + torch.cat([self.n(pos[..., 0]) + self.l(pos[..., 1]), self.k(pos[..., 2])], dim=-1)


def _transformer(c: SaneConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(c.d_model, c.heads, 4 * c.d_model, c.dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)


class Sane(nn.Module):
    """The SANE autoencoder (see module doc). Inputs: tokens ``[B, W, s]`` and positions
    ``[B, W, 3]`` (int64); any ``W`` for `encode` / `decode`, exactly ``config.window`` for
    `project` (its head flattens the window)."""

    def __init__(self, config: SaneConfig = SaneConfig()) -> None:
        super().__init__()
        self.config = c = config
        self.tokenizer = nn.Linear(c.tokensize, c.d_model)
        self.positions = PositionEmbedding(c.max_positions, c.d_model)
        self.encoder = _transformer(c)
        self.to_latent = nn.Linear(c.d_model, c.latent_dim)
        self.from_latent = nn.Linear(c.latent_dim, c.d_model)
        self.decoder = _transformer(c)
        self.detokenizer = nn.Linear(c.d_model, c.tokensize)
        self.head = nn.Sequential(
            nn.Linear(c.latent_dim * c.window, c.projection_dim, bias=False), nn.LayerNorm(c.projection_dim), nn.ReLU(),
            nn.Linear(c.projection_dim, c.projection_dim, bias=False), nn.LayerNorm(c.projection_dim), nn.ReLU())
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # the reference's (GPT-2's) initialisation
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _check(self, tokens: Tensor, pos: Tensor, width: int) -> None:
        if tokens.dim() != 3 or tokens.shape[-1] != width:
            raise ValueError(f"expected [B, W, {width}], got {tuple(tokens.shape)}")
        if pos.shape != (*tokens.shape[:2], 3):
            raise ValueError(f"positions must be [B, W, 3] = {[*tokens.shape[:2], 3]}, got {list(pos.shape)}")

    def encode(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """Tokens ``[B, W, s]`` -> latents ``[B, W, latent_dim]``."""
        self._check(tokens, pos, self.config.tokensize)
        return self.to_latent(self.encoder(self.positions(self.tokenizer(tokens), pos)))

    def decode(self, z: Tensor, pos: Tensor) -> Tensor:
        """Latents ``[B, W, latent_dim]`` -> tokens ``[B, W, s]``."""
        self._check(z, pos, self.config.latent_dim)
        return self.detokenizer(self.decoder(self.positions(self.from_latent(z), pos)))

    def project(self, z: Tensor) -> Tensor:
        """Latents of a whole window ``[B, window, latent_dim]`` -> ``[B, projection_dim]``."""
        if z.shape[1] != self.config.window:
            raise ValueError(f"the projection head takes windows of {self.config.window} tokens, got {z.shape[1]}")
        return self.head(z.flatten(1))

    def forward(self, tokens: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encode(tokens, pos)
        return z, self.decode(z, pos)

    def _windows(self, length: int) -> list[int]:
        """Window starts that cover ``length`` tokens: every ``window``-th, the last flush with the end."""
        w = self.config.window
        if length <= w:
            return [0]
        return sorted(set(range(0, length - w + 1, w)) | {length - w})

    def encode_sequence(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """Latents ``[B, T, latent_dim]`` of whole sequences ``[B, T, s]``, encoded window by
        window (a token covered by two windows gets the mean of both)."""
        return self._by_windows(self.encode, tokens, pos, self.config.latent_dim)

    def decode_sequence(self, z: Tensor, pos: Tensor) -> Tensor:
        """Tokens ``[B, T, s]`` of whole latent sequences ``[B, T, latent_dim]``, window by window."""
        return self._by_windows(self.decode, z, pos, self.config.tokensize)

    def _by_windows(self, fn, x: Tensor, pos: Tensor, out_dim: int) -> Tensor:
        b, t = x.shape[:2]
        out = x.new_zeros(b, t, out_dim)
        count = x.new_zeros(1, t, 1)
        w = self.config.window
        for s in self._windows(t):
            out[:, s : s + w] += fn(x[:, s : s + w], pos[:, s : s + w])
            count[:, s : s + w] += 1
        return out / count

    def embed(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """One embedding ``[B, latent_dim]`` per network: the mean of its token latents."""
        return self.encode_sequence(tokens, pos).mean(dim=1)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["SANE_REFERENCE", "PositionEmbedding", "Sane", "SaneConfig", "num_parameters"]
