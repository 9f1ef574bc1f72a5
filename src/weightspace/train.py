"""The one training engine every task uses.

A task says how to turn a batch into a loss and metrics (`Task.step`); the engine owns
everything else: data order (seeded), optimiser, schedule, gradient clipping, validation,
keeping the best weights, progress, device placement and — through Lightning — data
parallelism (``devices=N``). Batches are ``(Weights, targets)`` built by indexing
in-memory stacked tensors, with no per-item collation.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as L
from lightning.pytorch.callbacks import Timer
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from weightspace.checkpoint import CHECKPOINT, METRICS, TrainState, json_state, write_metrics
from weightspace.core.weights import Weights

Transform = Callable[[Weights, torch.Generator], Weights]
# transforms of a whole batch, targets included (e.g. mixup)
BatchTransform = Callable[[Weights, Tensor, torch.Generator], tuple[Weights, Tensor]]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float | None = 10.0
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    progress: bool = True
    eval_batch_size: int = 512
    # torch.compile the model for training steps (fuses the elementwise chains that dominate
    # equivariant layers); the last partial training batch is then dropped so one shape compiles
    compile: bool = False
    max_minutes: float | None = None  # stop training after this wall time (the best epoch so far is kept)
    # the published recipes differ here: DWSNets trains with AdamW(amsgrad) at a constant rate,
    # NFN with Adam after a linear warm-up, the neural-graph models with AdamW after a warm-up
    optimizer: str = "adamw"  # "adamw" or "adam"
    amsgrad: bool = False
    schedule: str = "cosine"  # "cosine" (over all epochs) or "constant"
    warmup_steps: int = 0  # linear warm-up of the learning rate over this many optimiser steps

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "adam"):
            raise ValueError(f"optimizer must be 'adamw' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


class Task(Protocol):
    monitor: str  # validation metric that picks the best epoch, e.g. "acc"
    mode: str  # "max" or "min"

    def step(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor], int]:
        """(loss, metrics averaged over the batch, batch size)."""
        ...


class WeightBatches(Dataset):
    """Indexing by a *list* of positions returns a whole batch ``(Weights, targets)``.

    weights: ``[N, C, ...]``; targets: a tensor ``[N, ...]``; ``transform`` (augmentation)
    is applied to each training batch with the loader's generator.
    """

    def __init__(
        self,
        weights: Weights,
        targets: Tensor,
        transform: Transform | None = None,
        seed: int = 0,
        batch_transform: BatchTransform | None = None,
    ) -> None:
        if len(weights) != len(targets):
            raise ValueError(f"{len(weights)} networks but {len(targets)} targets")
        self.weights, self.targets, self.transform = weights, targets, transform
        self.batch_transform = batch_transform
        self.generator = torch.Generator().manual_seed(seed + 1)

    def __len__(self) -> int:
        return len(self.weights)

    def __getitem__(self, index: list[int]) -> tuple[Weights, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        w = self.weights[idx]
        if self.transform is not None:
            w = self.transform(w, self.generator)
        y = self.targets[idx]
        if self.batch_transform is not None:
            w, y = self.batch_transform(w, y, self.generator)
        return w, y


def batch_loader(data: WeightBatches, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False) -> DataLoader:
    sampler = RandomSampler(data, generator=torch.Generator().manual_seed(seed)) if shuffle else SequentialSampler(data)
    return DataLoader(data, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last=drop_last))


class _CompileDeadline(BaseException):
    """Raised into a compilation that outlived ``max_minutes`` (a BaseException so that the
    compiler's own error handling does not swallow it)."""


@contextlib.contextmanager
def _deadline(seconds: float | None):
    """Raise `_CompileDeadline` in the main thread after ``seconds`` (a real-time timer;
    SIGALRM interrupts Python code and the waits on compiler subprocesses alike). Without a
    limit, off the main thread or without SIGALRM (Windows), nothing is armed."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def fire(signum, frame):
        raise _CompileDeadline()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Module(L.LightningModule):
    def __init__(self, model: nn.Module, task: Task, config: TrainConfig, *, run_dir: Path | None = None,
                 rngs: dict[str, torch.Generator] | None = None, resume: TrainState | None = None) -> None:
        super().__init__()
        self.model, self.task, self.config = model, task, config
        self.best_value: float | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self.examples_seen = 0
        # a run directory gets a checkpoint and metrics.csv after every epoch; ``rngs`` are the
        # generators training draws from besides torch's global one (data order, augmentation)
        self.run_dir, self.rngs, self.resume = run_dir, dict(rngs or {}), resume
        self.start_epoch = 0
        self._epoch_start, self._epoch_lr, self._batches = 0.0, float("nan"), 0
        if resume is not None:
            self.start_epoch = resume.epochs_done
            self.best_value, self.best_state, self.history = resume.best_value, resume.best, list(resume.history)
        # Compiled for training steps only: evaluation stays eager, so neither its batch shapes
        # nor the train/eval switch trigger recompiles. Kept out of the module tree (``__dict__``)
        # so that parameters and state_dict are the model's own.
        self.__dict__["_compiled"] = torch.compile(model, dynamic=False) if config.compile else None
        self._compiled_once, self.compile_timed_out = False, False

    def _time_left(self) -> float | None:
        """Seconds left of ``max_minutes`` (Lightning's Timer callback counts them), or None."""
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        return None if timer is None else timer.time_remaining("train")

    def _run(self, batch, stage: str, model: nn.Module | None = None) -> Tensor:
        loss, metrics, n = self.task.step(self.model if model is None else model, batch)
        for k, v in metrics.items():
            self.log(f"{stage}/{k}", v, on_step=False, on_epoch=True, batch_size=n, prog_bar=(stage != "test"))
        if stage == "train":
            self.examples_seen += n
            self._batches += 1
        return loss

    def training_step(self, batch, batch_idx):
        compiled = self.__dict__["_compiled"]
        if compiled is not None:
            try:
                if self._compiled_once:
                    return self._run(batch, "train", compiled)
                # the first compiled step compiles, which can take minutes: bounded by what is
                # left of ``max_minutes`` so that the run's wall time includes compilation
                with _deadline(self._time_left()):
                    loss = self._run(batch, "train", compiled)
                self._compiled_once = True
                return loss
            except _CompileDeadline:
                self.__dict__["_compiled"] = None
                self.compile_timed_out = True
                self.trainer.should_stop = True
                warnings.warn("--max-minutes ran out while torch.compile was still compiling the first step; "
                              "training stopped before any step", stacklevel=1)
                return None  # Lightning skips the optimiser step
            except torch._dynamo.exc.TorchDynamoException as err:  # the compiler failed, not the model
                # one readable line: a failing C++ build puts its whole command line in the message
                first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {first[:120]}); training eagerly "
                              "(the time spent compiling counts against --max-minutes)", stacklevel=1)
                self.__dict__["_compiled"] = None
        return self._run(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._run(batch, "val")

    def test_step(self, batch, batch_idx):
        self._run(batch, "test")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        value = float(self.trainer.callback_metrics[f"val/{self.task.monitor}"])
        better = self.best_value is None or (value > self.best_value if self.task.mode == "max" else value < self.best_value)
        if better:
            self.best_value = value
            self.best_state = copy.deepcopy(self.model.state_dict())

    def on_train_epoch_start(self) -> None:
        self._epoch_start, self._batches = time.perf_counter(), 0
        self._epoch_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self) -> None:
        if self._batches == 0:  # stopped before its first step (a compilation outlived max_minutes)
            return
        # a resumed run trains the remaining epochs, so Lightning counts from 0 again
        row = {"epoch": float(self.start_epoch + self.current_epoch)}
        row.update({k: float(v) for k, v in self.trainer.callback_metrics.items()})
        row.update(lr=self._epoch_lr, seconds=time.perf_counter() - self._epoch_start)
        self.history.append(row)
        if self.run_dir is not None and self.trainer.is_global_zero:
            write_metrics(self.run_dir / METRICS, self.history)
            # an epoch cut short (``max_minutes``) cannot be resumed exactly: keep the last whole one
            if self._batches >= self.trainer.num_training_batches:
                self._state().save(self.run_dir / CHECKPOINT)

    def _state(self) -> TrainState:
        """Everything needed to continue after this epoch. Lightning steps epoch-wise schedulers
        before validation, so the scheduler state here is already the next epoch's."""
        rng = {name: g.get_state() for name, g in self.rngs.items()}
        rng["torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        configs = self.trainer.lr_scheduler_configs
        return TrainState(
            epochs_done=len(self.history), best_value=self.best_value, model=self.model.state_dict(),
            best=self.best_state, optimizer=self.trainer.optimizers[0].state_dict(),
            scheduler=json_state(configs[0].scheduler.state_dict()) if configs else None, rng=rng,
            history=self.history,
        )

    def configure_optimizers(self):
        c = self.config
        make = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        opt = make(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay, amsgrad=c.amsgrad)
        if not c.warmup_steps:
            if c.schedule == "constant":
                return self._restored(opt, None)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, c.epochs))
            return {"optimizer": opt, "lr_scheduler": self._restored(opt, sched)}
        # warm-up is per optimiser step, the cosine per epoch: one step-wise factor holds both.
        # (Steps per epoch from the epochs this trainer runs: fewer than c.epochs when resumed.)
        per_epoch = max(1, int(self.trainer.estimated_stepping_batches) // max(1, self.trainer.max_epochs))

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / c.warmup_steps)
            if c.schedule == "constant":
                return warm
            return warm * 0.5 * (1 + math.cos(math.pi * min(step // per_epoch, c.epochs) / max(1, c.epochs)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self._restored(opt, sched), "interval": "step"}}

    def _restored(self, opt: torch.optim.Optimizer, sched):
        """Load a resumed run's optimiser and scheduler state (after both are built: building
        a scheduler resets the learning rate); returns ``sched``, or ``opt`` when there is none."""
        if self.resume is not None:
            opt.load_state_dict(self.resume.optimizer)
            if sched is not None and self.resume.scheduler is not None:
                sched.load_state_dict(dict(self.resume.scheduler))
        return opt if sched is None else sched


@dataclass
class TrainResult:
    model: nn.Module  # with the best validation weights loaded
    best_value: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    examples_per_second: float = 0.0
    epochs_run: int = 0  # fewer than asked when ``max_minutes`` stopped training


def _trainer(config: TrainConfig, epochs: int, run_dir: Path | None = None) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        max_time=None if config.max_minutes is None else timedelta(minutes=config.max_minutes),
        accelerator=config.accelerator,
        devices=config.devices,
        logger=_tensorboard(run_dir),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=config.progress,
        gradient_clip_val=config.grad_clip,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def _tensorboard(run_dir: Path | None):
    """Lightning's TensorBoard logger writing to ``run_dir/tensorboard`` where the package is
    installed; else no logger (metrics.csv is written either way)."""
    import importlib.util

    if run_dir is None or importlib.util.find_spec("tensorboard") is None:
        return False
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(str(run_dir), name="tensorboard", version="")


def _quiet() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")  # training without validation is asked for
    # a step returns None only when a compilation outlived max_minutes, which says so itself
    warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")


def fit(model: nn.Module, task: Task, train: WeightBatches, val: WeightBatches | None, config: TrainConfig,
        *, run_dir: Path | None = None, resume: bool = False) -> TrainResult:
    """Train ``model`` on ``train``; keep the weights of the best epoch on ``val``.

    With ``run_dir``, write ``metrics.csv`` and a training checkpoint there after every epoch;
    ``resume`` continues from that checkpoint, restoring the model, optimiser, schedule, best
    epoch and random generators, so that the run ends as an uninterrupted one would (on one
    device)."""
    _quiet()
    L.seed_everything(config.seed, verbose=False)
    loader = batch_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                          drop_last=config.compile and len(train) > config.batch_size)
    # the data order's generator (RandomSampler's) and the augmentation's (the dataset's)
    # (a dataset without its own generator, e.g. NeRN's image batches, has no augmentation state)
    rngs = {"sampler": loader.sampler.sampler.generator}
    if getattr(train, "generator", None) is not None:
        rngs["data"] = train.generator
    state = None
    if resume:
        if run_dir is None:
            raise ValueError("resume needs the run directory")
        state = TrainState.load(run_dir / CHECKPOINT)
        model.load_state_dict(state.model)
        for name, generator in rngs.items():
            generator.set_state(state.rng[name])
        torch.set_rng_state(state.rng["torch"])
        cuda = [state.rng[f"cuda{i}"] for i in range(sum(k.startswith("cuda") for k in state.rng))]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    module = _Module(model, task, config, run_dir=run_dir, rngs=rngs, resume=state)
    start = time.perf_counter()
    if config.epochs > module.start_epoch:
        trainer = _trainer(config, config.epochs - module.start_epoch, run_dir)
        trainer.fit(
            module,
            train_dataloaders=loader,
            val_dataloaders=None if val is None else batch_loader(val, config.eval_batch_size, shuffle=False),
        )
    seconds = time.perf_counter() - start
    if module.best_state is not None:
        model.load_state_dict(module.best_state)
    return TrainResult(model, module.best_value, module.history, seconds, module.examples_seen / max(seconds, 1e-9),
                       epochs_run=len(module.history))


def evaluate(model: nn.Module, task: Task, data: WeightBatches, config: TrainConfig = TrainConfig()) -> dict[str, float]:
    """Task metrics of ``model`` on ``data`` (e.g. ``{"acc": 0.93, "loss": 0.2}``)."""
    _quiet()
    module = _Module(model, task, config)
    trainer = _trainer(TrainConfig(**{**config.__dict__, "progress": False}), 1)
    (out,) = trainer.test(module, batch_loader(data, config.eval_batch_size, shuffle=False), verbose=False)
    return {k.removeprefix("test/"): float(v) for k, v in out.items()}
