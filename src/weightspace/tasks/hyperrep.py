"""Hyper-representations: training the autoencoder of `weightspace.models.hyperrep` on a
zoo without labels, embedding networks, saving / loading, and measuring invariance.

Losses (one `HyperRepTask.step`, run by the one training engine):

- reconstruction: two augmented views of each network are encoded and decoded; the
  decoded tokens are compared with the clean network's tokens, as a mean squared error
  per layer (over its real, unpadded entries) averaged over layers. The tokens hold
  per-tensor standardised weights, so every layer's error is in units of its own spread
  and small layers count as much as large ones ("normalised per layer").
- contrastive: NT-Xent (SimCLR) between the projected embeddings of the two views.

Augmentation: a random hidden-neuron permutation of every training network (the engine's
data transform; absorbed by the canonical order when the model is canonical), then per
view Gaussian noise and erasing (weight dropout) on the standardised weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec
from weightspace.core.symmetry import permute
from weightspace.core.transforms import Compose, GaussianNoise, RandomSymmetry, WeightDropout
from weightspace.core.weights import Weights
from weightspace.models.hyperrep import HyperRepConfig, HyperRepresentation
from weightspace.train import TrainConfig, WeightBatches, fit

FORMAT = "weightspace-hyperrep"
DEFAULT_TRAIN = TrainConfig(epochs=30, batch_size=64, lr=1e-3, weight_decay=1e-4)


def reconstruction_loss(pred: Tensor, target: Tensor, layer_ids: Tensor, mask: Tensor) -> Tensor:
    """Mean over layers of each layer's MSE on real token entries.

    pred, target: ``[B, T, width]``; layer_ids: ``[T]``; mask: ``[T, width]`` bool.
    """
    per_token = ((pred - target).square() * mask).sum(dim=2)  # [B, T]
    n_layers = int(layer_ids.max()) + 1
    sums = per_token.new_zeros(len(pred), n_layers).index_add_(1, layer_ids, per_token).sum(dim=0)
    counts = pred.new_zeros(n_layers).index_add_(0, layer_ids, mask.sum(dim=1).to(pred.dtype))  # entries per network
    return (sums / (counts * len(pred))).mean()


def nt_xent(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    """SimCLR's NT-Xent: row i of ``a`` and of ``b`` ([B, D]) are positives, the rest of
    both batches negatives."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


@dataclass
class HyperRepTask:
    """Reconstruction + contrastive loss on two augmented views (see module doc)."""

    contrastive_weight: float = 0.1
    temperature: float = 0.1
    noise: float = 0.05  # relative std of the Gaussian noise per view
    erase: float = 0.05  # probability of erasing (zeroing) each standardised entry per view
    seed: int = 0
    monitor: str = "loss"
    mode: str = "min"
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)
        self.views = Compose((GaussianNoise(self.noise), WeightDropout(self.erase)))

    def step(self, model: HyperRepresentation, batch) -> tuple[Tensor, dict[str, Tensor], int]:
        weights, _ = batch
        prepared = model.prepare(weights)
        target = model.tokens(prepared)
        v1, v2 = (model.tokens(self.views(prepared, self.generator)) for _ in range(2))
        z = model.encode_tokens(torch.cat([v1, v2]))
        recon = reconstruction_loss(model.decode_tokens(z), target.repeat(2, 1, 1), model.layer_ids, model.mask)
        proj = model.project(z)
        contrast = nt_xent(proj[: len(target)], proj[len(target):], self.temperature)
        loss = recon + self.contrastive_weight * contrast
        return loss, {"loss": loss.detach(), "recon": recon.detach(), "contrast": contrast.detach()}, len(target)


@dataclass
class HyperRepResult:
    model: HyperRepresentation
    best_val_loss: float | None
    seconds: float
    history: list[dict[str, float]]
    epochs_run: int = 0


def fit_hyperrep(
    train: Weights,
    val: Weights | None = None,
    *,
    model_config: HyperRepConfig | None = None,
    config: TrainConfig | None = None,
    task: HyperRepTask | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
) -> HyperRepResult:
    """Train an autoencoder on ``train`` (raw weights, no labels) with the training engine;
    the epoch with the lowest ``val`` loss is kept. Defaults: `HyperRepConfig()`, `DEFAULT_TRAIN`.
    ``run_dir`` / ``resume``: metrics.csv and a checkpoint each epoch there, and continuing from it
    (`weightspace.train.fit`)."""
    model_config = model_config or HyperRepConfig()
    config = config or DEFAULT_TRAIN
    torch.manual_seed(config.seed)  # model initialisation
    model = HyperRepresentation(train.spec, model_config)
    model.fit_normalisation(train)
    task = task or HyperRepTask(seed=config.seed)
    augment = RandomSymmetry(("permutation",))
    train_data = WeightBatches(train, torch.zeros(len(train)), transform=augment, seed=config.seed)
    val_data = None if val is None else WeightBatches(val, torch.zeros(len(val)))
    result = fit(model, task, train_data, val_data, config, run_dir=run_dir, resume=resume)
    return HyperRepResult(result.model.eval(), result.best_value, result.seconds, result.history, result.epochs_run)


READOUTS = ("flat", "pooled")


@torch.no_grad()
def embed(model: HyperRepresentation, weights: Weights, batch_size: int = 256, *, readout: str = "flat") -> Tensor:
    """Embeddings of all networks of ``weights`` (eval mode, no gradients), computed on the
    model's device in batches and returned on the device of ``weights``.

    ``readout``: ``"flat"`` -> ``[N, E]`` (`HyperRepresentation.encode`, what the decoder
    takes); ``"pooled"`` -> ``[N, pooled_dim]`` (`HyperRepresentation.encode_pooled`: per layer,
    mean and std of the neuron tokens' latents; for models with one latent per token)."""
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; known: {', '.join(READOUTS)}")
    model.eval()
    device = _device(model)
    encode = model.encode if readout == "flat" else model.encode_pooled
    return torch.cat([encode(weights[i : i + batch_size].to(device)).to(weights.device)
                      for i in range(0, len(weights), batch_size)])


@torch.no_grad()
def reconstruct(model: HyperRepresentation, weights: Weights, batch_size: int = 256) -> Weights:
    """Encode and decode: raw weights in the model's (canonical) neuron order (computed on the
    model's device, returned on the device of ``weights``)."""
    model.eval()
    device = _device(model)
    return Weights.cat([model.decode(model.encode(weights[i : i + batch_size].to(device))).to(weights.device)
                        for i in range(0, len(weights), batch_size)])


@torch.no_grad()
def reconstruction_error(model: HyperRepresentation, weights: Weights) -> float:
    """The per-layer normalised reconstruction MSE of clean networks (1.0 ~ predicting each
    tensor's mean)."""
    model.eval()
    weights = weights.to(_device(model))
    target = model.tokens(model.prepare(weights))
    pred = model.decode_tokens(embed(model, weights))
    return float(reconstruction_loss(pred, target, model.layer_ids, model.mask))


@torch.no_grad()
def invariance_gap(model: HyperRepresentation, weights: Weights, *, n_samples: int = 3, seed: int = 0) -> dict[str, float]:
    """How far the encoder is from permutation invariant, relative to how far apart networks are.

    ``relative``: mean ``|e(g . w) - e(w)|`` over networks and sampled hidden-neuron
    permutations g, divided by the mean ``|e(w_i) - e(w_j)|`` over random pairs of
    different networks (0: invariant; ~1: a permutation moves a network as far as
    swapping it for another one). ``max_abs``: the largest ``|e(g . w) - e(w)|``.
    """
    gen = torch.Generator().manual_seed(seed)
    base = embed(model, weights)
    moved = [
        (embed(model, permute(weights, weights.spec.sample_permutation(len(weights), generator=gen))) - base).norm(dim=1)
        for _ in range(n_samples)
    ]
    moved_t = torch.cat(moved)
    pairs = torch.randperm(len(base), generator=gen)
    pairs = torch.where(pairs == torch.arange(len(base)), (pairs + 1) % len(base), pairs)
    spread = (base - base[pairs]).norm(dim=1).mean()
    return {"relative": float(moved_t.mean() / spread.clamp_min(1e-12)), "max_abs": float(moved_t.max())}


def save_hyperrep(path: str | os.PathLike, model: HyperRepresentation, info: dict | None = None) -> Path:
    """Write the model as safetensors; spec, config and ``info`` go into the metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "spec": model.spec.to_json(),
        "config": json.dumps(asdict(model.config)),
        "info": json.dumps(info or {}, default=str),
    }
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return path


def load_hyperrep(path: str | os.PathLike) -> tuple[HyperRepresentation, dict]:
    """Read a model written by `save_hyperrep`: (model in eval mode, info)."""
    from weightspace.zoo.store import read_safetensors_header

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such hyper-representation model file")
    header, _ = read_safetensors_header(path)  # validated before anything is parsed further
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a hyper-representation model (format {meta.get('format')!r})")
    model = HyperRepresentation(NetworkSpec.from_json(meta["spec"]), HyperRepConfig(**json.loads(meta["config"])))
    model.load_state_dict(load_file(str(path)))
    return model.eval(), json.loads(meta.get("info", "{}"))


def _device(model: nn.Module) -> torch.device:
    """Where ``model`` computes: the device of its parameters (the CPU for one without any)."""
    return next(model.parameters(), torch.empty(0)).device


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
