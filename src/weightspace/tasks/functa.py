"""Functa (Dupont et al. 2022): meta-learn a modulated SIREN, turn a dataset into latents,
classify and generate from them.

The meta-learning itself is `weightspace.inr.meta` on a `weightspace.inr.modulated.ModulatedSiren`
(shared with the COIN++ codec); this module is the workflow around it:

- `fit_functa`: meta-learn on the training split, store the model, write the functaset;
- `encode_functaset`: a dataset -> a "functaset", a vector zoo (`zoo.vectors`) with one
  latent per signal, ``kind = "functa"``; its provenance names the model file and the
  inner steps used, its table holds ``source_index``, ``label``, ``split`` and ``psnr``
  (dB, peak 1);
- `psnr_vs_inner_steps`: reconstruction quality as a function of the inner steps;
- `sample_signals`: a DDPM over the training latents (`tasks.latent_diffusion`), decoded.

Classification needs nothing special: a functaset is a zoo, so `tasks.classify.classify_zoo`
(registry model ``mlp``) trains an MLP on the latents through the one engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightspace.inr.meta import MetaConfig, MetaHistory, encode, meta_train, reconstruct
from weightspace.inr.modulated import (
    ModulatedSiren,
    ModulatedSirenConfig,
    load_modulated,
    psnr,
    save_modulated,
)
from weightspace.signals.base import SignalDataset, signal_provenance
from weightspace.tasks.latent_diffusion import DiffusionResult, train_latent_diffusion
from weightspace.train import TrainConfig
from weightspace.zoo.store import Zoo
from weightspace.zoo.vectors import read_vectors, write_vector_zoo

MODEL_FILE = "functa.safetensors"


@dataclass
class FunctaResult:
    model: ModulatedSiren
    history: MetaHistory
    functaset: Zoo


def fit_functa(
    dataset: SignalDataset,
    out: str | Path,
    *,
    hidden: Sequence[int] = (64, 64, 64),
    latent_dim: int = 64,
    omega: float = 30.0,
    meta: MetaConfig | None = None,
    seed: int = 0,
    provenance: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> FunctaResult:
    """Meta-learn on ``dataset``'s training split; write ``out/functa.safetensors`` and the
    functaset of every signal (``out/functaset``) encoded with ``meta.inner_steps`` steps.
    ``device``: where the model is meta-learned and the signals encoded (the model is
    initialised on the CPU and moved there, so a seed gives the same start everywhere)."""
    meta = meta or MetaConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coords, values = dataset.coordinates(), dataset.targets()
    train = np.flatnonzero(np.asarray(dataset.split, dtype=object) == "train")
    if len(train) == 0:
        raise ValueError(f"{dataset.name}: no training signals to meta-learn on")
    config = ModulatedSirenConfig(coords.shape[1], values.shape[2], tuple(hidden), latent_dim, omega, seed=seed)
    model = ModulatedSiren(config).to(device)
    history = meta_train(model, coords, values[train], meta)
    save_modulated(model, out / MODEL_FILE)
    zoo = encode_functaset(
        model, dataset, out / "functaset", steps=meta.inner_steps, model_file=out / MODEL_FILE,
        provenance={"meta": meta.to_dict(), **(provenance or {})},
    )
    return FunctaResult(model, history, zoo)


def encode_functaset(
    model: ModulatedSiren,
    dataset: SignalDataset,
    out: str | Path,
    *,
    steps: int,
    model_file: str | Path | None = None,
    provenance: dict[str, Any] | None = None,
) -> Zoo:
    """Encode every signal of ``dataset`` with ``steps`` inner steps into a functaset at ``out``
    (on the model's device)."""
    coords, values = dataset.coordinates(), dataset.targets()
    latents = encode(model, values, steps, coords=coords)
    quality = psnr(reconstruct(model, latents, coords), values)
    columns = {
        "source_index": list(range(len(dataset))),
        "label": dataset.labels.tolist(),
        "split": list(dataset.split),
        "psnr": quality.tolist(),
    }
    return write_vector_zoo(
        out,
        latents,
        columns,
        provenance={
            "kind": "functa",
            "dataset": dataset.name,
            **signal_provenance(dataset),
            "model": model.config.to_dict(),
            "model_file": None if model_file is None else str(Path(model_file).resolve()),
            "inner_steps": steps,
            **(provenance or {}),
        },
    )


def model_of(functaset: Zoo, model_file: str | Path | None = None) -> ModulatedSiren:
    """The modulated SIREN that decodes a functaset (``model_file`` overrides the recorded one)."""
    path = model_file or functaset.provenance.get("model_file")
    if not path:
        raise ValueError(f"{functaset.path}: the functaset names no model file; pass one")
    return load_modulated(path)


def psnr_vs_inner_steps(model: ModulatedSiren, coords: Tensor, values: Tensor, steps: Sequence[int]) -> dict[int, float]:
    """Mean PSNR (dB, peak 1) of ``values`` ``[N, P, c]`` after each number of inner steps."""
    out = {}
    for k in steps:
        latents = encode(model, values, int(k), coords=coords)
        out[int(k)] = float(psnr(reconstruct(model, latents, coords), values).mean())
    return out


@dataclass
class Samples:
    latents: Tensor  # [S, d]
    signals: Tensor  # [S, P, c] in [0, 1]
    diffusion: DiffusionResult


def sample_signals(
    model: ModulatedSiren,
    train_latents: Tensor,
    coords: Tensor,
    n: int,
    *,
    val_latents: Tensor | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
) -> Samples:
    """Train a DDPM on ``train_latents`` ``[N, d]``, draw ``n`` latents, decode them at ``coords``."""
    config = config or TrainConfig(epochs=200, batch_size=128, lr=1e-3, weight_decay=0.0, progress=False)
    diffusion = train_latent_diffusion(train_latents, val_latents, config=TrainConfig(**{**config.__dict__, "seed": seed}))
    latents = diffusion.model.sample(n, generator=torch.Generator().manual_seed(seed))
    return Samples(latents, reconstruct(model, latents, coords), diffusion)


def functaset_latents(functaset: Zoo, split: str) -> Tensor:
    return read_vectors(functaset, split)[0]


__all__ = [
    "MODEL_FILE",
    "FunctaResult",
    "Samples",
    "encode_functaset",
    "fit_functa",
    "functaset_latents",
    "model_of",
    "psnr_vs_inner_steps",
    "sample_signals",
]
