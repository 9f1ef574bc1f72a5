"""`Weights`: an immutable batch of networks that share one `NetworkSpec`.

Axis order (never transposed silently):

- ``weights[i]``: ``[B, C, out_i, in_i, *kernel_i]``
- ``biases[i]``:  ``[B, C, out_i]``, or ``None`` where layer i has no bias

``B`` counts networks, ``C`` counts feature channels: raw weights have ``C = 1``; the
hidden representations of weight-space models carry ``C > 1`` features per entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from weightspace.core.spec import NetworkSpec

Index = int | slice | Sequence[int] | Tensor


@dataclass(frozen=True, eq=False)
class Weights:
    spec: NetworkSpec
    weights: tuple[Tensor, ...]
    biases: tuple[Tensor | None, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(self.weights))
        object.__setattr__(self, "biases", tuple(self.biases))
        n = self.spec.num_layers
        if len(self.weights) != n or len(self.biases) != n:
            raise ValueError(f"spec has {n} layers, got {len(self.weights)} weights and {len(self.biases)} biases")
        b, c = self.weights[0].shape[:2] if self.weights[0].dim() >= 2 else (-1, -1)
        for i, (w, bias, layer) in enumerate(zip(self.weights, self.biases, self.spec.layers)):
            if tuple(w.shape) != (b, c, *layer.weight_shape):
                raise ValueError(f"layer {i}: weight shape {tuple(w.shape)}, expected [B={b}, C={c}, *{layer.weight_shape}]")
            if layer.bias != (bias is not None):
                raise ValueError(f"layer {i}: bias {'missing' if layer.bias else 'given'} but the spec says bias={layer.bias}")
            if bias is not None and tuple(bias.shape) != (b, c, layer.out_features):
                raise ValueError(f"layer {i}: bias shape {tuple(bias.shape)}, expected [{b}, {c}, {layer.out_features}]")

    # ------------------------------------------------------------------ facts
    @property
    def batch_size(self) -> int:
        return self.weights[0].shape[0]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def channels(self) -> int:
        return self.weights[0].shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def tensors(self) -> list[Tensor]:
        """All tensors, layer by layer, weight before bias (the flatten order)."""
        out: list[Tensor] = []
        for w, b in zip(self.weights, self.biases):
            out.append(w)
            if b is not None:
                out.append(b)
        return out

    def __repr__(self) -> str:
        return f"Weights(B={self.batch_size}, C={self.channels}, dtype={self.dtype}, spec={self.spec.describe()})"

    # ------------------------------------------------------------------ transforms
    def map(self, fn: Callable[[Tensor], Tensor]) -> Weights:
        """Apply ``fn`` to every tensor; ``fn`` must keep the leading ``[B, C]`` consistent."""
        return Weights(
            self.spec,
            tuple(fn(w) for w in self.weights),
            tuple(None if b is None else fn(b) for b in self.biases),
        )

    def to(self, *args, **kwargs) -> Weights:
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> Weights:
        return self.map(Tensor.detach)

    def clone(self) -> Weights:
        return self.map(Tensor.clone)

    def __getitem__(self, index: Index) -> Weights:
        """Select networks. Always returns a batch: an int index keeps ``B = 1``."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        return self.map(lambda t: t[index])

    @staticmethod
    def cat(batches: Sequence[Weights]) -> Weights:
        """Concatenate batches of one spec along B."""
        if not batches:
            raise ValueError("nothing to concatenate")
        spec = batches[0].spec
        for i, w in enumerate(batches):
            if w.spec != spec:
                raise ValueError(f"batch {i} has a different spec")
        return Weights(
            spec,
            tuple(torch.cat([w.weights[i] for w in batches]) for i in range(spec.num_layers)),
            tuple(
                None if batches[0].biases[i] is None else torch.cat([w.biases[i] for w in batches])
                for i in range(spec.num_layers)
            ),
        )

    def with_biases_filled(self) -> Weights:
        """Zeros in place of missing biases (for models that treat every layer alike).
        The result no longer matches a spec without bias, so its spec marks all biases."""
        from dataclasses import replace

        spec = NetworkSpec(tuple(replace(layer, bias=True) for layer in self.spec.layers), pool=self.spec.pool)
        biases = tuple(
            b if b is not None else w.new_zeros(w.shape[:3]) for w, b in zip(self.weights, self.biases)
        )
        return Weights(spec, self.weights, biases)

    # ------------------------------------------------------------------ flat vectors
    def flatten(self) -> Tensor:
        """``[B, C, P]``: each network's parameters in `tensors()` order."""
        b, c = self.batch_size, self.channels
        return torch.cat([t.reshape(b, c, -1) for t in self.tensors()], dim=2)

    @classmethod
    def unflatten(cls, spec: NetworkSpec, flat: Tensor) -> Weights:
        """Inverse of `flatten`: ``flat`` is ``[B, C, P]`` or ``[B, P]`` (then C = 1)."""
        if flat.dim() == 2:
            flat = flat.unsqueeze(1)
        if flat.dim() != 3 or flat.shape[2] != spec.num_params:
            raise ValueError(f"expected [B, C, {spec.num_params}], got {tuple(flat.shape)}")
        b, c = flat.shape[:2]
        pos, ws, bs = 0, [], []
        for layer in spec.layers:
            n = layer.num_params - (layer.out_features if layer.bias else 0)
            ws.append(flat[:, :, pos : pos + n].reshape(b, c, *layer.weight_shape))
            pos += n
            if layer.bias:
                bs.append(flat[:, :, pos : pos + layer.out_features])
                pos += layer.out_features
            else:
                bs.append(None)
        return cls(spec, tuple(ws), tuple(bs))

    @classmethod
    def from_tensors(cls, spec: NetworkSpec, tensors: Sequence[Tensor]) -> Weights:
        """Raw weights (C = 1) from stacked per-layer tensors without the C axis, in
        `tensors()` order: ``W_i [B, out, in, *k]`` then ``b_i [B, out]`` where the layer has
        a bias. The result holds views (``unsqueeze``), so gradients flow back to ``tensors``;
        the form in which fitters and population trainers keep their parameters."""
        it = iter(tensors)
        ws, bs = [], []
        for layer in spec.layers:
            ws.append(next(it).unsqueeze(1))
            bs.append(next(it).unsqueeze(1) if layer.bias else None)
        if next(it, None) is not None:
            raise ValueError(f"more tensors than the {spec.num_layers} layers of the spec take")
        return cls(spec, tuple(ws), tuple(bs))

    # ------------------------------------------------------------------ modules and state dicts
    @classmethod
    def from_modules(cls, modules: Iterable[nn.Module], spec: NetworkSpec | None = None) -> Weights:
        """Stack the parameters of modules (read with `NetworkSpec.from_module` if no spec)."""
        modules = list(modules)
        if not modules:
            raise ValueError("no modules given")
        spec = spec or NetworkSpec.from_module(modules[0])
        per = [spec.parameters_of(m) for m in modules]
        ws = tuple(torch.stack([p[i][0].detach() for p in per]).unsqueeze(1) for i in range(spec.num_layers))
        bs = tuple(
            torch.stack([p[i][1].detach() for p in per]).unsqueeze(1) if spec.layers[i].bias else None
            for i in range(spec.num_layers)
        )
        return cls(spec, ws, bs)

    @classmethod
    def from_state_dicts(
        cls,
        state_dicts: Iterable[Mapping[str, Tensor]],
        spec: NetworkSpec,
        keys: Sequence[tuple[str, str | None]] | None = None,
    ) -> Weights:
        """Stack state dicts. ``keys`` gives (weight key, bias key) per layer; the default
        is the layout of `NetworkSpec.build_module`. Every key and shape is checked."""
        keys = tuple(keys) if keys is not None else spec.state_dict_keys()
        if len(keys) != spec.num_layers:
            raise ValueError(f"{len(keys)} key pairs for {spec.num_layers} layers")
        ws: list[list[Tensor]] = [[] for _ in keys]
        bs: list[list[Tensor]] = [[] for _ in keys]
        count = 0
        for n, sd in enumerate(state_dicts):
            count += 1
            for i, ((wk, bk), layer) in enumerate(zip(keys, spec.layers)):
                if wk not in sd:
                    raise KeyError(f"state dict {n}: missing {wk!r} (layer {i})")
                if tuple(sd[wk].shape) != layer.weight_shape:
                    raise ValueError(f"state dict {n}: {wk!r} has shape {tuple(sd[wk].shape)}, spec says {layer.weight_shape}")
                ws[i].append(sd[wk])
                if layer.bias:
                    if bk is None or bk not in sd:
                        raise KeyError(f"state dict {n}: missing bias {bk!r} (layer {i})")
                    if tuple(sd[bk].shape) != (layer.out_features,):
                        raise ValueError(f"state dict {n}: {bk!r} has shape {tuple(sd[bk].shape)}, expected ({layer.out_features},)")
                    bs[i].append(sd[bk])
        if count == 0:
            raise ValueError("no state dicts given")
        return cls(
            spec,
            tuple(torch.stack(w).unsqueeze(1) for w in ws),
            tuple(torch.stack(b).unsqueeze(1) if layer.bias else None for b, layer in zip(bs, spec.layers)),
        )

    def to_state_dict(self, index: int = 0, keys: Sequence[tuple[str, str | None]] | None = None) -> dict[str, Tensor]:
        """The state dict of network ``index`` (raw weights only: C must be 1)."""
        if self.channels != 1:
            raise ValueError(f"to_state_dict needs raw weights (C = 1), these have C = {self.channels}")
        keys = tuple(keys) if keys is not None else self.spec.state_dict_keys()
        out: dict[str, Tensor] = {}
        for (wk, bk), w, b in zip(keys, self.weights, self.biases):
            out[wk] = w[index, 0].clone()
            if b is not None:
                out[bk] = b[index, 0].clone()
        return out

    def to_module(self, index: int = 0) -> nn.Sequential:
        """Build network ``index`` as an ``nn.Sequential`` (see `NetworkSpec.build_module`)."""
        module = self.spec.build_module()
        module.load_state_dict(self.to_state_dict(index))
        return module.to(self.dtype)
