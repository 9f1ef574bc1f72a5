"""Property probes: how much of a network's accuracy, training epoch, generalisation gap
and hyperparameters can be read off a fixed feature vector of its weights.

Features: the hyper-representation embedding (`weightspace.tasks.hyperrep.embed`) and,
as the baseline, StatNN's weight statistics (`weightspace.models.statnn.weight_statistics`),
both computed on the same zoo split. Probes (scikit-learn, features standardised on the
train split): a linear one (ridge regression / logistic regression) and a small MLP.
Continuous targets are scored by R² on the test split, categorical ones (e.g. activation,
optimiser) by accuracy beside the majority-class rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from weightspace.core.weights import Weights
from weightspace.models.statnn import weight_statistics

CONTINUOUS = ("test_accuracy", "epoch", "gap", "lr", "weight_decay", "dropout", "train_fraction")
CATEGORICAL = ("activation", "optimizer", "init")
# Feature sets, in table order, with their column labels.
LABELS = {"hyperrep": "hyper-rep (flat)", "hyperrep_pooled": "hyper-rep (layer-pooled)", "statnn": "StatNN"}
# The flat embedding (one latent per neuron token: ~1,900 values for the small CNN) is projected
# on its 128 leading principal components; the layer-pooled readout (256) and StatNN (56) are
# probed whole. A probe on thousands of dimensions is slow and overfits a zoo of a few thousand.
PROBE_MAX_DIM: dict[str, int | None] = {"hyperrep": 128, "hyperrep_pooled": None, "statnn": None}


def statnn_features(weights: Weights, batch_size: int = 1024) -> np.ndarray:
    """StatNN's statistics ``[N, 7 * tensors]`` as a float64 array."""
    return torch.cat([weight_statistics(weights[i : i + batch_size]) for i in range(0, len(weights), batch_size)]).double().numpy()


def _log_scaled(values: np.ndarray) -> bool:
    """Hyperparameters spread over orders of magnitude (learning rate) are probed in log10."""
    return bool(np.all(values > 0) and values.max() / values.min() > 100)


@dataclass(frozen=True)
class ProbeResult:
    features: str  # a key of LABELS
    probe: str  # "linear" | "mlp"
    target: str
    metric: str  # "r2" | "accuracy"
    value: float
    baseline: float  # R²: 0 (predicting the mean); accuracy: the majority-class rate

    def row(self) -> dict:
        return dict(self.__dict__)


def probe_targets(table: pd.DataFrame, targets: tuple[str, ...] | None = None) -> list[str]:
    """The probe targets this table has and that vary (of CONTINUOUS + CATEGORICAL)."""
    wanted = targets or CONTINUOUS + CATEGORICAL
    missing = [t for t in (targets or ()) if t not in table.columns]
    if missing:
        raise KeyError(f"no column(s) {missing} in the zoo table; columns: {list(table.columns)}")
    return [t for t in wanted if t in table.columns and table[t].nunique() > 1]


def run_probes(
    features: dict[str, dict[str, np.ndarray]],
    tables: dict[str, pd.DataFrame],
    targets: list[str],
    *,
    probes: tuple[str, ...] = ("linear", "mlp"),
    max_dim: int | None | Mapping[str, int | None] = 128,
    seed: int = 0,
) -> list[ProbeResult]:
    """Fit every probe on ``features[name]["train"]`` and score on ``["test"]``.

    features: ``{feature set: {"train": [N_tr, D], "test": [N_te, D]}}``;
    tables: ``{"train": DataFrame, "test": DataFrame}`` with the target columns.
    Feature sets wider than ``max_dim`` are first projected on their ``max_dim`` leading
    principal components (fitted on the train split): probes on thousands of dimensions
    are slow and overfit a small zoo. ``max_dim`` is one bound for every feature set or a
    mapping from feature-set name to its bound (None: probed whole; absent names: whole),
    e.g. `PROBE_MAX_DIM`.
    """
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bound = (lambda name: max_dim.get(name)) if isinstance(max_dim, Mapping) else (lambda name: max_dim)
    features = {name: _reduce(f, bound(name), seed) for name, f in features.items()}
    out: list[ProbeResult] = []
    for target in targets:
        categorical = target in CATEGORICAL or not pd.api.types.is_numeric_dtype(tables["train"][target])
        y_tr, y_te = tables["train"][target].to_numpy(), tables["test"][target].to_numpy()
        if not categorical:
            y_tr, y_te = y_tr.astype(float), y_te.astype(float)
            if _log_scaled(np.concatenate([y_tr, y_te])):
                y_tr, y_te = np.log10(y_tr), np.log10(y_te)
        for name, feats in features.items():
            for kind in probes:
                if categorical:
                    head = (LogisticRegression(max_iter=2000) if kind == "linear"
                            else MLPClassifier(hidden_layer_sizes=(64,), alpha=1.0, max_iter=1000, early_stopping=True,
                                               random_state=seed))
                else:
                    # the MLP sees a standardised target and a weight penalty: the zoos are small
                    head = (RidgeCV(alphas=np.logspace(-3, 3, 13)) if kind == "linear"
                            else TransformedTargetRegressor(
                                MLPRegressor(hidden_layer_sizes=(64,), alpha=1.0, max_iter=1000, early_stopping=True,
                                             random_state=seed), transformer=StandardScaler()))
                model = make_pipeline(StandardScaler(), head).fit(feats["train"], y_tr)
                pred = model.predict(feats["test"])
                if categorical:
                    values, counts = np.unique(y_tr, return_counts=True)
                    majority = float(np.mean(y_te == values[np.argmax(counts)]))
                    out.append(ProbeResult(name, kind, target, "accuracy", float(accuracy_score(y_te, pred)), majority))
                else:
                    out.append(ProbeResult(name, kind, target, "r2", float(r2_score(y_te, pred)), 0.0))
    return out


def _reduce(feats: dict[str, np.ndarray], max_dim: int | None, seed: int) -> dict[str, np.ndarray]:
    if max_dim is None or feats["train"].shape[1] <= max_dim:
        return feats
    from sklearn.decomposition import PCA

    # a zoo with fewer train networks than max_dim has at most that many components
    pca = PCA(min(max_dim, len(feats["train"])), random_state=seed).fit(feats["train"])
    return {split: pca.transform(x) for split, x in feats.items()}


def probe_table(results: list[ProbeResult]) -> str:
    """Markdown: one row per target and probe, one column per feature set (`LABELS` order);
    the best value of a row in bold."""
    sets = sorted({r.features for r in results}, key=lambda f: (list(LABELS).index(f) if f in LABELS else len(LABELS), f))
    by = {(r.target, r.probe, r.features): r for r in results}
    rows = ["| target | metric | probe | " + " | ".join(LABELS.get(f, f) for f in sets) + " | baseline |",
            "|---|---|---|" + "---:|" * len(sets) + "---:|"]
    for target, probe in dict.fromkeys((r.target, r.probe) for r in results):
        found = [by.get((target, probe, f)) for f in sets]
        ref = next(r for r in found if r is not None)
        best = max(r.value for r in found if r is not None)
        cell = lambda r: "–" if r is None else (f"**{r.value:.3f}**" if r.value == best else f"{r.value:.3f}")
        rows.append(f"| {target} | {ref.metric} | {probe} | " + " | ".join(cell(r) for r in found) + f" | {ref.baseline:.3f} |")
    return "\n".join(rows)


def split_features(model, weights: dict[str, Weights], *, device: str | torch.device | None = None
                   ) -> dict[str, dict[str, np.ndarray]]:
    """``{"hyperrep": {split: [N, E]}, "hyperrep_pooled": {split: [N, P]}, "statnn": {split: [N, D]}}``
    for every split given (``hyperrep_pooled``, the layer-pooled readout, for models with one
    latent per neuron token only).

    The embeddings are computed where the model is, or on ``device`` if given (the model is
    moved there); the statistics on the CPU."""
    from weightspace.tasks.hyperrep import embed

    if device is not None:
        model.to(device)
    out = {"hyperrep": {s: embed(model, w).double().numpy() for s, w in weights.items()}}
    if not model.config.latent_tokens:
        out["hyperrep_pooled"] = {s: embed(model, w, readout="pooled").double().numpy() for s, w in weights.items()}
    out["statnn"] = {s: statnn_features(w) for s, w in weights.items()}
    return out
