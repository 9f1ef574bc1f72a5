"""Sampling new networks from a hyper-representation (after Schürholt et al. 2022, "S_KDE").

A kernel density estimate is fitted to the embeddings of good zoo models (the top
fraction by accuracy); samples from it are decoded to networks, which run at once (no
training) and can be fine-tuned. The bandwidth is chosen either by held-out likelihood of
the embeddings (``"cv"``) or by the accuracy of decoded samples on images other than the
test images (``"select"``: the widest bandwidth whose samples match the zoo's own models on
the zoo's training images), so that no choice looks at the test set. Networks are evaluated
by the population evaluator (`weightspace.zoo.population.evaluate_population`), which runs
the one functional forward (`weightspace.core.functional.forward`).

Devices: `sample_from_zoo` runs where the model is (or on its ``device``): embeddings,
decoding, evaluation and fine-tuning happen there, on images moved there once; the
sampled networks and every accuracy come back on the CPU. The KDE runs on the CPU
(scikit-learn), and every random draw comes from a CPU generator, so a seed draws the same
samples and batches on every device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from weightspace.core.functional import forward
from weightspace.core.spec import NetworkSpec
from weightspace.core.weights import Weights
from weightspace.models.hyperrep import HyperRepresentation
from weightspace.signals.images import ImageDataset, load_images
from weightspace.zoo.population import evaluate_population
from weightspace.zoo.search_space import spec_with_activation
from weightspace.zoo.store import Zoo


def select_good(table: pd.DataFrame, *, top_fraction: float = 0.3, column: str = "test_accuracy") -> np.ndarray:
    """Positions (into ``table``) of the rows in the top ``top_fraction`` by ``column``."""
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    if column not in table.columns:
        raise KeyError(f"no column {column!r} to rank models by; columns: {list(table.columns)}")
    values = table[column].to_numpy(dtype=float)
    return np.flatnonzero(values >= np.quantile(values, 1 - top_fraction))


_OPS = {">=": np.greater_equal, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal, ">": np.greater,
        "<": np.less}


@dataclass(frozen=True)
class Condition:
    """One ``column OP value`` test of a zoo table row (`parse_where`)."""

    column: str
    op: str
    value: float | str

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value}"

    def mask(self, table: pd.DataFrame) -> np.ndarray:
        return _OPS[self.op](table[self.column].to_numpy(), self.value)


def parse_where(where: str, table: pd.DataFrame) -> list[Condition]:
    """``"test_accuracy>=0.9, epoch==2"`` -> conditions that must all hold. Each is ``column``,
    one of ``>= <= == != > <`` and a value: a number for a numeric column, a word (e.g.
    ``activation==gelu``) for another. Raises ValueError naming what is wrong."""
    out = []
    for part in [p.strip() for p in where.split(",") if p.strip()]:
        op = next((o for o in _OPS if o in part), None)  # two-character operators come first
        if op is None:
            raise ValueError(f"condition {part!r}: expected column OP value with OP one of {' '.join(_OPS)}")
        column, value = (x.strip() for x in part.split(op, 1))
        if column not in table.columns:
            raise ValueError(f"condition {part!r}: no column {column!r}; columns: {', '.join(table.columns)}")
        if pd.api.types.is_numeric_dtype(table[column]):
            try:
                out.append(Condition(column, op, float(value)))
            except ValueError:
                raise ValueError(f"condition {part!r}: {column} is numeric, {value!r} is not a number") from None
        elif op in ("==", "!="):
            out.append(Condition(column, op, value))
        else:
            raise ValueError(f"condition {part!r}: {column} holds words; compare it with == or !=")
    if not out:
        raise ValueError("empty condition: give e.g. 'test_accuracy>=0.9' or 'epoch==2'")
    return out


def select_where(table: pd.DataFrame, where: str) -> np.ndarray:
    """Positions (into ``table``) of the rows meeting every condition of ``where`` (`parse_where`)."""
    conditions = parse_where(where, table)
    keep = np.ones(len(table), dtype=bool)
    for c in conditions:
        keep &= c.mask(table)
    if not keep.any():
        raise ValueError(f"no zoo model meets {' and '.join(map(str, conditions))}")
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class EmbeddingDensity:
    """A Gaussian KDE over per-dimension standardised embeddings (scikit-learn).

    Standardising first makes one bandwidth fit every dimension; ``bandwidth`` is in units
    of each dimension's standard deviation.
    """

    kde: object  # sklearn.neighbors.KernelDensity
    mean: np.ndarray
    std: np.ndarray
    bandwidth: float

    @classmethod
    def fit(cls, embeddings: Tensor, bandwidth: float | str = "cv", *, seed: int = 0) -> EmbeddingDensity:
        """``bandwidth``: a number, ``"scott"`` / ``"silverman"``, or ``"cv"`` (the one of a
        log grid with the best 5-fold held-out likelihood)."""
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.neighbors import KernelDensity

        if len(embeddings) < 5 and bandwidth == "cv":
            bandwidth = "scott"
        if len(embeddings) < 2:
            raise ValueError(f"a density needs at least 2 embeddings, got {len(embeddings)}")
        x = embeddings.double().cpu().numpy()
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-12
        u = (x - mean) / std
        if bandwidth == "cv":
            grid = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": np.logspace(-1.5, 0.5, 13)},
                                cv=KFold(5, shuffle=True, random_state=seed))
            kde = grid.fit(u).best_estimator_
        else:
            kde = KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(u)
        return cls(kde, mean, std, float(kde.bandwidth_))

    def sample(self, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` draws ``[n, E]`` in the original embedding units."""
        return torch.as_tensor(self.kde.sample(n, random_state=seed) * self.std + self.mean, dtype=dtype)


def sample_embeddings(embeddings: Tensor, n: int, *, bandwidth: float | str = "cv", seed: int = 0) -> Tensor:
    """``n`` draws ``[n, E]`` from a KDE of ``embeddings`` ``[M, E]`` (see `EmbeddingDensity`)."""
    return EmbeddingDensity.fit(embeddings, bandwidth, seed=seed).sample(n, seed=seed, dtype=embeddings.dtype)


SELECT_GRID = (1.0, 0.5, 0.25, 0.1)  # bandwidths "select" tries, in std units, widest first


def select_bandwidth(selection: dict[float, float], reference: float) -> float:
    """The widest bandwidth whose samples' mean accuracy reaches ``reference`` (the zoo's own
    models on the same images): samples as good as the zoo's, spread as far from the good
    models as that allows. When none reaches it, the most accurate (ties: the wider)."""
    good_enough = [bw for bw, acc in selection.items() if acc >= reference]
    if good_enough:
        return max(good_enough)
    return max(selection, key=lambda bw: (round(selection[bw], 6), bw))


def novelty(samples: Tensor, good: Tensor, density: EmbeddingDensity) -> Tensor:
    """How far each sampled embedding ``[n, E]`` lies from the nearest good embedding
    ``[M, E]``, in units of the median distance from a good embedding to its nearest other
    good embedding (both measured in the density's standardised coordinates): 0 is a copy of
    a zoo model, about 1 is as far as two neighbouring zoo models are apart. ``[n]``."""
    scale = torch.as_tensor(density.std, dtype=torch.float64)
    mean = torch.as_tensor(density.mean, dtype=torch.float64)
    u_s, u_g = (samples.double() - mean) / scale, (good.double() - mean) / scale
    d_good = torch.cdist(u_g, u_g)
    d_good.fill_diagonal_(float("inf"))
    return torch.cdist(u_s, u_g).min(dim=1).values / d_good.min(dim=1).values.median()


@torch.no_grad()
def decode_samples(model: HyperRepresentation, z: Tensor, spec: NetworkSpec | None = None) -> Weights:
    """Decode embeddings to raw networks; ``spec`` (same shapes, e.g. another activation)
    says how they run."""
    model.eval()
    w = model.decode(z.to(next(model.parameters()).device)).to("cpu")
    return w if spec is None else Weights(spec, w.weights, w.biases)


def zoo_images(zoo: Zoo, dataset: str | None = None, *, test_limit: int | None = None, seed: int = 0
               ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """((train images, labels), (test images, labels)) to evaluate and fine-tune the zoo's networks.

    A classifier zoo (`weightspace.zoo.train_zoo`) gets exactly the images it was trained and
    measured on (its provenance names them); otherwise ``dataset`` (default: the zoo's
    provenance ``dataset``) is loaded and its train / test splits used, with ``test_limit``
    test images (a seeded subset).
    """
    prov = zoo.provenance
    source = dataset or prov.get("dataset")
    if not source:
        raise ValueError(f"{zoo.path}: the zoo does not record its dataset; name one")
    if ":" in source and not Path(source).exists():  # a recorded name such as "mnist-idx:/data/mnist"
        source = source.split(":", 1)[1]
    data = load_images(source, seed=int(prov.get("seed", 0)))  # the zoo's own image split
    if dataset is None and prov.get("kind") == "classifiers":
        from weightspace.zoo.train_zoo import classifier_data

        d = classifier_data(data, prov["recipe"]["arch"], n_train=prov.get("n_train"), n_test=prov.get("n_test"),
                            seed=int(prov.get("seed", 0)))
        return (d.train_x, d.train_y), (d.test_x, d.test_y)
    return image_tensors(data, "train"), image_tensors(data, "test", test_limit, seed=seed)


def image_tensors(data: ImageDataset, split: str, limit: int | None = None, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Images ``[N, C, H, W]`` and labels ``[N]`` of one split; ``limit``: a seeded subset."""
    part = data.select_split(split)
    idx = torch.arange(len(part))
    if limit is not None and limit < len(part):
        idx = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))[:limit]
    return part.images[idx].permute(0, 3, 1, 2).contiguous(), part.labels[idx]


def accuracy(weights: Weights, images: Tensor, labels: Tensor, *, nets: int = 64) -> Tensor:
    """Top-1 accuracy ``[B]`` of every network of ``weights`` on ``images`` ``[N, C, H, W]``
    (the population evaluator, ``nets`` networks at a time, on the images' device; returned
    on the CPU)."""
    labels = labels.to(images.device)
    return torch.cat([
        evaluate_population(weights[i : i + nets].to(images.device), images, labels)[0].float().mean(dim=1).cpu()
        for i in range(0, len(weights), nets)
    ])


def random_networks(spec: NetworkSpec, n: int, *, seed: int = 0) -> Weights:
    """``n`` networks with PyTorch's default initialisation (seeds ``seed .. seed + n - 1``)."""
    return Weights.from_modules([spec.build_module(seed=seed + k) for k in range(n)], spec)


def fine_tune(
    weights: Weights,
    images: Tensor,
    labels: Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    eval_at: tuple[int, ...] = (),
    eval_data: tuple[Tensor, Tensor] | None = None,
) -> tuple[Weights, dict[int, Tensor]]:
    """Train every network of ``weights`` at once with Adam on cross-entropy for ``steps``
    mini-batches (the same seeded batches for all). Returns the trained weights and the
    accuracies ``[B]`` on ``eval_data`` after each step count in ``eval_at`` (0: before).

    A short vectorised population loop: the networks are independent (the loss is a sum
    of per-network losses), which the engine's one-model loop cannot express. Runs on the
    device of ``images``; the trained weights and the accuracies come back on the CPU.
    """
    if weights.channels != 1:
        raise ValueError(f"fine_tune needs raw weights (C = 1), got C = {weights.channels}")
    device = images.device
    labels = labels.to(device)
    params = [t[:, 0].detach().to(device).clone().requires_grad_(True) for t in weights.tensors()]

    def current() -> Weights:
        return Weights.from_tensors(weights.spec, params)

    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    curve: dict[int, Tensor] = {}
    if 0 in eval_at and eval_data is not None:
        curve[0] = accuracy(current().detach(), *eval_data)
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(images), (batch_size,), generator=gen).to(device)
        logits = forward(current(), images[idx])  # [B, batch, classes]
        loss = F.cross_entropy(logits.flatten(0, 1), labels[idx].repeat(len(weights)), reduction="sum") / batch_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in eval_at and eval_data is not None:
            curve[step] = accuracy(current().detach(), *eval_data)
    return current().detach().to("cpu"), curve


@dataclass
class SampleReport:
    """Accuracies ``[n]`` of each group on the same test images, and what they came from."""

    activation: str | None  # the hidden activation the sampled networks run with
    num_good: int  # zoo models the density was fitted to
    bandwidth: float  # of the KDE, in standard deviations of each embedding dimension
    bandwidth_rule: str  # how it was chosen: "cv", "select" or "fixed"
    zoo: Tensor  # table accuracies of every zoo model of the split
    good: Tensor  # table accuracies of the good models
    reconstructed: Tensor  # measured: good models encoded and decoded
    sampled: Tensor  # measured: decoded KDE samples, no training
    zoo_measured: Tensor  # measured here on the same images (checks the evaluation against the table)
    zoo_checked: Tensor  # table accuracies of those same models
    novelty: Tensor  # [n] distance of each sample to the nearest good model (see `novelty`)
    selection: dict[float, float] = field(default_factory=dict)  # "select": bandwidth -> mean accuracy on the selection images
    selection_reference: float | None = None  # "select": the zoo's models' mean accuracy on those images
    finetune: dict[str, dict[int, Tensor]] = field(default_factory=dict)  # group -> step -> accuracies
    samples: Weights | None = None
    where: str | None = None  # the requested property the good models were chosen by (None: top fraction)
    conditions: list[Condition] = field(default_factory=list)  # ``where`` parsed

    def achieved(self) -> dict[str, float]:
        """For each accuracy condition of ``where`` (the one property measurable on a sample
        without its training history): the fraction of samples meeting it, measured."""
        table = pd.DataFrame({"test_accuracy": self.sampled.double().numpy()})
        return {str(c): float(c.mask(table).mean()) for c in self.conditions if c.column == "test_accuracy"}

    def summary(self) -> dict:
        mean = lambda t: float(t.float().mean())
        out = {
            "activation": self.activation,
            "num_good": self.num_good,
            "bandwidth": self.bandwidth,
            "bandwidth_rule": self.bandwidth_rule,
            "selection": {str(k): v for k, v in self.selection.items()},
            "selection_reference": self.selection_reference,
            "novelty_median": float(self.novelty.median()),
            "novelty_min": float(self.novelty.min()),
            "zoo_mean": mean(self.zoo),
            "good_mean": mean(self.good),
            "reconstructed_mean": mean(self.reconstructed),
            "sampled_mean": mean(self.sampled),
            "sampled_over_zoo_mean": mean(self.sampled) / max(mean(self.zoo), 1e-12),
            "zoo_measured_mean": mean(self.zoo_measured),
            "zoo_checked_table_mean": mean(self.zoo_checked),
        }
        for group, curve in self.finetune.items():
            out[f"finetune_{group}"] = {int(s): mean(a) for s, a in curve.items()}
        q = lambda t: [float(v) for v in np.quantile(t.double().numpy(), (0.1, 0.5, 0.9))]
        out.update(where=self.where, good_quantiles=q(self.good), sampled_quantiles=q(self.sampled),
                   achieved=self.achieved())
        return out


def sample_from_zoo(
    model: HyperRepresentation,
    weights: Weights,
    table: pd.DataFrame,
    test: tuple[Tensor, Tensor],
    *,
    n: int = 64,
    top_fraction: float = 0.3,
    where: str | None = None,
    bandwidth: float | str = "cv",
    finetune_steps: int = 0,
    finetune_networks: int = 32,
    train: tuple[Tensor, Tensor] | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    check: int = 32,
    select: tuple[Tensor, Tensor] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> SampleReport:
    """Fit a KDE to the embeddings of the top ``top_fraction`` of ``weights`` (by the table's
    ``test_accuracy``), or of the models meeting ``where`` (a requested property, e.g.
    ``"test_accuracy>=0.9"`` or ``"epoch==2"``: `parse_where`), of one activation (the most
    common among them, where the table has an ``activation`` column); decode ``n`` samples and
    measure them on ``test`` (images, labels). The report's ``good`` are those models.

    ``bandwidth``: a number (std units), ``"cv"`` (held-out likelihood of the embeddings) or
    ``"select"``: each of `SELECT_GRID` is tried with ``n`` other samples (seed + 1) measured
    on ``select`` (images, labels; never the test images), and `select_bandwidth` keeps the
    widest whose samples are as accurate there as the zoo's own models of that activation.

    With ``finetune_steps``, ``finetune_networks`` samples and as many randomly initialised
    networks are trained for that many steps on ``train`` and measured along the way.

    ``device``: where to compute (the model is moved there); by default where the model is.
    """
    if device is not None:
        model.to(device)
    here = next(model.parameters()).device
    test, train, select = (None if d is None else (d[0].to(here), d[1].to(here)) for d in (test, train, select))
    good = select_where(table, where) if where else select_good(table, top_fraction=top_fraction)
    spec, activation = weights.spec, None
    if "activation" in table.columns:
        activation = str(table["activation"].iloc[good].mode().iloc[0])
        good = good[table["activation"].iloc[good].to_numpy() == activation]
        spec = spec_with_activation(spec, activation)
        zoo_rows = np.flatnonzero(table["activation"].to_numpy() == activation)
    else:
        zoo_rows = np.arange(len(table))
    good_w = _relabel(weights[torch.as_tensor(good)], spec)
    from weightspace.tasks.hyperrep import embed, reconstruct

    good_z = embed(model, good_w)
    selection: dict[float, float] = {}
    reference: float | None = None
    rule = bandwidth if isinstance(bandwidth, str) else "fixed"
    if bandwidth == "select":
        if select is None:
            raise ValueError('bandwidth="select" needs images to select on (select=(images, labels)), not the test images')
        for bw in SELECT_GRID:
            trial = EmbeddingDensity.fit(good_z, bw).sample(n, seed=seed + 1)
            selection[bw] = float(accuracy(decode_samples(model, trial, spec), *select).mean())
        # the bar: the zoo's own models (this activation, a seeded sample) on the same images
        ref_rows = np.random.default_rng(seed + 2).choice(zoo_rows, size=min(128, len(zoo_rows)), replace=False)
        reference = float(accuracy(_relabel(weights[torch.as_tensor(ref_rows)], spec), *select).mean())
        bandwidth = select_bandwidth(selection, reference)
    density = EmbeddingDensity.fit(good_z, bandwidth, seed=seed)
    z = density.sample(n, seed=seed)
    samples = decode_samples(model, z, spec)
    rng = np.random.default_rng(seed)
    checked = rng.choice(zoo_rows, size=min(check, len(zoo_rows)), replace=False)
    acc = table["test_accuracy"].to_numpy(dtype=float).copy()
    report = SampleReport(
        activation=activation,
        num_good=len(good),
        bandwidth=density.bandwidth,
        bandwidth_rule=rule,
        zoo=torch.as_tensor(acc),
        good=torch.as_tensor(acc[good]),
        reconstructed=accuracy(_relabel(reconstruct(model, good_w), spec), *test),
        sampled=accuracy(samples, *test),
        zoo_measured=accuracy(_relabel(weights[torch.as_tensor(checked)], spec), *test),
        zoo_checked=torch.as_tensor(acc[checked]),
        novelty=novelty(z, good_z, density),
        selection=selection,
        selection_reference=reference,
        samples=samples,
        where=where,
        conditions=parse_where(where, table) if where else [],
    )
    if finetune_steps > 0:
        if train is None:
            raise ValueError("fine-tuning needs training images (train=(images, labels))")
        k = min(finetune_networks, n)
        eval_at = tuple(sorted({0, max(1, finetune_steps // 10), max(1, finetune_steps // 3), finetune_steps}))
        groups = {"sampled": samples[:k], "random_init": random_networks(spec, k, seed=seed)}
        for name, nets in groups.items():
            _, report.finetune[name] = fine_tune(nets, *train, steps=finetune_steps, batch_size=batch_size, lr=lr,
                                                 seed=seed, eval_at=eval_at, eval_data=test)
    return report


def _relabel(w: Weights, spec: NetworkSpec) -> Weights:
    """The same tensors under ``spec`` (same shapes; e.g. another activation)."""
    return Weights(spec, w.weights, w.biases)
