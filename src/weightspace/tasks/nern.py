"""NeRN: store a trained CNN as a small predictor of its 3x3 kernels, and reconstruct it.

After Ashkenazi et al. (ICLR 2023). Fitting (:func:`fit_nern`):

1. reorder the CNN's channels (function-preserving, :mod:`weightspace.tasks.nern_reorder`)
   so neighbouring kernel coordinates hold similar kernels;
2. train a :class:`KernelPredictor` with the one training engine on the task
   :class:`NeRNTask`: weight reconstruction on kernels sampled by magnitude (alone for
   ``warmup_epochs``: cheap steps), then also distillation from the (reordered) original
   into the rebuilt network — KL on the logits and a normalised MSE on feature maps — on
   batches of training images;
3. keep the epoch whose rebuilt network has the best validation accuracy.

Layers the predictor does not cover (1x1 shortcuts, BN, the dense layer) are stored as
they are, except BN running statistics, which are re-measured for the rebuilt kernels on
a few hundred training images (see :class:`NeRNTask`). The file (:func:`save_nern`) is
safetensors: the predictor's tensors under ``predictor.``, the kept tensors under
``kept.``, and JSON metadata (architecture, kernel layout, predictor and encoding config,
the reorder permutations, accuracies). Reconstruction (:func:`reconstruct`) undoes the
permutations by default, so the result matches the original network key by key and
channel by channel; the permutations are optional (the reordered network computes the
same function) and are not counted in the predictor's size.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.signals.images import ImageDataset
from weightspace.tasks.nern_predictor import KernelLayout, KernelPredictor, PredictorConfig, count_parameters
from weightspace.tasks.nern_reorder import (
    Permutations,
    ReorderReport,
    invert,
    layer_scales,
    permute_state_dict,
    reorder,
    smoothness,
)
from weightspace.train import TrainConfig, fit
from weightspace.zoo.reference_cnns import (
    CNNConfig,
    ModelFileError,
    build_cnn,
    channel_groups,
    feature_modules,
    kernel_keys,
    load_state_dict_checked,
    num_parameters,
    read_safetensors,
)
from weightspace.zoo.train_cnn import ImageBatches

FILE_FORMAT = "weightspace.nern"
FILE_VERSION = 1


@dataclass(frozen=True)
class NeRNConfig:
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    reorder: bool = True  # function-preserving channel reordering for smoothness
    recon_weight: float = 1.0  # MSE on normalised kernels
    kd_weight: float = 1.0  # KL between original and reconstructed logits (0 = off)
    feature_weight: float = 1.0  # normalised MSE between feature maps (0 = off)
    temperature: float = 2.0  # of the logit distillation
    recalibrate_bn: bool = True  # see `NeRNTask`; no effect on networks without batch norm
    calibration_images: int = 500  # training images (a seeded sample) that set the rebuilt BN statistics
    kernels_per_step: int = 8192  # kernels in the reconstruction loss of one step
    sampling: str = "magnitude"  # "magnitude" (probability ~ kernel norm) or "uniform"
    warmup_epochs: int = 20  # reconstruction-only epochs first: cheap steps that give distillation a start
    epochs: int = 10  # then epochs with all losses (one step per batch of training images)
    ramp_epochs: float = 1.0  # distillation weights rise linearly from 0 over this many epochs
    batch_size: int = 64
    lr: float = 1e-2
    seed: int = 0
    progress: bool = True
    accelerator: str = "auto"  # the engine's: a GPU when there is one

    def __post_init__(self) -> None:
        if self.sampling not in ("magnitude", "uniform"):
            raise ValueError(f"sampling must be 'magnitude' or 'uniform', got {self.sampling!r}")
        if min(self.recon_weight, self.kd_weight, self.feature_weight) < 0:
            raise ValueError("loss weights must be >= 0")

    @property
    def distils(self) -> bool:
        return self.kd_weight > 0 or self.feature_weight > 0


def _batch_norms(module: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@contextmanager
def _bn_batch_statistics(module: nn.Module, momentum: float) -> Iterator[None]:
    """Run ``module``'s BN layers on batch statistics; ``momentum`` 0 leaves the running
    statistics as they are, 1 overwrites them with the batch's."""
    bns = _batch_norms(module).values()
    saved = [m.momentum for m in bns]
    try:
        for m in bns:
            m.train()
            m.momentum = momentum
        yield
    finally:
        for m, value in zip(bns, saved):
            m.eval()
            m.momentum = value


def calibrate_bn(template: nn.Module, params: dict[str, Tensor], images: Tensor) -> dict[str, Tensor]:
    """BN running statistics (``{key: [C]}``) of ``template`` with ``params`` swapped in,
    measured on ``images`` ``[M, C, H, W]`` in one batch."""
    stats = {f"{name}.{b}": getattr(m, b).clone() for name, m in _batch_norms(template).items()
             for b in ("running_mean", "running_var")}
    if stats:
        # functional_call writes BN's in-place running-statistics update into these clones.
        with torch.no_grad(), _bn_batch_statistics(template, momentum=1.0):
            torch.func.functional_call(template, {**params, **stats}, (images,))
    return stats


class NeRNTask:
    """Engine task: batches are training images ``(x [b, C, H, W], y [b])``; the model is the
    predictor. Training steps sample kernels for the reconstruction loss; after
    ``warmup_steps`` they also rebuild the whole network and distil the original into it,
    with weights that ramp up over ``ramp_steps`` (one optimiser throughout: restarting Adam,
    or switching the losses on at full weight, undoes most of the warm-up in a few steps).
    Validation rebuilds the network and reports its accuracy (``acc``, the monitored
    metric) and ``rec`` over all kernels.

    Batch norm: with ``recalibrate_bn`` the rebuilt network normalises with batch statistics
    while distilling, and is evaluated with running statistics measured on calibration
    images. The original's statistics fit only the original kernels: a rebuilt network run
    on them amplifies its kernel errors layer after layer until early distillation losses
    overflow and their gradients wipe out the warm-up."""

    monitor, mode = "acc", "max"

    def __init__(self, template: nn.Module, layout: KernelLayout, targets: Tensor, features: list[str],
                 config: NeRNConfig, *, calibration: Tensor | None = None, warmup_steps: int = 0,
                 ramp_steps: int = 1) -> None:
        # The reordered original: the teacher, and the skeleton the student's kernels go into.
        # A private copy, so this task's feature hooks stay its own.
        self.template = copy.deepcopy(template).eval()
        for p in self.template.parameters():
            p.requires_grad_(False)
        self.layout, self.config = layout, config
        self.warmup_steps, self.ramp_steps, self.steps = warmup_steps, max(ramp_steps, 1), 0
        self.coords = layout.coordinates()
        self.targets = targets  # [K, 9] kernels in units of their layer's scale
        norms = targets.norm(dim=1)
        self.probs = norms / norms.sum() if config.sampling == "magnitude" else torch.ones_like(norms) / len(norms)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.calibration = calibration  # [M, C, H, W] training images, for BN statistics
        self.batch_stats = config.recalibrate_bn and bool(_batch_norms(self.template)) and calibration is not None
        self._captured: list[Tensor] | None = None
        for name in features if config.feature_weight > 0 else []:
            self.template.get_submodule(name).register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        if self._captured is not None:
            self._captured.append(output)

    def _run(self, params: dict[str, Tensor] | None, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and captured feature maps of the template, with ``params`` swapped in."""
        self._captured = []
        try:
            out = self.template(x) if params is None else torch.func.functional_call(self.template, params, (x,))
            return out, self._captured
        finally:
            self._captured = None

    def _student(self, kernels: dict[str, Tensor], x: Tensor, train: bool) -> tuple[Tensor, list[Tensor]]:
        if not self.batch_stats:
            return self._run(kernels, x)
        if train:
            with _bn_batch_statistics(self.template, momentum=0.0):
                return self._run(kernels, x)
        return self._run({**kernels, **calibrate_bn(self.template, kernels, self.calibration)}, x)

    def _sample(self, device: torch.device) -> Tensor:
        n = self.config.kernels_per_step
        if n >= len(self.probs):
            return torch.arange(len(self.probs), device=device)
        return torch.multinomial(self.probs, n, replacement=True, generator=self.generator).to(device)

    def _move(self, device: torch.device) -> None:
        if self.coords.device != device:
            self.template.to(device)
            self.coords, self.targets = self.coords.to(device), self.targets.to(device)
            if self.calibration is not None:
                self.calibration = self.calibration.to(device)

    def distil_scale(self) -> float:
        """0 during the warm-up, then rising linearly to 1 over the ramp."""
        if not self.config.distils:
            return 0.0
        return min(max((self.steps - self.warmup_steps) / self.ramp_steps, 0.0), 1.0)

    def step(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor], int]:
        x, y = batch
        self._move(x.device)
        cfg, train = self.config, model.training
        if train:
            self.steps += 1
        scale = self.distil_scale()
        if train and scale == 0.0:  # reconstruction only: predict just the sampled kernels
            idx = self._sample(x.device)
            rec = F.mse_loss(model(self.coords[idx]), self.targets[idx])
            loss = cfg.recon_weight * rec
            return loss, {"loss": loss.detach(), "rec": rec.detach()}, len(y)
        pred = model(self.coords)
        idx = self._sample(x.device) if train else slice(None)
        rec = F.mse_loss(pred[idx], self.targets[idx])
        scales = model.scales[self.coords[:, 0]][:, None]
        logits, feats = self._student(self.layout.split(pred * scales), x, train)
        metrics = {"rec": rec.detach(), "acc": (logits.argmax(1) == y).float().mean()}
        loss = cfg.recon_weight * rec
        if train:
            with torch.no_grad():
                t_logits, t_feats = self._run(None, x)
            if cfg.kd_weight > 0:
                t = cfg.temperature
                kd = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(t_logits / t, 1), log_target=True,
                              reduction="batchmean") * t * t
                loss = loss + scale * cfg.kd_weight * kd
                metrics["kd"] = kd.detach()
            if cfg.feature_weight > 0:
                # Each map's error relative to its own energy, so deep and shallow maps count alike.
                fmd = torch.stack([F.mse_loss(s, t) / t.pow(2).mean().clamp_min(1e-8)
                                   for s, t in zip(feats, t_feats)]).mean()
                loss = loss + scale * cfg.feature_weight * fmd
                metrics["fmd"] = fmd.detach()
            if not torch.isfinite(loss):
                # A rebuilt network whose activations overflow gives no usable gradient: skip
                # the step (no parameter receives a gradient) rather than poison Adam's state.
                metrics = {"skipped": torch.ones(())}
                loss = torch.zeros((), device=x.device, requires_grad=True)
        metrics["loss"] = loss.detach()
        return loss, metrics, len(y)


@dataclass
class NeRN:
    """A fitted (or loaded) NeRN: everything needed to rebuild the CNN."""

    cnn: CNNConfig
    layout: KernelLayout
    predictor: KernelPredictor
    kept: dict[str, Tensor]  # every state-dict entry the predictor does not cover, reordered basis
    permutations: Permutations  # reorder permutations (empty when not reordered)
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able: reference metadata, reorder, fit

    def sizes(self) -> dict[str, int]:
        """Parameter counts: the network's, its 3x3 kernels', the rest's, the predictor's."""
        network = num_parameters(build_cnn(self.cnn))
        kernels = self.layout.num_weights
        return {"network": network, "kernels": kernels, "kept": network - kernels,
                "predictor": count_parameters(self.predictor)}


def _seeded_predictor(layout: KernelLayout, config: PredictorConfig, scales: Tensor, seed: int) -> KernelPredictor:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return KernelPredictor(layout, config, scales)


def fit_nern(model: nn.Module, cnn: CNNConfig, data: ImageDataset, config: NeRNConfig = NeRNConfig()) -> NeRN:
    """Fit a predictor to ``model`` (a trained network of architecture ``cnn``) using the
    train split of ``data`` for distillation and its val split to pick the epoch."""
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    keys = kernel_keys(state)
    if not keys:
        raise ValueError(f"{cnn.architecture}: no 3x3 convolution to represent")
    perms: Permutations = {}
    if config.reorder:
        state, perms, report = reorder(state, channel_groups(cnn), keys)
    else:
        s = smoothness(state, keys)
        report = ReorderReport(s, s, 0.0)
    layout = KernelLayout.from_state_dict(state, keys)
    scale_of = layer_scales(state, keys)
    scales = torch.tensor([scale_of[k] for k in keys])
    targets = layout.gather(state) / scales[layout.layer_of_kernel()][:, None]
    template = build_cnn(cnn)
    template.load_state_dict(state)
    predictor = _seeded_predictor(layout, config.predictor, scales, config.seed)
    train, val = ImageBatches(data.select_split("train")), ImageBatches(data.select_split("val"))
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    warmup = config.warmup_epochs if config.distils else 0
    # A seeded sample: datasets may be sorted by class, and statistics of a few classes mislead BN.
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))
    calibration = train.images[pick[: config.calibration_images]]
    task = NeRNTask(template, layout, targets, feature_modules(cnn), config, calibration=calibration,
                    warmup_steps=warmup * steps_per_epoch, ramp_steps=round(config.ramp_epochs * steps_per_epoch))
    train_cfg = TrainConfig(epochs=config.warmup_epochs + config.epochs, batch_size=config.batch_size, lr=config.lr,
                            weight_decay=0.0, grad_clip=1.0, seed=config.seed, progress=config.progress,
                            accelerator=config.accelerator, eval_batch_size=1000)
    result = fit(predictor, task, train, val, train_cfg)
    predictor = result.model.cpu().eval()
    kept = {k: v for k, v in state.items() if k not in set(keys)}
    if task.batch_stats:  # the statistics the rebuilt kernels need, in place of the original's
        with torch.no_grad():
            kernels = layout.split(predictor.kernels(layout.coordinates()))
        kept |= calibrate_bn(template, kernels, calibration)
    fit_info = {"config": {**asdict(config), "predictor": asdict(config.predictor)}, "seconds": result.seconds,
                "best_val_acc": result.best_value, "dataset": data.name, "history": result.history}
    info = {"reorder": asdict(report), "fit": fit_info}
    return NeRN(cnn, layout, predictor, kept, perms, info)


def reconstruct_state(nern: NeRN, *, original_order: bool = True) -> dict[str, Tensor]:
    """The rebuilt state dict (on the CPU); in the original channel order unless
    ``original_order=False`` (the reordered network computes the same function). The kernels
    are predicted where the predictor is."""
    device = next(nern.predictor.parameters()).device
    with torch.no_grad():
        kernels = nern.predictor.kernels(nern.layout.coordinates().to(device)).cpu()
    state = {**nern.kept, **nern.layout.split(kernels)}
    if original_order and nern.permutations:
        state = permute_state_dict(state, channel_groups(nern.cnn), invert(nern.permutations))
    return state


def reconstruct(nern: NeRN, *, original_order: bool = True, device: str | torch.device = "cpu") -> nn.Module:
    """The rebuilt network (original architecture, eval mode), on ``device``; the kernels are
    predicted where the predictor is (move ``nern.predictor`` to compute them elsewhere)."""
    model = build_cnn(nern.cnn)
    load_state_dict_checked(model, reconstruct_state(nern, original_order=original_order), "reconstruction")
    return model.eval().to(device)


# ---------------------------------------------------------------------------- file format
def save_nern(path: str | os.PathLike[str], nern: NeRN) -> Path:
    """Write ``nern`` as one safetensors file (see the module doc); atomic."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"predictor.{k}": v.detach().contiguous().cpu() for k, v in nern.predictor.state_dict().items()}
    tensors |= {f"kept.{k}": v.detach().contiguous().cpu() for k, v in nern.kept.items()}
    meta = {"format": FILE_FORMAT, "format_version": str(FILE_VERSION), "cnn": json.dumps(nern.cnn.to_metadata()),
            "layout": nern.layout.to_json(), "predictor": nern.predictor.config.to_json(),
            "permutations": json.dumps({k: v.tolist() for k, v in nern.permutations.items()}),
            "info": json.dumps(nern.info, default=str)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_nern(path: str | os.PathLike[str]) -> NeRN:
    """Read a file written by :func:`save_nern`; :class:`ModelFileError` naming the file and the
    problem for missing, corrupt, foreign or inconsistent files."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FILE_FORMAT:
        raise ModelFileError(f"{path}: not a NeRN predictor file (metadata format {meta.get('format')!r}, "
                             f"expected {FILE_FORMAT!r}); write one with `weightspace nern fit`")
    if int(meta.get("format_version", "0")) > FILE_VERSION:
        raise ModelFileError(f"{path}: NeRN file version {meta['format_version']} is newer than this library")
    try:
        cnn = CNNConfig.from_metadata(json.loads(meta["cnn"]))
        layout = KernelLayout.from_json(meta["layout"])
        pconf = PredictorConfig.from_json(meta["predictor"])
        perms = {k: torch.tensor(v, dtype=torch.long) for k, v in json.loads(meta["permutations"]).items()}
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: damaged NeRN metadata ({type(e).__name__}: {e})") from None
    pred_state = {k.removeprefix("predictor."): v for k, v in tensors.items() if k.startswith("predictor.")}
    if "scales" not in pred_state:
        raise ModelFileError(f"{path}: the predictor's tensors are missing")
    predictor = KernelPredictor(layout, pconf, pred_state["scales"])
    load_state_dict_checked(predictor, pred_state, f"{path} (predictor)")
    kept = {k.removeprefix("kept."): v for k, v in tensors.items() if k.startswith("kept.")}
    nern = NeRN(cnn, layout, predictor.eval(), kept, perms, info)
    groups = {g.name: g.size for g in channel_groups(cnn)}
    bad = [k for k, p in perms.items() if groups.get(k) != len(p)]
    if bad:
        raise ModelFileError(f"{path}: permutations {bad} do not fit the {cnn.architecture} channel groups")
    expected = set(build_cnn(cnn).state_dict())
    if set(kept) | set(layout.keys) != expected:
        raise ModelFileError(f"{path}: kept tensors + predicted kernels do not cover the {cnn.architecture} "
                             f"state dict (missing {sorted(expected - set(kept) - set(layout.keys))[:5]})")
    return nern
