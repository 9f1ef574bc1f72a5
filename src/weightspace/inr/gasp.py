"""GASP (Dupont, Teh & Doucet 2022, *Generative Models as Distributions of Functions*): a
generator of function weights and a point-cloud discriminator.

Generator: a latent ``z ~ N(0, I)`` ``[d]`` goes through a hypernetwork (an MLP) whose output
is every weight and bias of a *function representation* — random Fourier features of the
coordinates, ``[cos(2 pi B x), sin(2 pi B x)]`` with a fixed ``B ~ N(0, sigma^2)`` ``[F, d_in]``,
then an MLP with LeakyReLU(0.1) hidden layers and a tanh output (features in [-1, 1]). A
sample is a function, so it renders at any resolution.

Discriminator: PointConv layers on the set of (coordinate, feature) pairs. Each layer picks
``num_output_points`` centres by farthest-point sampling (deterministic), groups each
centre's ``num_neighbors`` nearest points, and convolves with a kernel
that an MLP (the weight net, 1x1 convolutions with batch norm) computes from the centred
coordinates — the efficient PointConv form: features ``[k, C_in]`` times weight-net outputs
``[k, C_mid]``, flattened and mapped by a linear layer to ``C_out``. Average-pool layers
group the same way and average. Batch norm and LeakyReLU(0.2) follow every PointConv but
the last; a sigmoid gives the probability of "real" (training computes its cross-entropy from
the logit, `PointConvDiscriminator.logits`, which is the same loss). The discriminator never sees an order:
sampling starts at the lexicographically first point and every tie (frequent on grids) is
broken in that order, so it is invariant to permutations of the points (a test checks it;
the reference starts at whichever point comes first).

Everything follows the reference implementation (github.com/EmilienDupont/
neural-function-distributions: models/, main.py), with two changes that do not alter the
model: the generated networks run batched (one bmm per layer, not a Python loop per
sample), and the neighbourhoods of a coordinate set shared by the whole batch are computed
once and cached (the reference's ``same_coordinates`` trick recomputes them every call).

Shapes: coords ``[P, d_in]`` (shared) or ``[B, P, d_in]``, features ``[B, P, c]``,
latents ``[B, d]``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FORMAT = "weightspace.gasp"


@dataclass(frozen=True)
class PointConvLayer:
    """One discriminator layer: a PointConv (``out_channels`` set) or an average pool."""

    num_output_points: int
    num_neighbors: int
    out_channels: int | None = None
    mid_channels: tuple[int, ...] = (16, 16, 16, 16)


@dataclass(frozen=True)
class GaspConfig:
    """Generator and discriminator of one GASP model (JSON-able; stored with the generator).

    hidden: widths of the function representation's hidden layers; latent_dim: ``d`` of
    ``z``; hyper_hidden: the hypernetwork's hidden widths; frequencies / frequency_std:
    Fourier features (0 frequencies: the raw coordinates); disc: the discriminator's layers
    (its first layer's ``num_output_points`` must equal the points it is shown)."""

    in_features: int
    out_features: int
    hidden: tuple[int, ...] = (128, 128, 128)
    latent_dim: int = 64
    hyper_hidden: tuple[int, ...] = (256, 512)
    frequencies: int = 128
    frequency_std: float = 2.0
    disc: tuple[PointConvLayer, ...] = ()
    seed: int = 0
    format: int = field(default=1, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GaspConfig:
        d = dict(d)
        d["hidden"], d["hyper_hidden"] = tuple(d["hidden"]), tuple(d["hyper_hidden"])
        d["disc"] = tuple(PointConvLayer(**{**layer, "mid_channels": tuple(layer["mid_channels"])}) for layer in d["disc"])
        return cls(**d)


# --------------------------------------------------------------------------- generator
class FourierFeatures(nn.Module):
    """``[..., d_in]`` -> ``[..., 2F]``: ``cat(cos(2 pi x B^T), sin(2 pi x B^T))``, ``B`` fixed."""

    def __init__(self, frequency_matrix: Tensor) -> None:
        super().__init__()
        self.register_buffer("frequency_matrix", frequency_matrix)

    def forward(self, x: Tensor) -> Tensor:
        pre = 2 * math.pi * (x @ self.frequency_matrix.T)
        return torch.cat([torch.cos(pre), torch.sin(pre)], dim=-1)


class GaspGenerator(nn.Module):
    """Latents ``[B, d]`` -> the weights of ``B`` function representations, and their values."""

    def __init__(self, config: GaspConfig) -> None:
        super().__init__()
        self.config = config
        g = torch.Generator().manual_seed(config.seed)
        if config.frequencies:
            self.encoding: nn.Module = FourierFeatures(
                torch.randn(config.frequencies, config.in_features, generator=g) * config.frequency_std)
            width = 2 * config.frequencies
        else:
            self.encoding = nn.Identity()
            width = config.in_features
        sizes = [width, *config.hidden, config.out_features]
        self.shapes = [(o, i) for i, o in zip(sizes[:-1], sizes[1:])]  # [out, in] per layer, as nn.Linear
        out_dim = sum(o * i + o for o, i in self.shapes)
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            layers: list[nn.Module] = []
            prev = config.latent_dim
            for h in config.hyper_hidden:
                layers += [nn.Linear(prev, h), nn.LeakyReLU(0.1)]
                prev = h
            layers.append(nn.Linear(prev, out_dim))
            self.hypernetwork = nn.Sequential(*layers)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def function_weights(self, z: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per layer ``(W [B, out, in], b [B, out])`` of the functions ``z`` ``[B, d]`` stand for."""
        flat = self.hypernetwork(z)
        b, pos, weights, biases = z.shape[0], 0, [], []
        for o, i in self.shapes:  # the reference's layout: every weight matrix first, then every bias
            weights.append(flat[:, pos:pos + o * i].reshape(b, o, i))
            pos += o * i
        for o, _ in self.shapes:
            biases.append(flat[:, pos:pos + o])
            pos += o
        return list(zip(weights, biases))

    def render(self, z: Tensor, coords: Tensor) -> Tensor:
        """Features in [-1, 1] ``[B, P, c]`` of the functions of ``z`` at ``coords`` ``[P, d_in]``
        (shared) or ``[B, P, d_in]``."""
        h = self.encoding(coords)
        if h.dim() == 2:
            h = h.expand(z.shape[0], *h.shape)
        layers = self.function_weights(z)
        for k, (w, bias) in enumerate(layers):
            h = torch.baddbmm(bias[:, None, :], h, w.transpose(1, 2))
            h = torch.tanh(h) if k == len(layers) - 1 else F.leaky_relu(h, 0.1)
        return h


# --------------------------------------------------------------------------- discriminator
def canonical_order(coords: Tensor) -> Tensor:
    """The permutation ``[P]`` that sorts ``coords`` ``[P, d]`` lexicographically (by the first
    coordinate, then the second, ...): the same set of points in any order sorts the same."""
    order = torch.arange(coords.shape[0], device=coords.device)
    for k in reversed(range(coords.shape[1])):  # stable sorts, least significant key first
        order = order[torch.sort(coords[order, k], stable=True).indices]
    return order


def farthest_points(coords: Tensor, k: int) -> Tensor:
    """Indices ``[k]`` of ``k`` of ``coords`` ``[P, d]`` by farthest-point sampling, started at
    the lexicographically first point and breaking ties (common on grids) by that order, so
    that the chosen set does not depend on the order the points come in."""
    p = coords.shape[0]
    if k >= p:
        return torch.arange(p, device=coords.device)
    order = canonical_order(coords)
    xyz = coords[order]
    chosen = torch.zeros(k, dtype=torch.long, device=coords.device)
    dist = torch.full((p,), float("inf"), device=coords.device)
    far = torch.zeros((), dtype=torch.long, device=coords.device)
    for i in range(k):
        chosen[i] = far
        dist = torch.minimum(dist, (xyz - xyz[far]).norm(dim=1))
        far = dist.argmax()  # the first maximum: the canonical order breaks ties
    return order[chosen]


class _Grouping:
    """Centres and neighbourhoods of one coordinate set: ``centres [M]``, ``neighbours [M, k]``
    (nearest first, ties in the canonical order), ``offsets [M, k, d]`` (neighbour minus centre)."""

    def __init__(self, coords: Tensor, num_output_points: int, num_neighbors: int) -> None:
        self.centres = farthest_points(coords, num_output_points)
        centre_xyz = coords[self.centres]
        k = min(num_neighbors, coords.shape[0])
        order = canonical_order(coords)
        d = torch.cdist(centre_xyz, coords[order])
        self.neighbours = order[torch.sort(d, dim=1, stable=True).indices[:, :k]]
        self.offsets = coords[self.neighbours] - centre_xyz[:, None, :]
        self.out_coords = centre_xyz


class _GroupingCache:
    """Groupings keyed by the coordinate set (its values), so that a batch shown the same
    coordinates step after step groups them once."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: _Grouping | None = None

    def get(self, coords: Tensor, m: int, k: int) -> _Grouping:
        key = (coords.shape, coords.device, m, k, hash(coords.detach().cpu().numpy().tobytes()))
        if key != self._key:
            self._key, self._value = key, _Grouping(coords.detach(), m, k)
        return self._value


class PointConv(nn.Module):
    """Sampling + grouping + PointConv: ``(coords [P, d], features [B, P, C_in])`` ->
    ``(centres [M, d], features [B, M, C_out])``."""

    def __init__(self, coordinate_dim: int, in_channels: int, layer: PointConvLayer) -> None:
        super().__init__()
        self.layer = layer
        mods: list[nn.Module] = []
        prev = coordinate_dim
        for c in layer.mid_channels:  # the weight net: a pointwise MLP as 1x1 convolutions
            mods += [nn.Conv2d(prev, c, 1), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
            prev = c
        self.weight_net = nn.Sequential(*mods)
        self.linear = nn.Linear(layer.mid_channels[-1] * in_channels, layer.out_channels)
        self.cache = _GroupingCache()

    def forward(self, coords: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        g = self.cache.get(coords, self.layer.num_output_points, self.layer.num_neighbors)
        grouped = features[:, g.neighbours]  # [B, M, k, C_in]
        # the kernels depend on the offsets only, the same for every set of the batch: computed
        # once (the reference computes B copies; batch norm's statistics over copies are the same,
        # up to the n/(n-1) of the running variance)
        weights = self.weight_net(g.offsets.permute(2, 1, 0)[None]).permute(0, 3, 2, 1)  # [1, M, k, C_mid]
        out = torch.matmul(grouped.transpose(2, 3), weights)  # [B, M, C_in, C_mid]
        return g.out_coords, self.linear(out.flatten(2))


class AvgPool(nn.Module):
    """Average of each centre's neighbourhood: ``[B, P, C]`` -> ``[B, M, C]``."""

    def __init__(self, layer: PointConvLayer) -> None:
        super().__init__()
        self.layer = layer
        self.cache = _GroupingCache()

    def forward(self, coords: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        g = self.cache.get(coords, self.layer.num_output_points, self.layer.num_neighbors)
        return g.out_coords, features[:, g.neighbours].mean(dim=2)


class PointConvDiscriminator(nn.Module):
    """Probability ``[B, 1]`` that feature sets ``[B, P, c]`` at ``coords`` ``[P, d]`` are real."""

    def __init__(self, config: GaspConfig) -> None:
        super().__init__()
        if not config.disc:
            raise ValueError("the GASP config has no discriminator layers")
        with torch.random.fork_rng():
            torch.manual_seed(config.seed + 1)
            self.layers = nn.ModuleList()
            channels = config.out_features
            for i, layer in enumerate(config.disc):
                if layer.out_channels is None:
                    self.layers.append(AvgPool(layer))
                    continue
                self.layers.append(PointConv(config.in_features, channels, layer))
                channels = layer.out_channels
                if i < len(config.disc) - 1:  # no norm or non-linearity after the last PointConv
                    self.layers.append(_FeatureNorm(channels))
        if config.disc[-1].out_channels != 1 or config.disc[-1].num_output_points != 1:
            raise ValueError("the discriminator's last layer must be a PointConv to 1 channel at 1 point")

    def logits(self, coords: Tensor, features: Tensor) -> Tensor:
        """The logit ``[B, 1]`` of "real" (the sigmoid's input): training takes its binary
        cross-entropy from it, the same loss as from the probability but without the float32
        saturation at which ``sigmoid`` rounds to exactly 1 and the gradient vanishes."""
        for layer in self.layers:
            coords, features = layer(coords, features)
        return features.reshape(features.shape[0], 1)

    def forward(self, coords: Tensor, features: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(coords, features))


class _FeatureNorm(nn.Module):
    """Batch norm over the channels of ``[B, M, C]`` features, then LeakyReLU(0.2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, coords: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        return coords, F.leaky_relu(self.norm(features.transpose(1, 2)).transpose(1, 2), 0.2)


# --------------------------------------------------------------------------- storage
def save_generator(generator: GaspGenerator, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """The generator (hypernetwork + Fourier matrix) as safetensors; config and ``info`` in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": FORMAT, "config": json.dumps(generator.config.to_dict()),
                                            "info": json.dumps(info or {}, default=str)})
    return path


def load_generator(path: str | Path) -> tuple[GaspGenerator, dict[str, Any]]:
    """Read a `save_generator` file: (generator, info); a foreign or damaged file raises ValueError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such GASP generator file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a GASP generator (format {meta.get('format')!r})")
    try:
        generator = GaspGenerator(GaspConfig.from_dict(json.loads(meta["config"])))
        generator.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: damaged GASP generator ({type(e).__name__}: {str(e)[:200]})") from None
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise ValueError(f"{path}: the generator holds NaN or infinite values")
    return generator.eval(), json.loads(meta.get("info", "{}"))


__all__ = ["GaspConfig", "GaspGenerator", "PointConvDiscriminator", "PointConvLayer", "canonical_order", "farthest_points",
           "load_generator", "save_generator"]
