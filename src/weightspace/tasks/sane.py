"""Training, embedding and sampling with SANE (`models.sane`), on zoos of any architectures.

Data. Each architecture is a `TokenZoo`: its networks (`Weights`) and per-layer
standardisation statistics (mean and std over the layer's real token entries of the zoo's
training networks, as the reference standardises per layer). `SaneWindows` serves the
engine batches of windows: for every network a random window of ``config.window``
consecutive tokens, cut at the same place from two views,

- view 1: the network after a random hidden-neuron permutation (a function-preserving
  augmentation, drawn per batch), and
- view 2: the network as stored (the reference's "view 2 canonical"),

with the windows of several architectures mixed in one batch (windows have one shape
whatever the network).

Loss (`SaneTask`, run by the one training engine): ``(1 - gamma) * reconstruction + gamma
* NT-Xent``. Reconstruction: mean squared error of both views' decoded windows against
their clean tokens, over real entries only. Contrast: SimCLR's NT-Xent between the two
views' projected windows. Each view is perturbed by multiplicative Gaussian noise
``t * (1 + noise * eps)`` first. Defaults are the reference's (gamma 0.05, temperature 0.1,
noise 0.1).

Embedding (`embed`): the mean token latent of the whole sequence. Sampling: anchors'
token latents (`encode_tokens`) jittered by SANE's KDE, per network (`kde_model_sample`, the
reference's "joint" mode) or token by token (`kde_token_sample`, its "token" mode, which
assumes networks aligned to one neuron order: the reference aligns its zoos by git re-basin;
these zoos are not), then decoded at the target architecture's positions (`decode_latents`).
`widen` builds prompts of a wider architecture from trained narrower networks.

Shapes: tokens ``[N, T, s]``, positions ``[T, 3]``, embeddings ``[N, latent_dim]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from weightspace.core.sane_tokens import SaneLayout, layout_of_spec, tokenize_weights, weights_from_tokens
from weightspace.core.spec import NetworkSpec
from weightspace.core.transforms import RandomSymmetry
from weightspace.core.weights import Weights
from weightspace.models.sane import Sane, SaneConfig
from weightspace.tasks.hyperrep import nt_xent
from weightspace.train import TrainConfig, fit

FORMAT = "weightspace-sane"
# the reference trains with AdamW at 1e-4 (OneCycle, 50 epochs, batch 32) on a GPU; these are CPU-sized
DEFAULT_TRAIN = TrainConfig(epochs=20, batch_size=64, lr=3e-4, weight_decay=1e-6, warmup_steps=100)


@dataclass(frozen=True)
class LayerStats:
    """Per-layer mean and std ``[L]`` of a zoo's token entries (float64)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, weights: Weights, tokensize: int) -> LayerStats:
        tokens, layout = tokenize_weights(weights, tokensize)
        mask, layer = layout.mask, layout.positions[:, 1]
        means, stds = [], []
        for i in range(len(layout.layers)):
            vals = tokens[:, layer == i][:, mask[layer == i]].double()
            means.append(vals.mean())
            stds.append(vals.std().clamp_min(1e-8) if vals.numel() > 1 else torch.tensor(1.0, dtype=torch.float64))
        return cls(torch.stack(means), torch.stack(stds))

    def for_layers(self, n: int) -> LayerStats:
        """Statistics for a network of ``n`` layers: layer ``i`` takes this zoo's layer ``i``,
        the output layer this zoo's output layer, extra middle layers the last hidden one."""
        have = len(self.mean)
        if n == have:
            return self
        idx = [min(i, have - 2) if i < n - 1 else have - 1 for i in range(n)] if have > 1 else [0] * n
        return LayerStats(self.mean[idx], self.std[idx])

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping) -> LayerStats:
        return cls(torch.tensor(d["mean"], dtype=torch.float64), torch.tensor(d["std"], dtype=torch.float64))


def standardised_tokens(weights: Weights, stats: LayerStats, tokensize: int) -> tuple[Tensor, SaneLayout]:
    """Tokens ``[N, T, s]`` with each layer's entries standardised (padding stays 0)."""
    tokens, layout = tokenize_weights(weights, tokensize)
    if len(stats.mean) != len(layout.layers):
        raise ValueError(f"statistics for {len(stats.mean)} layers, the network has {len(layout.layers)}")
    layer = layout.positions[:, 1]
    m, s = stats.mean[layer].float()[:, None], stats.std[layer].float()[:, None]
    return (tokens - m) / s * layout.mask, layout


def weights_from_standardised(tokens: Tensor, spec: NetworkSpec, stats: LayerStats, tokensize: int) -> Weights:
    """Inverse of `standardised_tokens` (padding entries ignored)."""
    layer = layout_of_spec(spec, tokensize).positions[:, 1]
    st = stats.for_layers(spec.num_layers)
    m, s = st.mean[layer].float(), st.std[layer].float()
    return weights_from_tokens(tokens * s[:, None] + m[:, None], spec, tokensize)


@dataclass
class TokenZoo:
    """One architecture's networks for SANE: raw `Weights` ``[N, 1, ...]`` and the statistics
    its tokens are standardised with."""

    name: str
    weights: Weights
    stats: LayerStats

    def __post_init__(self) -> None:
        if len(self.weights) == 0:
            raise ValueError(f"{self.name}: no networks")


class SaneWindows:
    """Batches of windows (see module doc) over several `TokenZoo` s. Indexing by a list of
    positions returns one batch ``{"v1", "v2": [B, W, s], "pos": [B, W, 3], "mask": [B, W, s]}``;
    ``supersample`` windows of each network per epoch."""

    def __init__(self, zoos: list[TokenZoo], config: SaneConfig, *, supersample: int = 1, permute: bool = True,
                 seed: int = 0) -> None:
        if not zoos:
            raise ValueError("no zoos to draw windows from")
        self.zoos, self.config, self.permute, self.supersample = zoos, config, permute, max(1, int(supersample))
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.offsets = torch.tensor([0] + [len(z.weights) for z in zoos]).cumsum(0)
        self.layouts = [layout_of_spec(z.weights.spec, config.tokensize) for z in zoos]
        for z, lay in zip(zoos, self.layouts):
            if lay.num_tokens < config.window:
                raise ValueError(f"{z.name}: {lay.num_tokens} tokens, fewer than the window of {config.window}")
            top = lay.positions.max(dim=0).values.tolist()
            if any(t >= m for t, m in zip(top, config.max_positions)):
                raise ValueError(f"{z.name}: token positions up to {top}, beyond the model's tables {config.max_positions}")
        self._augment = RandomSymmetry(("permutation",))

    def __len__(self) -> int:
        return int(self.offsets[-1]) * self.supersample

    def __getitem__(self, index: list[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long) % int(self.offsets[-1])
        group = torch.searchsorted(self.offsets[1:], idx, right=True)
        parts: list[dict[str, Tensor]] = []
        w = self.config.window
        for g in group.unique().tolist():
            z, layout = self.zoos[g], self.layouts[g]
            nets = z.weights[idx[group == g] - self.offsets[g]]
            v2, _ = standardised_tokens(nets, z.stats, self.config.tokensize)
            v1 = standardised_tokens(self._augment(nets, self.generator), z.stats, self.config.tokensize)[0] \
                if self.permute else v2
            starts = torch.randint(0, layout.num_tokens - w + 1, (len(nets),), generator=self.generator)
            rows = starts[:, None] + torch.arange(w)  # [n, W]
            take = lambda t: torch.gather(t, 1, rows[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
            parts.append({"v1": take(v1), "v2": take(v2), "pos": layout.positions[rows],
                          "mask": layout.mask[rows]})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the real (``mask``) entries."""
    m = mask.to(pred.dtype)
    return ((pred - target).square() * m).sum() / m.sum().clamp_min(1.0)


@dataclass
class SaneTask:
    """``(1 - gamma) * reconstruction + gamma * NT-Xent`` on two noisy views (module doc)."""

    gamma: float = 0.05
    temperature: float = 0.1
    noise: float = 0.1
    seed: int = 0
    monitor: str = "loss"
    mode: str = "min"
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        self.generator = torch.Generator().manual_seed(self.seed)

    def _noisy(self, t: Tensor, mask: Tensor) -> Tensor:
        eps = torch.randn(t.shape, generator=self.generator).to(t.device)
        return t * (1 + self.noise * eps) * mask

    def step(self, model: Sane, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], int]:
        v1, v2, pos, mask = batch["v1"], batch["v2"], batch["pos"], batch["mask"]
        n = len(v1)
        clean = torch.cat([v1, v2])
        pos2, mask2 = torch.cat([pos, pos]), torch.cat([mask, mask])
        z = model.encode(torch.cat([self._noisy(v1, mask), self._noisy(v2, mask)]), pos2)
        recon = masked_mse(model.decode(z, pos2), clean, mask2)
        proj = model.project(z)
        contrast = nt_xent(proj[:n], proj[n:], self.temperature)
        loss = (1 - self.gamma) * recon + self.gamma * contrast
        return loss, {"loss": loss.detach(), "recon": recon.detach(), "contrast": contrast.detach()}, n


@dataclass
class SaneResult:
    model: Sane
    stats: dict[str, LayerStats]
    best_val_loss: float | None
    seconds: float
    history: list[dict[str, float]]


def fit_sane(train: Mapping[str, Weights], val: Mapping[str, Weights] | None = None, *,
             config: SaneConfig | None = None, train_config: TrainConfig | None = None, task: SaneTask | None = None,
             supersample: int | None = None, run_dir: Path | None = None, resume: bool = False) -> SaneResult:
    """Train one SANE on the zoos in ``train`` (name -> raw weights; any architectures) with the
    training engine; each zoo is standardised with its own training statistics. ``supersample``
    windows per network and epoch (default: tokens / window of the longest network)."""
    config = config or SaneConfig()
    train_config = train_config or DEFAULT_TRAIN
    if not train:
        raise ValueError("no training zoos")
    stats = {name: LayerStats.fit(w, config.tokensize) for name, w in train.items()}
    zoos = [TokenZoo(name, w, stats[name]) for name, w in train.items()]
    if supersample is None:
        longest = max(layout_of_spec(w.spec, config.tokensize).num_tokens for w in train.values())
        supersample = max(1, longest // config.window)
    torch.manual_seed(train_config.seed)  # model initialisation
    model = Sane(config)
    train_data = SaneWindows(zoos, config, supersample=supersample, seed=train_config.seed)
    val_data = None
    if val:
        val_data = SaneWindows([TokenZoo(n, w, stats[n]) for n, w in val.items()], config, permute=False,
                               seed=train_config.seed + 7)
    task = task or SaneTask(seed=train_config.seed)
    result = fit(model, task, train_data, val_data, train_config, run_dir=run_dir, resume=resume)
    return SaneResult(result.model.eval(), stats, result.best_value, result.seconds, result.history)


def _device(model: Sane) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_tokens(model: Sane, weights: Weights, stats: LayerStats, batch_size: int = 128) -> Tensor:
    """Token latents ``[N, T, latent_dim]`` of every network (eval mode)."""
    model.eval()
    dev, s = _device(model), model.config.tokensize
    pos = layout_of_spec(weights.spec, s).positions
    out = []
    for i in range(0, len(weights), batch_size):
        tokens, _ = standardised_tokens(weights[i : i + batch_size], stats, s)
        out.append(model.encode_sequence(tokens.to(dev), pos.expand(len(tokens), -1, -1).to(dev)).cpu())
    return torch.cat(out)


@torch.no_grad()
def embed(model: Sane, weights: Weights, stats: LayerStats, batch_size: int = 128) -> Tensor:
    """SANE embeddings ``[N, latent_dim]``: each network's mean token latent."""
    return encode_tokens(model, weights, stats, batch_size).mean(dim=1)


@torch.no_grad()
def decode_latents(model: Sane, z: Tensor, spec: NetworkSpec, stats: LayerStats, batch_size: int = 128) -> Weights:
    """Networks of ``spec`` from token latents ``[N, T, latent_dim]`` at ``spec``'s positions,
    de-standardised with ``stats`` (`LayerStats.for_layers` maps another depth)."""
    model.eval()
    dev, s = _device(model), model.config.tokensize
    pos = layout_of_spec(spec, s).positions
    if z.shape[1] != len(pos):
        raise ValueError(f"{z.shape[1]} latents per network, the spec has {len(pos)} tokens")
    tokens = torch.cat([model.decode_sequence(z[i : i + batch_size].to(dev), pos.expand(len(z[i : i + batch_size]), -1, -1)
                                              .to(dev)).cpu() for i in range(0, len(z), batch_size)])
    return weights_from_standardised(tokens, spec, stats, s)


def kde_token_sample(anchors: Tensor, n: int, *, bandwidth: float = 0.2, seed: int = 0) -> Tensor:
    """SANE's "token" KDE: for every token position an independent draw from a Gaussian KDE
    of the anchors' latents there: ``anchors[a_t, t] + bandwidth * eps`` with a random anchor
    ``a_t`` per position. anchors ``[A, T, d]`` -> samples ``[n, T, d]``."""
    g = torch.Generator().manual_seed(seed)
    a, t, d = anchors.shape
    pick = torch.randint(0, a, (n, t), generator=g)
    return anchors[pick, torch.arange(t)] + bandwidth * torch.randn(n, t, d, generator=g, dtype=anchors.dtype)


def kde_model_sample(anchors: Tensor, n: int, *, bandwidth: float = 0.2, seed: int = 0) -> Tensor:
    """SANE's "joint" KDE: a Gaussian KDE over whole networks' latent sequences: one random
    anchor per sample, every token jittered: ``anchors[a] + bandwidth * eps``. Keeps each
    sample's neurons from one network, which the token-wise KDE (`kde_token_sample`) does not:
    on a zoo whose networks are not aligned to one neuron order that mixes incompatible neurons.
    anchors ``[A, T, d]`` -> ``[n, T, d]``."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, anchors.shape[0], (n,), generator=g)
    return anchors[pick] + bandwidth * torch.randn(n, *anchors.shape[1:], generator=g, dtype=anchors.dtype)


def widen(weights: Weights, spec: NetworkSpec, *, seed: int = 0) -> Weights:
    """Function-preserving widening (Net2WiderNet, Chen et al. 2016) of ``weights`` to the
    wider hidden layers of ``spec`` (same depth, kinds, kernels, inputs and outputs): each new
    neuron copies a random existing one of its layer (incoming weights and bias), and the next
    layer's weights from every copy of a neuron are divided by its number of copies. Exact for
    element-wise activations and average pooling (a linear map of each channel). A prompt of
    a wider architecture built from trained networks of a narrower one."""
    old = weights.spec
    if old.num_layers != spec.num_layers or old.pool != spec.pool:
        raise ValueError("widen keeps the depth and pooling: the specs differ there")
    if weights.channels != 1:
        raise ValueError(f"widen takes raw weights (C = 1), got C = {weights.channels}")
    g = torch.Generator().manual_seed(seed)
    ws, bs = [], []
    prev: Tensor | None = None  # for the previous layer: which old neuron each new input is
    counts: Tensor | None = None
    for i, (a, b, w, bias) in enumerate(zip(old.layers, spec.layers, weights.weights, weights.biases)):
        same = (a.kind, a.kernel_size, a.bias, a.activation) == (b.kind, b.kernel_size, b.bias, b.activation)
        if not same or b.out_features < a.out_features or b.in_features < a.in_features \
                or (i == old.num_layers - 1 and b.out_features != a.out_features):
            raise ValueError(f"layer {i}: {b} is not a widening of {a}")
        w = w[:, 0]
        if prev is not None:  # inputs from the widened previous layer: copies share their neuron's weight
            w = w[:, :, prev] / counts[prev].view(1, 1, -1, *([1] * (w.dim() - 3)))
        extra = torch.randint(0, a.out_features, (b.out_features - a.out_features,), generator=g)
        rows = torch.cat([torch.arange(a.out_features), extra])
        ws.append(w[:, rows][:, None])
        bs.append(None if bias is None else bias[:, 0][:, rows][:, None])
        prev, counts = rows, torch.bincount(rows, minlength=a.out_features).to(w.dtype)
    return Weights(spec, tuple(ws), tuple(bs))


def save_sane(path: str | os.PathLike, result: SaneResult, info: dict | None = None) -> Path:
    """Weights (safetensors) with the config, the zoos' statistics and ``info`` in its metadata."""
    path = Path(path)
    meta = {"format": FORMAT, "config": json.dumps(result.model.config.to_dict()),
            "stats": json.dumps({k: v.to_dict() for k, v in result.stats.items()}), "info": json.dumps(info or {})}
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(path), metadata=meta)
    return path


def load_sane(path: str | os.PathLike) -> tuple[Sane, dict[str, LayerStats], dict]:
    """A model saved by `save_sane`: (model in eval mode, statistics per zoo, info). A missing
    file raises FileNotFoundError; a corrupt, foreign or inconsistent one ValueError naming it."""
    from weightspace.zoo.reference_cnns import load_state_dict_checked, read_safetensors

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such SANE file")
    state, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a SANE file (format {meta.get('format')!r})")
    try:
        model = Sane(SaneConfig.from_dict(json.loads(meta["config"])))
        stats = {k: LayerStats.from_dict(v) for k, v in json.loads(meta["stats"]).items()}
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: unreadable SANE metadata ({type(e).__name__}: {e})") from None
    bad = [k for k, v in state.items() if not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: non-finite values in {bad[:3]}")
    load_state_dict_checked(model, state, str(path))
    return model.eval(), stats, info


__all__ = ["DEFAULT_TRAIN", "LayerStats", "SaneResult", "SaneTask", "SaneWindows", "TokenZoo", "decode_latents", "embed",
           "encode_tokens", "fit_sane", "kde_model_sample", "kde_token_sample", "load_sane", "masked_mse", "save_sane",
           "standardised_tokens", "weights_from_standardised", "widen"]
