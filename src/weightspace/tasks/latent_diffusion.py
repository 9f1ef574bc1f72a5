"""A small DDPM (Ho et al. 2020) over vectors: functa latents, hypernetwork codes.

Vectors are standardised per dimension (mean and std of the training vectors, stored in
the model); an MLP with a sinusoidal time embedding predicts the noise; the loss is the
noise MSE at a uniformly drawn step. Training runs through the one engine
(`weightspace.train.fit`): vectors travel as a vector zoo's `Weights` (`zoo.vectors`), and
`DiffusionTask.step` draws the step and the noise. Sampling is ancestral DDPM with the
posterior variance, from a seeded generator.

Shapes: vectors ``[N, d]``; ``LatentDenoiser(x_t [B, d], t [B]) -> [B, d]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from weightspace.train import TrainConfig, WeightBatches, fit
from weightspace.zoo.vectors import vectors_to_weights, weights_to_vectors


def _schedule(steps: int) -> Tensor:
    # linear betas scaled so that 1000 steps give Ho et al.'s 1e-4 .. 2e-2
    scale = 1000.0 / steps
    return torch.linspace(scale * 1e-4, min(scale * 2e-2, 0.999), steps, dtype=torch.float64)


class LatentDenoiser(nn.Module):
    """Noise prediction MLP for ``dim``-vectors; holds the schedule and the standardisation."""

    def __init__(self, dim: int, hidden: int = 512, depth: int = 3, steps: int = 200, time_dim: int = 64) -> None:
        super().__init__()
        self.dim, self.steps, self.time_dim = dim, steps, time_dim
        betas = _schedule(steps)
        alpha_bar = torch.cumprod(1 - betas, 0)
        self.register_buffer("betas", betas.float())
        self.register_buffer("alpha_bar", alpha_bar.float())
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def set_standardisation(self, vectors: Tensor) -> None:
        self.mean.copy_(vectors.mean(0))
        self.std.copy_(vectors.std(0).clamp_min(1e-6))

    def embed_time(self, t: Tensor) -> Tensor:
        half = self.time_dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
        a = t.float()[:, None] * freqs[None]
        return self.time(torch.cat([a.sin(), a.cos()], dim=1))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.inp(x) + self.embed_time(t)
        for block in self.blocks:
            h = h + block(h)  # residual blocks keep a deep MLP trainable in few epochs
        return self.out(h)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` vectors ``[n, dim]`` in the original (unstandardised) units."""
        x = torch.randn(n, self.dim, generator=generator)
        for step in reversed(range(self.steps)):
            t = torch.full((n,), step, dtype=torch.long)
            eps = self(x, t)
            beta, ab = self.betas[step], self.alpha_bar[step]
            ab_prev = self.alpha_bar[step - 1] if step > 0 else torch.tensor(1.0)
            x = (x - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
            if step > 0:
                var = beta * (1 - ab_prev) / (1 - ab)
                x = x + var.sqrt() * torch.randn(n, self.dim, generator=generator)
        return x * self.std + self.mean


class DiffusionTask:
    """Noise-prediction MSE at a uniform step; best epoch: lowest validation loss."""

    monitor, mode = "loss", "min"

    def step(self, model: LatentDenoiser, batch) -> tuple[Tensor, dict[str, Tensor], int]:
        weights, _ = batch
        x0 = (weights_to_vectors(weights) - model.mean) / model.std
        t = torch.randint(model.steps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        ab = model.alpha_bar[t][:, None]
        loss = (model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t) - noise).square().mean()
        return loss, {"loss": loss.detach()}, len(x0)


@dataclass
class DiffusionResult:
    model: LatentDenoiser
    best_val_loss: float | None
    seconds: float


def train_latent_diffusion(
    train: Tensor,
    val: Tensor | None = None,
    *,
    hidden: int = 512,
    depth: int = 3,
    steps: int = 200,
    config: TrainConfig | None = None,
) -> DiffusionResult:
    """Fit a `LatentDenoiser` to vectors ``train`` ``[N, d]`` (``val`` picks the best epoch)."""
    config = config or TrainConfig(epochs=200, batch_size=128, lr=1e-3, weight_decay=0.0)
    if train.dim() != 2 or len(train) < 2:
        raise ValueError(f"need at least two training vectors [N, d], got {tuple(train.shape)}")
    torch.manual_seed(config.seed)
    model = LatentDenoiser(train.shape[1], hidden, depth, steps)
    model.set_standardisation(train)
    dummy = torch.zeros(len(train))
    data = WeightBatches(vectors_to_weights(train.float()), dummy, seed=config.seed)
    vdata = None if val is None else WeightBatches(vectors_to_weights(val.float()), torch.zeros(len(val)), seed=config.seed)
    res = fit(model, DiffusionTask(), data, vdata, config)
    return DiffusionResult(res.model.eval(), res.best_value, res.seconds)


__all__ = ["DiffusionResult", "DiffusionTask", "LatentDenoiser", "train_latent_diffusion"]
