"""Argument checks for every `weightspace` command, run before the command does any work.

One table of rules, keyed by parameter name (a name means the same kind of value in every
command: ``--epochs`` is a count of epochs everywhere) with per-command entries where a
command differs (``"compress:out"`` is a file, ``"train:out"`` a directory). `guard` wraps
every registered command so its arguments are checked first; a bad one ends the command
with one line, ``error: --epochs must be at least 1 (got -1)``, and exit status 2, before a
zoo is opened, a network fitted or a file written. `main` is the console entry point: it
turns the operating system's refusals that can only happen mid-run (a full disk, a file
removed under the run) into one line too.

The test suite walks every command and fails for a numeric or path parameter without a rule
here, so a new option cannot skip the checks.
"""

from __future__ import annotations

import errno
import functools
import inspect
import math
import os
import sys
import tempfile
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer

ALLOW_INCOMPLETE = "use a zoo whose build has not finished: the networks written so far"


@dataclass(frozen=True)
class Rule:
    """What a parameter's value must be.

    kind: ``"int"`` / ``"float"`` (a number in ``[lo, hi]``; floats also finite, and with
    ``open_lo`` strictly above ``lo``), ``"input"`` (an existing path), ``"out_dir"`` /
    ``"out_file"`` (a directory / file the command may create: not the other kind of thing
    where it exists, inside a writable directory), ``"free"`` (no constraint, said on purpose).
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    suffixes: tuple[str, ...] = ()

    def check(self, flag: str, value: Any) -> str | None:
        """The problem with ``value`` as one phrase starting with ``flag``, or None."""
        if value is None or self.kind == "free":
            return None
        if self.kind == "device":
            ok = value in DEVICES or (isinstance(value, str) and value.startswith("cuda:") and value[5:].isdigit())
            return _cuda_problem(flag, value) if ok else f"{flag} must be one of {', '.join(DEVICES)} or cuda:N (got {value!r})"
        if self.kind in ("int", "float"):
            return self._number(flag, value)
        return _path_problem(flag, Path(value), self)

    def _number(self, flag: str, value: float) -> str | None:
        if self.kind == "float" and not math.isfinite(value):
            return f"{flag} must be a finite number (got {value})"
        if self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo):
            return f"{flag} must be {'above' if self.open_lo else 'at least'} {_num(self.lo)} (got {_num(value)})"
        if self.hi is not None and value > self.hi:
            return f"{flag} must be at most {_num(self.hi)} (got {_num(value)})"
        return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**63 else f"{x:g}"


DEVICES = ("auto", "cpu", "cuda", "gpu")  # gpu: a synonym of cuda (Lightning's name)


def _cuda_problem(flag: str, value: str) -> str | None:
    """Why ``--device cuda`` (``gpu``, ``cuda:N``) cannot run here, or None; ``auto`` and ``cpu``
    import nothing, so ``--help`` and CPU runs stay free of a CUDA probe."""
    if value in ("auto", "cpu"):
        return None
    import torch

    if not torch.cuda.is_available():
        return f"{flag} {value}: no CUDA device is available (this torch build: {torch.__version__})"
    _, _, index = value.partition(":")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        return f"{flag} {value}: this machine has {count} CUDA device{'s' if count != 1 else ''} (cuda:0 .. cuda:{count - 1})"
    return None


def torch_device(device: str) -> str:
    """A checked ``--device`` as a torch device: auto is cuda when one is available, else cpu."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device == "gpu" else device


def lightning(device: str) -> dict[str, Any]:
    """A checked ``--device`` as Lightning's ``accelerator`` and ``devices`` (`TrainConfig` fields)."""
    kind, _, index = device.partition(":")
    accel = {"cuda": "gpu", "gpu": "gpu"}.get(kind, kind)
    return {"accelerator": accel, "devices": [int(index)] if index else 1}


COUNT = Rule("int", 1)  # a number of things: at least one
NONNEG = Rule("int", 0)
SEED = Rule("int", 0, 2**63 - 1)  # numpy's generators refuse negative seeds
POSITIVE = Rule("float", 0, open_lo=True)
NONNEG_REAL = Rule("float", 0)
FRACTION = Rule("float", 0, 1, open_lo=True)  # (0, 1]
INPUT = Rule("input")
OUT_DIR = Rule("out_dir")
OUT_FILE = Rule("out_file")
FIGURE = Rule("out_file", suffixes=(".png", ".pdf", ".svg", ".jpg"))

RULES: dict[str, Rule] = {
    # counts and sizes
    **dict.fromkeys(
        ["epochs", "batch_size", "steps", "limit", "per_class", "shard_size", "runs", "n_train", "n_test",
         "runs_per_shard", "count", "n", "d_model", "layers", "latent_dim", "width", "nern fit:hidden",
         "depth", "frequencies", "kernels_per_step", "levels", "latent", "inner_steps", "code_dim", "points",
         "encode_steps", "inrs_per_train_image", "test_images", "search", "length", "max_points", "samples",
         "scale", "size", "views", "test_views", "rays", "tokensize", "window", "supersample"], COUNT),
    "resolution": Rule("int", 2),  # grid points per axis: one point is no grid
    **dict.fromkeys(["refine_steps", "finetune_steps", "warmup_epochs", "nern fit:epochs", "appearance_dim",
                     "latent_tokens"], NONNEG),  # latent_tokens 0: one latent per neuron token
    **dict.fromkeys(["seed", "data_seed"], SEED),
    "bits": Rule("int", 1, 16),  # COIN's header stores 1..16-bit weights
    # rates, weights and times
    **dict.fromkeys(["lr", "mixup", "max_minutes", "bpp", "psnr", "max_work", "omega"], POSITIVE),
    **dict.fromkeys(["weight_decay", "kd_weight", "feature_weight", "contrastive_weight", "noise"], NONNEG_REAL),
    "erase": Rule("float", 0, 0.999),  # a fraction of tokens erased: all of them leaves nothing to learn from
    "top": FRACTION,
    "device": Rule("device"),
    # paths read
    **dict.fromkeys(["zoo_path", "path", "root", "run_dir", "networks", "model_path", "predictor", "input", "file",
                     "base", "splits", "functaset", "nern fit:model", "functa encode:model", "functa sample:model",
                     "functa infer:model", "hyperinr encode:model", "gasp sample:run", "nerf sample:run"], INPUT),
    # paths written
    **dict.fromkeys(["train:out", "edit:out", "quickstart:out", "predict:out", "zoo fit-inrs:out", "zoo import:out",
                     "zoo train-classifiers:out", "zoo import-classifiers:out", "functa fit:out", "functa encode:out",
                     "hyperinr fit:out", "hyperinr encode:out", "hyperrep sample:out", "hyperrep fit:out", "hyperrep sane-fit:out",
                     "gasp fit:out", "nerf fit:out"], OUT_DIR),
    "zoo export:out": Rule("free"),  # a folder (hf) or a .npz file (numpy): checked by the command
    "zoo render:mesh": Rule("free"),  # a file (one network) or a folder: render_zoo checks it before decoding
    **dict.fromkeys(["apply:out", "nern train-reference:out", "nern fit:out",
                     "nern reconstruct:out", "compress:out", "decompress:out", "compress-base:out",
                     "hyperrep probe:as_json", "hyperrep sane-probe:as_json", "functa infer:as_json"], OUT_FILE),
    **dict.fromkeys(["zoo render:out", "functa sample:out", "gasp sample:out", "nerf sample:out", "figure"], FIGURE),
}


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command: ``error: MESSAGE`` on stderr as one line (no wrapping at the terminal's
    width, brackets printed rather than read as markup), exit status ``code``."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


# Help for options that mean the same in every command; an option's own help wins.
COMMON_HELP: dict[str, str] = {
    "seed": "random seed: initialisation, data order and sampling (the run is reproducible with it)",
    "data_seed": "seed of the data split",
    "progress": "show progress bars (--no-progress for logs and scripts)",
    "epochs": "training epochs",
    "batch_size": "examples per training batch",
    "lr": "learning rate (Adam / AdamW)",
    "shard_size": "networks per shard file (a killed build loses at most one shard)",
    "device": "where to compute: cpu, cuda, or auto (cuda when available)",
    "as_json": "print the result as JSON",
    "out": "where to write the result",
    "limit": "images: at most this many per split",
    "per_class": "shapes: signals per class",
    "resolution": "shapes / meshes: grid points per axis",
    "field": "shapes / meshes: sdf | udf | occupancy",
    "latent_dim": "size of each latent vector",
    "code_dim": "size of each code vector",
    "omega": "SIREN frequency factor omega_0 of the first layer",
    "inner_steps": "inner-loop gradient steps on each latent",
}


QUIET = False  # set by the top-level --quiet: no progress bars anywhere


def set_quiet() -> None:
    """No progress bars: every command's ``progress`` becomes False (`checked`), and the switch
    every bar obeys (`weightspace._progress`) is set for the bars of commands without that option."""
    global QUIET
    QUIET = True
    os.environ["WEIGHTSPACE_QUIET"] = "1"


def fill_help(callback: Callable) -> None:
    """Give every option of ``callback`` without help its `COMMON_HELP` text (in place)."""
    from typer.models import OptionInfo

    hints = typing.get_type_hints(callback, include_extras=True)
    for name, p in inspect.signature(callback).parameters.items():
        infos = [m for m in getattr(hints.get(name), "__metadata__", ()) if isinstance(m, OptionInfo)]
        infos += [p.default] if isinstance(p.default, OptionInfo) else []
        for info in infos:
            if not info.help and name in COMMON_HELP:
                info.help = COMMON_HELP[name]


def rule_for(command: str, name: str) -> Rule | None:
    """The rule of parameter ``name`` of ``command`` (its path, e.g. ``"zoo fit-inrs"``)."""
    return RULES.get(f"{command}:{name}", RULES.get(name))


def _writable_dir(d: Path) -> bool:
    """Whether a file can be created in ``d``, by creating one: ``os.access`` says yes to root on a
    read-only directory and knows nothing of read-only mounts or ACLs."""
    try:
        fd, name = tempfile.mkstemp(dir=d, prefix=".weightspace-write-test-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def _path_problem(flag: str, path: Path, rule: Rule) -> str | None:
    if rule.kind == "input":
        return None if path.exists() else f"{flag}: {path} does not exist"
    want_dir = rule.kind == "out_dir"
    if path.exists():
        if want_dir and not path.is_dir():
            return f"{flag}: {path} is a file, not a directory"
        if not want_dir and path.is_dir():
            return f"{flag}: {path} is a directory; give a file name"
    if rule.suffixes and path.suffix.lower() not in rule.suffixes:
        return f"{flag}: {path} must end in one of {', '.join(rule.suffixes)}"
    # The nearest existing ancestor must be a directory the command can create things in.
    parent = path if want_dir and path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{flag}: cannot create {path}: {parent} is a file, not a directory"
    if not _writable_dir(parent):
        return f"{flag}: cannot write in {parent} (read-only or permission denied)"
    return None


def _flags(callback: Callable) -> dict[str, str]:
    """Parameter name -> how the user names it (``--out``, ``-n``, ``ZOO_PATH``)."""
    from typer.models import ArgumentInfo, OptionInfo

    hints = typing.get_type_hints(callback, include_extras=True)
    flags = {}
    for name, p in inspect.signature(callback).parameters.items():
        info = p.default
        for m in getattr(hints.get(name), "__metadata__", ()):  # Annotated[T, typer.Option(...)]
            if isinstance(m, (OptionInfo, ArgumentInfo)):
                info = m
        if isinstance(info, ArgumentInfo):
            flags[name] = name.upper()
            continue
        decls = [d for d in getattr(info, "param_decls", None) or () if isinstance(d, str)]
        first = getattr(info, "default", None)
        if isinstance(first, str) and first.startswith("-"):  # Annotated[T, typer.Option("--out", "-o")]
            decls.insert(0, first)
        longs = [d for d in decls if d.startswith("--")]
        flags[name] = longs[0] if longs else (decls[0] if decls else "--" + name.replace("_", "-"))
    return flags


def checked(command: str, callback: Callable) -> Callable:
    """``callback`` with its arguments checked against `RULES` first (see the module docstring)."""
    flags = _flags(callback)

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        problems = []
        for name, value in kwargs.items():
            rule = rule_for(command, name)
            problem = rule.check(flags.get(name, name), value) if rule is not None else None
            if problem:
                problems.append(problem)
        if problems:
            fail("; ".join(problems))
        if QUIET and "progress" in kwargs:
            kwargs["progress"] = False
        for name, value in kwargs.items():  # a file's missing parent folders: made now, not after the work
            rule = rule_for(command, name)
            if value is not None and rule is not None and rule.kind == "out_file":
                Path(value).parent.mkdir(parents=True, exist_ok=True)
        return callback(*args, **kwargs)

    run.__weightspace_checked__ = command  # type: ignore[attr-defined]
    return run


def _command_name(info: Any) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def commands(app: typer.Typer, prefix: str = "") -> list[tuple[str, Any]]:
    """``(path, CommandInfo)`` of every command registered under ``app``, sub-apps included."""
    found = [((prefix + " " + _command_name(c)).strip(), c) for c in app.registered_commands]
    for group in app.registered_groups:
        name = group.name or group.typer_instance.info.name
        sub = prefix if not isinstance(name, str) else (prefix + " " + name).strip()
        found += commands(group.typer_instance, sub)
    return found


def guard(app: typer.Typer) -> typer.Typer:
    """Wrap every command of ``app`` (recursively) with `checked` and fill its options' missing
    help from `COMMON_HELP`; idempotent."""
    from weightspace.cli_examples import EXAMPLES

    for path, info in commands(app):
        if not hasattr(info.callback, "__weightspace_checked__"):
            fill_help(info.callback)
            if path in EXAMPLES:  # the command's docstring, then a README example (rich keeps the blank line)
                doc = info.help or inspect.getdoc(info.callback) or ""
                info.help = f"{doc}\n\nExample: {EXAMPLES[path]}"
            info.callback = checked(path, info.callback)
    return app


_OS_REASONS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EFBIG: "file too large for this file system or limit", errno.EROFS: "read-only file system",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}


def main(app: typer.Typer) -> None:
    """Run ``app``; an OSError that escapes a command (a disk that fills mid-run) is one line.

    Writers in weightspace replace files atomically, so what was written before the error stays
    whole; the message says so where a resume is possible.
    """
    try:
        app()
    except OSError as e:
        reason = _OS_REASONS.get(e.errno or -1, e.strerror or str(e))
        where = f" writing {e.filename}" if e.filename else ""
        typer.echo(f"error: {reason}{where}; files completed before this are kept "
                   "(zoo builds and `train --out` runs resume by running the same command)", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted; zoo builds and `train --out` runs resume by running the same command", err=True)
        sys.exit(130)
