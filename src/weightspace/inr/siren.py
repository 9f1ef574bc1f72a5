"""SIREN INRs and the published recipes for fitting them.

A recipe is a named, versioned, frozen object: it fixes the architecture, the
initialisation, the signal's value range, the decode offset and the optimiser, so a zoo
records exactly how its networks were made (``zoo.json`` -> provenance -> recipe).
Changing a published recipe means a new version, never an edit.

Decode path (what users of the reference repos ask for): a network maps coordinates in
``[-1, 1]^d`` to ``f(x) + output_offset``, which lies in ``target_range``; `decode`
maps that back to ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from weightspace.core.functional import forward
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights


@dataclass(frozen=True)
class SirenRecipe:
    name: str
    version: int
    hidden: tuple[int, ...] = (32, 32)
    omega: float = 30.0
    # "siren": first layer U(-1/in, 1/in) (Sitzmann et al.); "same": like the hidden layers
    first_layer_init: Literal["siren", "same"] = "siren"
    # hidden sine layers and the output layer: U(-sqrt(c/in)/omega, sqrt(c/in)/omega), c = 6
    last_layer_init: Literal["siren", "torch"] = "siren"
    bias_init: Literal["zero", "torch"] = "torch"
    output_offset: float = 0.0
    target_range: tuple[float, float] = (-1.0, 1.0)
    lr: float = 1e-4
    steps: int = 1000
    early_stop_psnr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"], d["target_range"] = list(self.hidden), list(self.target_range)
        return d

    def spec(self, in_features: int, out_features: int) -> NetworkSpec:
        return NetworkSpec.siren(in_features, self.hidden, out_features, omega=self.omega)

    # ------------------------------------------------------------------ values
    def encode_targets(self, values01: Tensor) -> Tensor:
        """Signal values in [0, 1] -> the recipe's target range."""
        lo, hi = self.target_range
        return values01 * (hi - lo) + lo

    def decode(self, outputs: Tensor) -> Tensor:
        """Raw network outputs -> signal values in [0, 1] (offset added, range undone, clamped)."""
        lo, hi = self.target_range
        return ((outputs + self.output_offset - lo) / (hi - lo)).clamp(0.0, 1.0)

    def psnr(self, mse: Tensor) -> Tensor:
        """PSNR in dB for an MSE measured in the target range (peak = range width)."""
        lo, hi = self.target_range
        return 10.0 * torch.log10((hi - lo) ** 2 / mse.clamp_min(1e-20))

    # ------------------------------------------------------------------ init
    def init(self, spec: NetworkSpec, seeds: Sequence[int]) -> Weights:
        """Initial weights, one network per seed; each network depends on its seed only,
        so a zoo is the same however its networks are batched."""
        nets = [self._init_one(spec, torch.Generator().manual_seed(int(s))) for s in seeds]
        n = spec.num_layers
        return Weights(
            spec,
            tuple(torch.stack([net[i][0] for net in nets]).unsqueeze(1) for i in range(n)),
            tuple(torch.stack([net[i][1] for net in nets]).unsqueeze(1) for i in range(n)),
        )

    def _init_one(self, spec: NetworkSpec, g: torch.Generator) -> list[tuple[Tensor, Tensor]]:
        out = []
        for i, layer in enumerate(spec.layers):
            fan_in = layer.in_features
            last = i == spec.num_layers - 1
            if i == 0 and self.first_layer_init == "siren":
                bound = 1.0 / fan_in
            elif last and self.last_layer_init == "torch":
                bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default (kaiming_uniform, a=sqrt(5))
            else:
                bound = math.sqrt(6.0 / fan_in) / self.omega
            w = (torch.rand(layer.out_features, fan_in, generator=g) * 2 - 1) * bound
            if self.bias_init == "zero":
                b = torch.zeros(layer.out_features)
            else:
                b = (torch.rand(layer.out_features, generator=g) * 2 - 1) / math.sqrt(fan_in)
            out.append((w, b))
        return out

    # ------------------------------------------------------------------ evaluation
    def render(self, weights: Weights, coords: Tensor) -> Tensor:
        """Signal values in [0, 1] of every network at ``coords`` [P, d] -> [B, P, out]."""
        with torch.no_grad():
            return self.decode(forward(weights, coords.to(weights.dtype)))


# Navon et al. (DWSNets, ICML 2023) MNIST / Fashion-MNIST INRs; ../shared/ANCHORS.md.
# Checked against their nn/inr.py: INR = Sequential(Siren(2, 32), Siren(32, 32), nn.Linear(32, 1)),
# forward = seq(x) + 0.5; Siren(is_first=False) draws U(-sqrt(6/in)/30, ..) for every sine
# layer (so no special first layer) and zeroes its bias; sin(30 (Wx + b)). The output layer is
# a plain nn.Linear: PyTorch's default weight init, as here. Its bias is PyTorch's default
# there too (U(-1/sqrt(32), ..)), while this recipe zeroes it, as ANCHORS.md says ("zero
# biases"); a v2 would be needed to follow the code rather than the paper's description.
# Their coordinates are np.meshgrid(x, y) ('xy': input 0 is the column); see zoo/importers.py.
DWSNETS = SirenRecipe(
    name="dwsnets",
    version=1,
    first_layer_init="same",
    last_layer_init="torch",
    bias_init="zero",
    output_offset=0.5,
    target_range=(0.0, 1.0),
    lr=5e-4,
    steps=1000,
    early_stop_psnr=40.0,
)

# Zhou et al. (NFN, NeurIPS 2023) SIREN INRs: standard SIREN init, targets in [-1, 1].
# Checked against their experiments/siren_utils.py (Sitzmann's SIREN): SineLayer(is_first)
# U(-1/in, 1/in), hidden SineLayer and the outermost nn.Linear U(-sqrt(6/in)/30, ..); every
# bias keeps nn.Linear's default U(-1/sqrt(in), ..); grid torch.meshgrid (indexing 'ij');
# images normalised by Normalize(0.5, 0.5) to [-1, 1]. Their classifiers train on 10 extra
# fits per training image (classify_siren.py, MNIST setup: extra_aug=10, prefix "_aug{i}"), 45k/5k split.
NFN = SirenRecipe(
    name="nfn",
    version=1,
    first_layer_init="siren",
    last_layer_init="siren",
    bias_init="torch",
    output_offset=0.0,
    target_range=(-1.0, 1.0),
    lr=5e-5,
    steps=5000,
    early_stop_psnr=None,
)

RECIPES: dict[str, SirenRecipe] = {r.name: r for r in (DWSNETS, NFN)}


def get_recipe(name: str, **overrides: Any) -> SirenRecipe:
    """A published recipe by name; overrides (e.g. ``steps=200``) make a derived recipe
    whose name records them, so a zoo never claims a recipe it did not follow."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    base = RECIPES[name]
    if not overrides:
        return base
    unknown = set(overrides) - set(SirenRecipe.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown recipe fields {sorted(unknown)}")
    tag = ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    from dataclasses import replace

    return replace(base, name=f"{base.name}[{tag}]", **overrides)
