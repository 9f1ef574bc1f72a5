"""Hypernetwork INRs end to end: fit on a signal dataset, encode the rest, write two zoos.

`fit_dataset` auto-decodes the training split (`inr.hyper.fit_hyperinr`), then encodes the
validation and test signals with the hypernetwork fixed, so no held-out signal shaped the
shared network. `encode_dataset` does the second half with a stored model. Both write,
under ``out``:

- ``codes/``: a vector zoo (`zoo.vectors`) of the codes, ``kind = "hyperinr-codes"``;
- ``weights/``: a SIREN zoo of the generated INR weights (``kind = "inr"``, the recipe's
  decode path recorded), so `weightspace train`, `zoo render` and every registry model
  apply to them as to independently fitted INRs.

Both tables hold ``source_index``, ``label``, ``split`` and ``psnr`` (dB, recipe range).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightspace.core.weights import Weights
from weightspace.inr.hyper import HyperINR, HyperINRConfig, encode_codes, fit_hyperinr, save_hyperinr
from weightspace.signals.base import SignalDataset, signal_provenance
from weightspace.zoo.store import Zoo, ZooWriter
from weightspace.zoo.vectors import write_vector_zoo

MODEL_FILE = "hyperinr.safetensors"


@dataclass
class HyperINRResult:
    model: HyperINR
    codes: Tensor  # [N, code_dim], dataset order
    psnr: Tensor  # [N] dB
    codes_zoo: Zoo
    weights_zoo: Zoo
    fit_history: list[float]


def _split_mask(dataset: SignalDataset, name: str) -> np.ndarray:
    return np.asarray(dataset.split, dtype=object) == name


def fit_dataset(
    dataset: SignalDataset,
    out: str | Path,
    config: HyperINRConfig | None = None,
    *,
    seed: int = 0,
    progress: bool = False,
    provenance: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> HyperINRResult:
    """Fit a HyperINR on ``dataset``'s training split and write model + zoos under ``out``;
    ``device``: where the hypernetwork is fitted and the other splits encoded."""
    config = config or HyperINRConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coords, values = dataset.coordinates(), dataset.targets()
    train = np.flatnonzero(_split_mask(dataset, "train"))
    if len(train) == 0:
        raise ValueError(f"{dataset.name}: no training signals to fit a HyperINR on")
    fit = fit_hyperinr(coords, values[train], config, seed=seed, progress=progress, device=device)
    codes = torch.zeros(len(dataset), config.code_dim)
    psnr = torch.zeros(len(dataset))
    codes[train], psnr[train] = fit.codes, fit.psnr
    rest = np.flatnonzero(~_split_mask(dataset, "train"))
    if len(rest):
        codes[rest], psnr[rest] = encode_codes(fit.model, coords, values[rest], seed=seed, progress=progress)
    meta = {"dataset": dataset.name, "seed": seed, **(provenance or {})}
    save_hyperinr(out / MODEL_FILE, fit.model, meta)
    codes_zoo, weights_zoo = write_zoos(out, fit.model, codes, psnr, dataset, meta)
    return HyperINRResult(fit.model, codes, psnr, codes_zoo, weights_zoo, fit.history)


def encode_dataset(
    model: HyperINR,
    dataset: SignalDataset,
    out: str | Path,
    *,
    steps: int | None = None,
    seed: int = 0,
    progress: bool = False,
    provenance: dict[str, Any] | None = None,
) -> HyperINRResult:
    """Encode every signal of ``dataset`` with ``model`` fixed (on the model's device); write
    the zoos under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coords, values = dataset.coordinates(), dataset.targets()
    if coords.shape[1] != model.in_features or values.shape[2] != model.out_features:
        raise ValueError(
            f"{dataset.name}: signals map {coords.shape[1]} -> {values.shape[2]} values, "
            f"the model {model.in_features} -> {model.out_features}"
        )
    codes, psnr = encode_codes(model, coords, values, steps=steps, seed=seed, progress=progress)
    codes_zoo, weights_zoo = write_zoos(out, model, codes, psnr, dataset, {"dataset": dataset.name, **(provenance or {})})
    return HyperINRResult(model, codes, psnr, codes_zoo, weights_zoo, [])


@torch.no_grad()
def generated_weights(model: HyperINR, codes: Tensor) -> Weights:
    """The SIREN `Weights` ``[N, 1, ...]`` that ``codes`` ``[N, d]`` generate (on the CPU)."""
    return model(codes.to(next(model.parameters()).device)).detach().to("cpu")


def write_zoos(
    out: Path, model: HyperINR, codes: Tensor, psnr: Tensor, dataset: SignalDataset, meta: dict[str, Any], shard_size: int = 1024
) -> tuple[Zoo, Zoo]:
    n = len(dataset)
    columns = {
        "source_index": list(range(n)),
        "label": dataset.labels.tolist(),
        "split": list(dataset.split),
        "psnr": psnr.tolist(),
    }
    common = {
        "dataset": dataset.name,
        **signal_provenance(dataset),
        "hyperinr_config": model.config.to_dict(),
        "model_file": str((out / MODEL_FILE).resolve()),
        **{k: v for k, v in meta.items() if k != "dataset"},
    }
    codes_zoo = write_vector_zoo(out / "codes", codes, columns, provenance={"kind": "hyperinr-codes", **common})
    writer = ZooWriter(
        out / "weights",
        model.spec,
        shard_size=shard_size,
        num_networks=n,
        provenance={"kind": "inr", "generator": "hyperinr", "recipe": model.recipe.to_dict(), **common},
    )
    for k, start in enumerate(range(0, n, shard_size)):
        stop = min(n, start + shard_size)
        writer.write_shard(k, generated_weights(model, codes[start:stop]), {c: v[start:stop] for c, v in columns.items()})
    return codes_zoo, writer.finalize()


__all__ = ["MODEL_FILE", "HyperINRResult", "encode_dataset", "fit_dataset", "generated_weights", "write_zoos"]
