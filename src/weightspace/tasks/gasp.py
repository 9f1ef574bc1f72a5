"""Training GASP (`inr.gasp`) on a signal dataset, sampling it, and judging its samples.

Training follows the reference's `Trainer` (neural-function-distributions,
training/training.py): features scaled to [-1, 1]; each step draws a batch of real signals
(optionally a random subset of their points, the same for the batch), trains the
discriminator on them against generated signals at the same coordinates — binary cross
entropy plus the R1 penalty ``0.5 * r1 * E||grad_features D(real)||^2`` — and then the
generator (the hypernetwork only; the Fourier matrix is fixed) on freshly drawn latents to
make the discriminator say "real". Adam with betas (0.5, 0.999) for both. A GAN has two
optimisers stepping in turn, which the one-model engine (`weightspace.train`) does not
express; this loop is the only one of its kind.

Judging samples without a download (`sample_quality`): a classifier fitted on the real
training signals (logistic regression on the values) labels each sample; reported are its
mean confidence, how evenly the samples spread over the classes (the entropy of the
predicted-class histogram over log K: 1 is uniform, 0 one class) and how many classes
appear, plus each sample's RMS distance to its nearest training signal (0 would be a copy)
beside the same distance of real held-out signals. The same numbers for real test signals
are the reference row.

Presets (`PRESETS`): ``gasp-mnist`` (28x28 images) and ``gasp-shapes`` (16^3 occupancy
grids) are the paper's models: the generator of the paper's configurations (function representation 128-128-128,
latent 64, hypernetwork 256-512; Fourier features 128 at std 2 for images, none for voxels,
as the reference's CelebA-HQ 64 and ShapeNet voxel configs), and the PointConv discriminator
of those configs with its point counts scaled to 784 pixels (images; the voxel config's
4,096 points are a 16^3 grid already). Learning rates are the configs' (1e-4 / 4e-4 images,
2e-5 / 8e-5 voxels), R1 weight 10. ``gasp-mnist``'s hypernetwork has 34M parameters (its
last layer emits the 66k function weights); ``gasp-mnist-cpu`` and ``gasp-shapes-cpu`` are
smaller variants under their own names (benchmarks/gasp.py records their sizes and step times);
``gasp-shapes-cpu`` also trains at the image rates (its comment says why).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from weightspace._progress import disabled
from weightspace.inr.gasp import GaspConfig, GaspGenerator, PointConvDiscriminator, PointConvLayer
from weightspace.tasks.generate import nearest_neighbours


def _pc(m: int, k: int, out: int | None = None) -> PointConvLayer:
    return PointConvLayer(num_output_points=m, num_neighbors=k, out_channels=out)


PRESETS: dict[str, dict[str, Any]] = {
    "gasp-mnist": {
        "model": {"hidden": (128, 128, 128), "latent_dim": 64, "hyper_hidden": (256, 512), "frequencies": 128,
                  "frequency_std": 2.0,
                  "disc": (_pc(784, 9, 64), _pc(196, 9), _pc(196, 9, 128), _pc(49, 9), _pc(49, 9, 256), _pc(16, 9),
                           _pc(1, 16, 1))},
        "train": {"lr": 1e-4, "lr_disc": 4e-4, "r1_weight": 10.0},
    },
    "gasp-shapes": {
        "model": {"hidden": (128, 128, 128), "latent_dim": 64, "hyper_hidden": (256, 512), "frequencies": 0,
                  "frequency_std": 0.0,
                  "disc": (_pc(4096, 8, 32), _pc(4096, 27, 64), _pc(512, 27), _pc(512, 27, 128), _pc(64, 27),
                           _pc(64, 27, 256), _pc(8, 27), _pc(1, 8, 1))},
        "train": {"lr": 2e-5, "lr_disc": 8e-5, "r1_weight": 10.0},
    },
    # sized for a 2-core CPU (not the paper's): function representation 64-64-64 on 64 Fourier
    # frequencies, hypernetwork 128-256 (4.3M parameters, not 34M), the discriminator's
    # channels halved (32-64-128); same losses, rates and R1 weight
    "gasp-mnist-cpu": {
        "model": {"hidden": (64, 64, 64), "latent_dim": 64, "hyper_hidden": (128, 256), "frequencies": 64,
                  "frequency_std": 2.0,
                  "disc": (_pc(784, 9, 32), _pc(196, 9), _pc(196, 9, 64), _pc(49, 9), _pc(49, 9, 128), _pc(16, 9),
                           _pc(1, 16, 1))},
        "train": {"lr": 1e-4, "lr_disc": 4e-4, "r1_weight": 10.0},
    },
    # 12^3 grids (1,728 points): the voxel discriminator's structure with a 27-neighbour
    # first stage, channels 16-32-64-128, and the generator of gasp-mnist-cpu without
    # Fourier features (as the voxel config). Rates of the image configs, not the voxel
    # config's 2e-5 / 8e-5: at those, 400 steps left the generator's fields grey and the
    # discriminator certain (the voxel config trains ~270k steps; a CPU run has a few thousand)
    "gasp-shapes-cpu": {
        "model": {"hidden": (64, 64, 64), "latent_dim": 64, "hyper_hidden": (128, 256), "frequencies": 0,
                  "frequency_std": 0.0,
                  "disc": (_pc(1728, 8, 16), _pc(1728, 27, 32), _pc(216, 27), _pc(216, 27, 64), _pc(27, 27),
                           _pc(27, 27, 128), _pc(1, 27, 1))},
        "train": {"lr": 1e-4, "lr_disc": 4e-4, "r1_weight": 10.0},
    },
}


@dataclass(frozen=True)
class GaspTrainConfig:
    """steps: discriminator + generator updates; batch_size: real signals per step;
    max_points: a random subset of each signal's points per step (None: all); lr / lr_disc:
    Adam rates of the generator / discriminator; r1_weight: the R1 penalty's weight."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-4
    lr_disc: float = 4e-4
    betas: tuple[float, float] = (0.5, 0.999)
    r1_weight: float = 10.0
    max_points: int | None = None
    seed: int = 0
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GaspResult:
    generator: GaspGenerator
    discriminator: PointConvDiscriminator
    history: dict[str, list[float]] = field(default_factory=dict)  # per step: generator, discriminator, r1
    seconds: float = 0.0


def preset(name: str, in_features: int, out_features: int, *, seed: int = 0, **train: Any) -> tuple[GaspConfig, GaspTrainConfig]:
    """The model and training configuration of a preset (``train`` overrides training fields)."""
    if name not in PRESETS:
        raise ValueError(f"unknown GASP preset {name!r}; expected one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    return (GaspConfig(in_features, out_features, seed=seed, **p["model"]),
            GaspTrainConfig(**{**p["train"], "seed": seed, **train}))


def r1_penalty(prob_real: Tensor, real: Tensor) -> Tensor:
    """Mean over the batch of ``||d sum(D) / d real_b||^2`` (summed over points and channels)."""
    (grad,) = torch.autograd.grad(prob_real.sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2)).mean()


def train_gasp(coords: Tensor, values: Tensor, model: GaspConfig, config: GaspTrainConfig = GaspTrainConfig(), *,
               device: str | torch.device = "cpu") -> GaspResult:
    """Train GASP on signals ``values`` ``[N, P, c]`` in [0, 1] at ``coords`` ``[P, d]``."""
    n, p, c = values.shape
    if coords.shape != (p, model.in_features) or c != model.out_features:
        raise ValueError(f"values [N, {p}, {c}] at coords {list(coords.shape)} do not fit a GASP of "
                         f"{model.in_features} -> {model.out_features}")
    points = config.max_points or p
    if model.disc[0].num_output_points > points:
        raise ValueError(f"the discriminator's first layer takes {model.disc[0].num_output_points} points; "
                         f"each step shows it {points}")
    if not torch.isfinite(values).all():
        raise ValueError("values hold NaN or infinite entries")
    g = torch.Generator().manual_seed(config.seed)
    generator, discriminator = GaspGenerator(model).to(device), PointConvDiscriminator(model).to(device)
    opt_g = torch.optim.Adam(generator.hypernetwork.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_disc, betas=config.betas)
    features, coords = (values * 2 - 1).float(), coords.float()
    history: dict[str, list[float]] = {"generator": [], "discriminator": [], "r1": [], "d_real": [], "d_fake": []}
    start = time.perf_counter()
    bar = tqdm(range(config.steps), disable=disabled(config.progress), desc="gasp", leave=False)
    for _ in bar:
        idx = torch.randint(0, n, (config.batch_size,), generator=g)
        subset = torch.randperm(p, generator=g)[:points] if points < p else torch.arange(p)
        xy = coords[subset].to(device)
        real = features[idx][:, subset].to(device).requires_grad_(config.r1_weight > 0)
        z = torch.randn(config.batch_size, model.latent_dim, generator=g).to(device)
        # discriminator step
        fake = generator.render(z, xy).detach()
        logit_real, logit_fake = discriminator.logits(xy, real), discriminator.logits(xy, fake)
        prob_real, prob_fake = torch.sigmoid(logit_real), torch.sigmoid(logit_fake)
        # the reference's BCELoss on probabilities, computed from logits: equal in value, but
        # its gradient survives a saturated sigmoid (float32 rounds sigmoid(17) to 1.0)
        d_loss = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real)) + \
            F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
        r1 = r1_penalty(prob_real, real) if config.r1_weight > 0 else torch.zeros((), device=device)
        opt_d.zero_grad(set_to_none=True)
        (d_loss + 0.5 * config.r1_weight * r1).backward()
        opt_d.step()
        # generator step, on fresh latents
        z = torch.randn(config.batch_size, model.latent_dim, generator=g).to(device)
        logit = discriminator.logits(xy, generator.render(z, xy))
        g_loss = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for key, v in (("generator", g_loss), ("discriminator", d_loss), ("r1", r1), ("d_real", prob_real.mean()),
                       ("d_fake", prob_fake.mean())):
            history[key].append(float(v.detach()))
        bar.set_postfix(g=f"{history['generator'][-1]:.2f}", d=f"{history['discriminator'][-1]:.2f}")
    for name, series in history.items():
        if not all(math.isfinite(v) for v in series):
            raise ValueError(f"GASP training diverged: non-finite {name} loss")
    return GaspResult(generator.eval(), discriminator.eval(), history, time.perf_counter() - start)


@torch.no_grad()
def sample_signals(generator: GaspGenerator, n: int, coords: Tensor, *, seed: int = 0, batch_size: int = 64) -> Tensor:
    """``n`` samples rendered at ``coords`` ``[P, d]`` (any resolution): values in [0, 1] ``[n, P, c]``."""
    g = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    out = []
    for s in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - s), generator.latent_dim, generator=g).to(device)
        out.append(((generator.render(z, coords.to(device)) + 1) / 2).clamp(0, 1).cpu())
    return torch.cat(out) if out else torch.zeros(0, coords.shape[0], generator.config.out_features)


@dataclass
class Judge:
    """A classifier of real signals (logistic regression on their values) and the training
    signals, to judge samples by."""

    classifier: Any
    train: Tensor
    classes: int
    test_accuracy: float

    @classmethod
    def fit(cls, train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor, *, seed: int = 0) -> Judge:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=1000, C=1.0, random_state=seed)
        clf.fit(train.flatten(1).numpy(), train_labels.numpy())
        acc = float(clf.score(test.flatten(1).numpy(), test_labels.numpy()))
        return cls(clf, train, int(train_labels.max()) + 1, acc)

    def judge(self, signals: Tensor) -> dict[str, float]:
        """Confidence, class spread, classes present and nearest-training-signal RMS of ``signals``."""
        prob = self.classifier.predict_proba(signals.flatten(1).numpy())
        pred = self.classifier.classes_[prob.argmax(1)]  # columns are the classes seen in training
        hist = np.bincount(pred, minlength=self.classes) / max(len(pred), 1)
        nz = hist[hist > 0]
        _, nn = nearest_neighbours(signals, self.train)
        return {"confidence": float(prob.max(1).mean()),
                "class_spread": max(0.0, float(-(nz * np.log(nz)).sum() / math.log(self.classes))),
                "classes_present": int((hist > 0).sum()), "nn_rms_median": float(nn.median()),
                "nn_rms_min": float(nn.min())}


def train_preset(name: str, dataset: Any, *, steps: int | None = None, batch_size: int | None = None,
                 max_points: int | None = None, seed: int = 0, progress: bool = True,
                 device: str | torch.device = "cpu") -> tuple[GaspResult, GaspConfig, GaspTrainConfig]:
    """Train preset ``name`` on the training split of a signal dataset."""
    coords, values = dataset.coordinates(), dataset.targets()
    train = np.flatnonzero(np.asarray(dataset.split) == "train")
    if len(train) == 0:
        raise ValueError(f"{dataset.name}: no training signals")
    overrides = {k: v for k, v in {"steps": steps, "batch_size": batch_size, "max_points": max_points}.items() if v}
    model, config = preset(name, coords.shape[1], values.shape[2], seed=seed, progress=progress, **overrides)
    if model.disc[0].num_output_points > (config.max_points or coords.shape[0]):
        # the preset's first layer is sized for its dataset; keep every shown point a centre
        model = replace(model, disc=(replace(model.disc[0], num_output_points=config.max_points or coords.shape[0]),
                                     *model.disc[1:]))
    return train_gasp(coords, values[train], model, config, device=device), model, config


__all__ = ["GaspResult", "GaspTrainConfig", "Judge", "PRESETS", "preset", "r1_penalty", "sample_signals",
           "train_gasp", "train_preset"]
