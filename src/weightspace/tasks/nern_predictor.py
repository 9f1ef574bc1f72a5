"""The NeRN predictor: kernel coordinate ``(layer, filter, channel)`` -> that 3x3 kernel.

After Ashkenazi et al., "NeRN: Learning Neural Representations for Neural Networks"
(ICLR 2023). Every 3x3 kernel of a CNN has an integer coordinate; a positional encoding
of it feeds an MLP that outputs the kernel's 9 weights. The MLP predicts kernels in units
of their layer's weight standard deviation (``scales``, one float per layer, kept with the
predictor): fan-in makes layers differ in scale by an order of magnitude, and a shared
output scale would leave small-scale layers (ResNet's wide stages) to rounding noise.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class KernelLayout:
    """Which kernels a predictor covers: per layer its state-dict key and ``(out, in)`` size;
    every kernel is ``kh x kw`` (3x3). Kernel ``n`` of the flat order is layer-major, then
    filter (out) then channel (in) — the row-major order of the stacked weights."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    kernel: tuple[int, int] = (3, 3)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], keys: list[str]) -> KernelLayout:
        shapes = tuple((int(state[k].shape[0]), int(state[k].shape[1])) for k in keys)
        kernels = {tuple(state[k].shape[2:]) for k in keys}
        if len(kernels) != 1:
            raise ValueError(f"all predicted layers must share one kernel size, got {sorted(kernels)}")
        return cls(tuple(keys), shapes, tuple(kernels.pop()))  # type: ignore[arg-type]

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def kernel_numel(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def num_kernels(self) -> int:
        return sum(o * i for o, i in self.shapes)

    @property
    def num_weights(self) -> int:
        return self.num_kernels * self.kernel_numel

    @property
    def extents(self) -> tuple[int, int, int]:
        """Number of distinct values of each coordinate: layers, most filters, most channels."""
        return self.num_layers, max(o for o, _ in self.shapes), max(i for _, i in self.shapes)

    def coordinates(self) -> Tensor:
        """``[num_kernels, 3]`` int64 ``(layer, filter, channel)`` in the flat order."""
        parts = []
        for layer, (o, i) in enumerate(self.shapes):
            f, c = torch.meshgrid(torch.arange(o), torch.arange(i), indexing="ij")
            parts.append(torch.stack([torch.full_like(f, layer), f, c], dim=-1).reshape(-1, 3))
        return torch.cat(parts)

    def layer_of_kernel(self) -> Tensor:
        """``[num_kernels]`` int64: the layer index of every kernel."""
        return torch.cat([torch.full((o * i,), layer) for layer, (o, i) in enumerate(self.shapes)])

    def gather(self, state: dict[str, Tensor]) -> Tensor:
        """``[num_kernels, kh * kw]``: the kernels of ``state`` in the flat order."""
        return torch.cat([state[k].reshape(-1, self.kernel_numel) for k in self.keys])

    def split(self, kernels: Tensor) -> dict[str, Tensor]:
        """Inverse of :meth:`gather`: ``[num_kernels, kh * kw]`` -> ``{key: [out, in, kh, kw]}``."""
        sizes = [o * i for o, i in self.shapes]
        return {k: part.reshape(o, i, *self.kernel)
                for k, (o, i), part in zip(self.keys, self.shapes, kernels.split(sizes))}

    def to_json(self) -> str:
        return json.dumps({"keys": list(self.keys), "shapes": [list(s) for s in self.shapes],
                           "kernel": list(self.kernel)})

    @classmethod
    def from_json(cls, text: str) -> KernelLayout:
        d = json.loads(text)
        return cls(tuple(d["keys"]), tuple(tuple(s) for s in d["shapes"]), tuple(d["kernel"]))


@dataclass(frozen=True)
class PredictorConfig:
    hidden: int = 128  # width of the MLP's hidden layers
    depth: int = 4  # number of hidden layers
    frequencies: int = 8  # positional-encoding frequencies per coordinate: pi * 2^0 ... pi * 2^(F-1)

    def __post_init__(self) -> None:
        if min(self.hidden, self.depth) < 1 or self.frequencies < 0:
            raise ValueError(f"predictor needs hidden >= 1, depth >= 1, frequencies >= 0: {self}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PredictorConfig:
        return cls(**json.loads(text))


class KernelPredictor(nn.Module):
    """``coords [K, 3] int64 -> [K, kh * kw]`` kernels in units of their layer's scale.

    Encoding: each coordinate ``x`` is normalised to ``u = x / (extent - 1)`` in ``[0, 1]``
    (absolute indices, so neighbouring filters are equally close in every layer) and
    mapped to ``(u, sin(pi 2^k u), cos(pi 2^k u))`` for ``k < frequencies``; the highest
    frequency resolves single index steps. ``kernels(coords)`` multiplies by ``scales``.
    """

    def __init__(self, layout: KernelLayout, config: PredictorConfig, scales: Tensor) -> None:
        super().__init__()
        if scales.shape != (layout.num_layers,):
            raise ValueError(f"need one scale per layer ({layout.num_layers}), got {tuple(scales.shape)}")
        self.config = config
        self.register_buffer("scales", scales.float().clone())
        self.register_buffer("extent", torch.tensor([max(e - 1, 1) for e in layout.extents], dtype=torch.float32))
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(config.frequencies, dtype=torch.float32))
        dims = [3 * (1 + 2 * config.frequencies)] + [config.hidden] * config.depth
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(dims[-1], layout.kernel_numel))
        self.mlp = nn.Sequential(*layers)

    def encode(self, coords: Tensor) -> Tensor:
        """``[K, 3]`` -> ``[K, 3 * (1 + 2 F)]``."""
        u = coords.to(self.extent.dtype) / self.extent  # [K, 3]
        angles = (u[:, :, None] * self.freqs).flatten(1)  # [K, 3F]
        return torch.cat([u, torch.sin(angles), torch.cos(angles)], dim=1)

    def forward(self, coords: Tensor) -> Tensor:
        return self.mlp(self.encode(coords))

    def kernels(self, coords: Tensor) -> Tensor:
        """``[K, kh * kw]`` kernel weights (predictions times their layer's scale)."""
        return self(coords) * self.scales[coords[:, 0]][:, None]


def count_parameters(predictor: KernelPredictor) -> int:
    """Numbers a stored predictor needs: the MLP's parameters plus the per-layer scales."""
    return sum(p.numel() for p in predictor.parameters()) + predictor.scales.numel()
