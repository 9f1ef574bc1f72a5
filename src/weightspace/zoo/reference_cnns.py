"""Reference CNNs (the networks NeRN represents), their channel symmetries and their file format.

Two architectures, both for ``[N, C, H, W]`` inputs with ``C`` = 1 (MNIST) or 3 (CIFAR):

- ``resnet{6n+2}`` (e.g. ``resnet20``): the CIFAR ResNet of He et al. (2016) — a 3x3 stem,
  three stages of ``n`` basic blocks at widths ``w, 2w, 4w`` (``w`` = 16 in the paper),
  global average pooling and a dense layer. Where a block changes width or stride its
  shortcut is a 1x1 convolution + BN ("option B"), so each stage owns one residual stream.
- ``smallcnn``: the small zoo CNN (3 conv layers x ``w`` = 16 channels, 3x3, stride 2,
  ReLU, global average pooling, dense 10), built from a weightspace :class:`NetworkSpec`.

Each architecture states its symmetry as :class:`ChannelGroup` s: sets of state-dict axes
that one permutation must reorder together for the function to stay the same.

File format: a safetensors state dict whose metadata holds ``format = "weightspace.cnn"``
and the :class:`CNNConfig` (``architecture``, ``in_channels``, ``num_classes``, ``width``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace.core.spec import LayerSpec, NetworkSpec

FILE_FORMAT = "weightspace.cnn"
_RESNET = re.compile(r"resnet(\d+)$")


class ModelFileError(ValueError):
    """A model file that is missing, not safetensors, foreign or inconsistent with its metadata."""


@dataclass(frozen=True)
class CNNConfig:
    architecture: str = "resnet20"  # "resnet{6n+2}" or "smallcnn"
    in_channels: int = 1
    num_classes: int = 10
    width: int = 16

    def __post_init__(self) -> None:
        if self.architecture != "smallcnn":
            m = _RESNET.match(self.architecture)
            if m is None or int(m.group(1)) < 8 or (int(m.group(1)) - 2) % 6:
                raise ValueError(f"unknown architecture {self.architecture!r}: expected 'smallcnn' or "
                                 "'resnet{6n+2}' (resnet8, resnet14, resnet20, resnet32, ...)")
        if min(self.in_channels, self.num_classes, self.width) < 1:
            raise ValueError(f"in_channels, num_classes and width must be positive: {self}")

    @property
    def blocks_per_stage(self) -> int:
        return (int(self.architecture.removeprefix("resnet")) - 2) // 6

    def to_metadata(self) -> dict[str, str]:
        return {"format": FILE_FORMAT, "architecture": self.architecture, "in_channels": str(self.in_channels),
                "num_classes": str(self.num_classes), "width": str(self.width)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> CNNConfig:
        try:
            return cls(meta["architecture"], int(meta["in_channels"]), int(meta["num_classes"]),
                       int(meta.get("width", 16)))
        except KeyError as e:
            raise ValueError(f"metadata lacks {e.args[0]!r}") from None


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that permute together: every ``(state-dict key, axis)`` of ``members`` is
    indexed along ``axis`` by the same permutation of ``size`` entries."""

    name: str
    size: int
    members: tuple[tuple[str, int], ...]


# ---------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x))``: ``[N, c_in, H, W] -> [N, c_out, H/s, W/s]``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: ``[N, in_channels, H, W] -> [N, num_classes]`` logits."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, blocks_per_stage: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        c = width
        for s in range(3):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(c, width * 2**s, 2 if s > 0 and b == 0 else 1))
                c = width * 2**s
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _writes(conv: str, bn: str) -> list[tuple[str, int]]:
    # A conv's output channels are rows of its weight and entries of the BN that follows.
    return [(f"{conv}.weight", 0)] + [(f"{bn}.{p}", 0) for p in ("weight", "bias", "running_mean", "running_var")]


def _resnet_groups(config: CNNConfig) -> list[ChannelGroup]:
    """One group per residual stream (every layer adding into a stream shares its permutation)
    and one per block's inner channels."""
    w, n = config.width, config.blocks_per_stage
    groups: list[ChannelGroup] = []
    stream = _writes("conv1", "bn1")  # stage 1's stream starts at the stem
    for s in range(1, 4):
        for b in range(n):
            blk = f"layer{s}.{b}"
            if s > 1 and b == 0:  # the projection opens a new stream; the old one ends here
                stream += [(f"{blk}.conv1.weight", 1), (f"{blk}.shortcut.0.weight", 1)]
                groups.append(ChannelGroup(f"stream{s - 1}", w * 2 ** (s - 2), tuple(stream)))
                stream = _writes(f"{blk}.shortcut.0", f"{blk}.shortcut.1")
            else:
                stream.append((f"{blk}.conv1.weight", 1))
            groups.append(ChannelGroup(f"{blk}.inner", w * 2 ** (s - 1),
                                       tuple(_writes(f"{blk}.conv1", f"{blk}.bn1") + [(f"{blk}.conv2.weight", 1)])))
            stream += _writes(f"{blk}.conv2", f"{blk}.bn2")
    stream.append(("fc.weight", 1))
    groups.append(ChannelGroup("stream3", w * 4, tuple(stream)))
    return groups


# ---------------------------------------------------------------------------- small CNN
def small_cnn_spec(in_channels: int = 1, num_classes: int = 10, width: int = 16) -> NetworkSpec:
    """3 conv layers (3x3, stride 2, padding 1, ReLU) x ``width``, global average pooling, dense."""
    convs = tuple(LayerSpec("conv", in_channels if i == 0 else width, width, (3, 3), stride=2, padding=1,
                            activation="relu") for i in range(3))
    return NetworkSpec(convs + (LayerSpec("linear", width, num_classes),), pool="avg")


def _spec_groups(spec: NetworkSpec) -> list[ChannelGroup]:
    keys = spec.state_dict_keys()
    groups = []
    for g in spec.permutation_groups():
        (w, b), (w_next, _) = keys[g.layer], keys[g.layer + 1]
        members = [(w, 0)] + ([(b, 0)] if b else []) + [(w_next, 1)]
        groups.append(ChannelGroup(f"layer{g.layer}", g.size, tuple(members)))
    return groups


# ---------------------------------------------------------------------------- public helpers
def build_cnn(config: CNNConfig, *, seed: int = 0) -> nn.Module:
    """A freshly initialised network (PyTorch default init under ``torch.manual_seed(seed)``)."""
    if config.architecture == "smallcnn":
        return small_cnn_spec(config.in_channels, config.num_classes, config.width).build_module(seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ResNet(config.in_channels, config.num_classes, config.width, config.blocks_per_stage)


def channel_groups(config: CNNConfig) -> list[ChannelGroup]:
    """The function-preserving channel permutations of the architecture (see :class:`ChannelGroup`)."""
    if config.architecture == "smallcnn":
        return _spec_groups(small_cnn_spec(config.in_channels, config.num_classes, config.width))
    return _resnet_groups(config)


def kernel_keys(state_dict: dict[str, Tensor]) -> list[str]:
    """State-dict keys of the 3x3 convolution weights ``[out, in, 3, 3]``, in forward order —
    the kernels a NeRN predictor reconstructs (1x1 shortcuts, BN and dense layers are kept)."""
    return [k for k, v in state_dict.items() if k.endswith("weight") and v.dim() == 4 and tuple(v.shape[2:]) == (3, 3)]


def feature_modules(config: CNNConfig) -> list[str]:
    """Names of the modules whose outputs feature-map distillation matches: the stem and every
    residual block of a ResNet; every conv layer's activation of the small CNN."""
    if config.architecture == "smallcnn":
        spec = small_cnn_spec(config.in_channels, config.num_classes, config.width)
        # build_module puts the activation right after each layer; its index follows the layer's.
        return [str(int(w.split(".")[0]) + 1) for (w, _), layer in zip(spec.state_dict_keys(), spec.layers)
                if layer.kind == "conv"]
    n = config.blocks_per_stage
    return ["bn1"] + [f"layer{s}.{b}" for s in range(1, 4) for b in range(n)]


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_cnn(path: str | os.PathLike[str], model: nn.Module, config: CNNConfig,
             extra: dict[str, object] | None = None) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors) with ``config`` and ``extra``
    (JSON-encoded values, e.g. dataset and accuracy) as metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = config.to_metadata() | {k: json.dumps(v) for k, v in (extra or {}).items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)  # a killed run never leaves half a file under the real name
    return path


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; :class:`ModelFileError` naming the file otherwise."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({e})") from None


def load_cnn(path: str | os.PathLike[str]) -> tuple[nn.Module, CNNConfig, dict[str, object]]:
    """The network in a file written by :func:`save_cnn` (in eval mode), its config and the
    extra metadata. Raises :class:`ModelFileError` for missing, corrupt or foreign files."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FILE_FORMAT:
        raise ModelFileError(f"{path}: not a weightspace CNN file (metadata format {meta.get('format')!r}, "
                             f"expected {FILE_FORMAT!r}); write one with `weightspace nern train-reference`")
    try:
        config = CNNConfig.from_metadata(meta)
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from None
    model = build_cnn(config)
    load_state_dict_checked(model, tensors, str(path))
    extra = {k: json.loads(v) for k, v in meta.items() if k not in config.to_metadata()}
    return model.eval(), config, extra


def load_state_dict_checked(model: nn.Module, tensors: dict[str, Tensor], where: str) -> None:
    """``model.load_state_dict(tensors)`` with an error that names missing, unexpected and
    mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ModelFileError(f"{where}: tensors do not match the architecture: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}, wrong shapes {shapes[:5]}")
    model.load_state_dict(tensors)
