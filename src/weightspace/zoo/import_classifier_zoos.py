"""Convert published zoos of trained classifiers into weightspace zoos (no pickle executed:
``torch.load(..., weights_only=True)``; numpy arrays with ``allow_pickle=False``).

Small CNN Zoo (Unterthiner et al. 2020; layout from their README and NFN's
``experiments/data_utils.py::ZooDataset``)::

    <root>/weights.npy          [N, P] float32, one flattened checkpoint per row (Keras order)
    <root>/metrics.csv(.gz)     one row per checkpoint: config.* hyperparameters, step, modeldir,
                                train/test accuracy and loss
    <root>/layout.csv           varname, start_idx, end_idx, shape: where each tensor sits in a row

  Keras kernels are ``[kh, kw, in, out]`` (conv) and ``[in, out]`` (dense); they are
  transposed to ``[out, in, kh, kw]`` / ``[out, in]``. Their CNN: Conv2D 3x3, stride 2,
  'valid' padding, global average pooling, dense; inputs grayscale in [-1, 1]. Rows with
  non-finite weights (runs that diverged) are skipped and counted.

Model Zoos (Schürholt et al. 2022; layout from their ``checkpoints_to_datasets/dataset_base.py``
and ``model_definitions/def_net.py``)::

    <root>/<model folder>/params.json                        the run's config ("model::nlin", "optim::lr", ...)
    <root>/<model folder>/result.json                        one JSON line per epoch (training_iteration, test_acc, ...)
    <root>/<model folder>/checkpoint_<e>[or :06d]/checkpoints a state dict, keys module_list.<i>.weight / .bias

  Their CNNs put 2x2 max pooling after conv 1 and 2 and flatten a ``C x h x w`` map into
  the first dense layer. That dense layer is stored as a conv with an ``h x w`` kernel
  (the same linear map on the flattened map, and the same channel symmetry) followed by
  pooling over its 1 x 1 output; the max pooling itself has no weights and is recorded in
  provenance, so `weightspace.forward` of these specs does not reproduce their function.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from weightspace._progress import disabled
from weightspace.core.spec import LayerSpec, NetworkSpec
from weightspace.core.weights import Weights
from weightspace.zoo.store import Zoo, ZooWriter, assign_splits

RUN_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu", "leakyrelu": "leaky_relu",
                "leaky_relu": "leaky_relu", "linear": "identity", "identity": "identity"}


def _activation(name: Any, where: str) -> str:
    key = str(name).lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"{where}: activation {name!r} is not supported; known: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[key]


def _run_splits(num_runs: int, seed: int) -> np.ndarray:
    return assign_splits(num_runs, RUN_SPLITS, seed=seed)


# ---------------------------------------------------------------------- Small CNN Zoo
def _read_layout(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: layout.csv is missing")
    layout = pd.read_csv(path)
    need = {"varname", "start_idx", "end_idx", "shape"}
    if not need <= set(layout.columns):
        raise ValueError(f"{path}: needs columns {sorted(need)}, has {list(layout.columns)}")
    rows = []
    for i, r in layout.iterrows():
        try:  # a tuple literal such as "(3, 3, 1, 16)"; never eval'd
            shape = tuple(int(s) for s in ast.literal_eval(str(r["shape"])))
        except (ValueError, SyntaxError):
            raise ValueError(f"{path}: row {i}: shape {r['shape']!r} is not a tuple of ints") from None
        if int(r["end_idx"]) - int(r["start_idx"]) != math.prod(shape):
            raise ValueError(f"{path}: row {i} ({r['varname']}): {r['start_idx']}..{r['end_idx']} does not hold shape {shape}")
        kind = "kernel" if str(r["varname"]).endswith("kernel:0") else "bias" if str(r["varname"]).endswith("bias:0") else None
        if kind is None:
            raise ValueError(f"{path}: row {i}: variable {r['varname']!r} is neither a kernel nor a bias")
        rows.append({"kind": kind, "start": int(r["start_idx"]), "end": int(r["end_idx"]), "shape": shape, "name": r["varname"]})
    return rows


def _small_cnn_spec(layout: list[dict[str, Any]], stride: int, path: Path) -> NetworkSpec:
    layers = []
    kernels = [r for r in layout if r["kind"] == "kernel"]
    biases = {r["name"].rsplit("/", 1)[0] for r in layout if r["kind"] == "bias"}
    for r in kernels:
        bias = r["name"].rsplit("/", 1)[0] in biases
        if len(r["shape"]) == 4:
            kh, kw, cin, cout = r["shape"]
            layers.append(LayerSpec("conv", cin, cout, (kh, kw), stride=stride, bias=bias, activation="relu"))
        elif len(r["shape"]) == 2:
            layers.append(LayerSpec("linear", r["shape"][0], r["shape"][1], bias=bias))
        else:
            raise ValueError(f"{path}: kernel {r['name']!r} has shape {r['shape']}; expected 4D (conv) or 2D (dense)")
    try:
        return NetworkSpec(tuple(layers), pool="avg" if layers and layers[0].kind == "conv" else "none")
    except ValueError as e:
        raise ValueError(f"{path}: layer shapes do not form one network ({e})") from None


def _unflatten_keras(rows: np.ndarray, layout: list[dict[str, Any]], spec: NetworkSpec) -> Weights:
    ws, bs = [], []
    kernels = [r for r in layout if r["kind"] == "kernel"]
    by_layer = {r["name"].rsplit("/", 1)[0]: r for r in layout if r["kind"] == "bias"}
    for r, layer in zip(kernels, spec.layers):
        t = torch.from_numpy(np.ascontiguousarray(rows[:, r["start"]:r["end"]])).reshape(len(rows), *r["shape"])
        t = t.permute(0, 4, 3, 1, 2) if t.dim() == 5 else t.transpose(1, 2)  # Keras -> [out, in, *kernel]
        ws.append(t.contiguous().unsqueeze(1))
        b = by_layer.get(r["name"].rsplit("/", 1)[0])
        bs.append(None if b is None else torch.from_numpy(np.ascontiguousarray(rows[:, b["start"]:b["end"]])).unsqueeze(1))
    return Weights(spec, tuple(ws), tuple(bs))


def import_small_cnn_zoo(root: str | os.PathLike[str], out: str | os.PathLike[str], *, stride: int = 2, seed: int = 0,
                         shard_size: int = 1024, progress: bool = False) -> Zoo:
    """Convert a Small CNN Zoo folder (module docstring) into a zoo at ``out``.

    Table (the classifier-zoo contract): ``run`` (index of the run's ``modeldir``), ``epoch``
    (their ``step``), ``lr``, ``weight_decay`` (their L2), ``dropout``, ``init`` (``w_init``),
    ``activation``, ``optimizer``, ``train_fraction``, ``seed``, the four metrics, ``gap``,
    ``split`` (seeded, by run), plus ``init_std``, ``b_init`` and ``source_row``.
    """
    root = Path(root)
    wfile = root / "weights.npy"
    mfile = next((root / f for f in ("metrics.csv.gz", "metrics.csv") if (root / f).is_file()), None)
    if not wfile.is_file() or mfile is None:
        raise FileNotFoundError(f"{root}: expected weights.npy and metrics.csv(.gz)")
    try:
        data = np.load(wfile, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{wfile}: not a plain numpy array ({e})") from None
    metrics = pd.read_csv(mfile)
    layout = _read_layout(root / "layout.csv")
    if data.ndim != 2 or len(data) != len(metrics):
        raise ValueError(f"{wfile}: shape {data.shape} does not match {len(metrics)} rows of {mfile.name}")
    if max(r["end"] for r in layout) != data.shape[1]:
        raise ValueError(f"{root / 'layout.csv'}: covers {max(r['end'] for r in layout)} columns, weights.npy has {data.shape[1]}")
    spec = _small_cnn_spec(layout, stride, root / "layout.csv")
    cols = {"lr": "config.learning_rate", "weight_decay": "config.l2reg", "dropout": "config.dropout",
            "init": "config.w_init", "activation": "config.activation", "optimizer": "config.optimizer",
            "train_fraction": "config.train_fraction", "seed": "config.random_seed", "init_std": "config.init_std",
            "b_init": "config.b_init", "epoch": "step", "train_accuracy": "train_accuracy",
            "test_accuracy": "test_accuracy", "train_loss": "train_loss", "test_loss": "test_loss"}
    missing = [c for c in [*cols.values(), "modeldir"] if c not in metrics.columns]
    if missing:
        raise ValueError(f"{mfile}: missing columns {missing}")
    finite = [np.isfinite(data[lo:lo + 4096]).all(1) for lo in range(0, len(data), 4096)]  # in chunks: a memory map
    keep = np.flatnonzero(np.concatenate(finite) if finite else np.zeros(0, bool))
    runs = {d: i for i, d in enumerate(pd.unique(metrics["modeldir"]))}
    split = _run_splits(len(runs), seed)
    table = pd.DataFrame({k: metrics[v].to_numpy() for k, v in cols.items()})
    table["activation"] = [_activation(a, str(mfile)) for a in table["activation"]]
    table["run"] = metrics["modeldir"].map(runs).to_numpy()
    table["gap"] = table["train_accuracy"] - table["test_accuracy"]
    table["split"] = split[table["run"].to_numpy()]
    table["source_row"] = np.arange(len(table))
    table = table.iloc[keep].reset_index(drop=True)
    writer = ZooWriter(out, spec, shard_size=shard_size, num_networks=len(table), provenance={
        "kind": "classifiers", "dataset": f"small-cnn-zoo:{root.resolve()}", "seed": seed, "run_splits": RUN_SPLITS,
        "spec_note": "activation varies per run: see the 'activation' column and spec_for_row",
        "imported_from": {"format": "small-cnn-zoo", "root": str(root.resolve()), "stride": stride,
                          "inputs": "grayscale, scaled to [-1, 1]", "padding": "valid",
                          "skipped_nonfinite": int(len(metrics) - len(keep))}})
    todo = [k for k in range(-(-len(table) // shard_size)) if k not in writer.completed_shards()]
    for k in tqdm(todo, disable=disabled(progress), desc="importing", unit="shard"):
        part = table.iloc[k * shard_size:(k + 1) * shard_size]
        weights = _unflatten_keras(np.asarray(data[part["source_row"].to_numpy()], dtype=np.float32), layout, spec)
        writer.write_shard(k, weights, {c: part[c].tolist() for c in part.columns})
    return writer.finalize()


# ---------------------------------------------------------------------- Model Zoos (Schürholt et al.)
_MODULE_KEY = re.compile(r"^module_list\.(\d+)\.(weight|bias)$")
_CKPT_DIR = re.compile(r"^checkpoint_(\d+)$")


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; name the file
        raise ValueError(f"{path}: cannot load as a weights-only state dict ({e})") from e
    if isinstance(sd, dict) and "model_state_dict" in sd:
        sd = sd["model_state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return {k: v for k, v in sd.items() if _MODULE_KEY.match(k)}


def _model_zoo_spec(sd: dict[str, torch.Tensor], activation: str, path: Path) -> tuple[NetworkSpec, list[tuple[str, str | None]]]:
    idx = sorted({int(_MODULE_KEY.match(k).group(1)) for k in sd})
    if not idx:
        raise ValueError(f"{path}: no module_list.<i>.weight keys")
    layers, keys, prev = [], [], None
    for i in idx:
        w, bkey = sd[f"module_list.{i}.weight"], f"module_list.{i}.bias"
        bias = bkey in sd
        if w.dim() == 4:
            layers.append(LayerSpec("conv", w.shape[1], w.shape[0], tuple(w.shape[2:]), bias=bias, activation=activation))
        elif w.dim() == 2:
            cin = w.shape[1]
            if prev is not None and prev.kind == "conv" and cin != prev.out_features:
                side = math.isqrt(cin // prev.out_features)  # a flattened C x h x w map: a conv with an h x w kernel
                if side * side * prev.out_features != cin:
                    raise ValueError(f"{path}: module_list.{i} takes {cin} inputs, not a square map of {prev.out_features} channels")
                layers.append(LayerSpec("conv", prev.out_features, w.shape[0], (side, side), bias=bias, activation=activation))
            else:
                layers.append(LayerSpec("linear", cin, w.shape[0], bias=bias, activation=activation))
        else:
            raise ValueError(f"{path}: module_list.{i}.weight has shape {tuple(w.shape)}")
        keys.append((f"module_list.{i}.weight", bkey if bias else None))
        prev = layers[-1]
    layers[-1] = replace(layers[-1], activation="identity")
    try:
        spec = NetworkSpec(tuple(layers), pool="avg" if layers[0].kind == "conv" else "none")
    except ValueError as e:
        raise ValueError(f"{path}: layer shapes do not form one network ({e})") from None
    return spec, keys


def _read_results(path: Path) -> dict[int, dict[str, Any]]:
    if not path.is_file():
        return {}
    out = {}
    for n, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {n + 1} is not JSON ({e})") from None
        if "training_iteration" in r:
            out[int(r["training_iteration"])] = r
    return out


def _first(d: dict[str, Any], *names: str) -> Any:
    return next((d[n] for n in names if n in d), float("nan"))


def import_model_zoo(root: str | os.PathLike[str], out: str | os.PathLike[str], *, epochs: list[int] | None = None,
                     seed: int = 0, shard_size: int = 1024, progress: bool = False) -> Zoo:
    """Convert a Model Zoos folder (module docstring) into a zoo at ``out``: one row per
    checkpoint of every model folder (``epochs`` keeps only those), in sorted folder order.

    Table: ``run`` (folder index), ``epoch``, ``lr``, ``weight_decay``, ``dropout``, ``init``,
    ``activation``, ``optimizer``, ``seed`` (from ``params.json``), ``train_accuracy``,
    ``test_accuracy``, ``train_loss``, ``test_loss`` (from ``result.json`` at that epoch;
    NaN where missing), ``gap``, ``split`` (seeded, by run) and ``path``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "params.json").is_file())
    if not folders:
        raise ValueError(f"{root}: no model folders with params.json")
    split = _run_splits(len(folders), seed)
    entries: list[dict[str, Any]] = []
    for run, folder in enumerate(folders):
        try:
            cfg = json.loads((folder / "params.json").read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{folder / 'params.json'}: not JSON ({e})") from None
        results = _read_results(folder / "result.json")
        for ck in sorted(folder.iterdir()):
            m = _CKPT_DIR.match(ck.name)
            if m is None or not (ck / "checkpoints").is_file() or (epochs is not None and int(m.group(1)) not in epochs):
                continue
            e = int(m.group(1))
            res = results.get(e, {})
            train_acc, test_acc = _first(res, "train_acc", "train_accuracy"), _first(res, "test_acc", "test_accuracy")
            entries.append({
                "file": ck / "checkpoints", "run": run, "epoch": e,
                "lr": float(_first(cfg, "optim::lr")), "weight_decay": float(_first(cfg, "optim::wd")),
                "dropout": float(_first(cfg, "model::dropout")), "init": str(cfg.get("model::init_type", "")),
                "activation": _activation(cfg.get("model::nlin", "relu"), str(folder / "params.json")),
                "optimizer": str(cfg.get("optim::optimizer", "")), "seed": int(cfg.get("seed", -1)),
                "train_accuracy": float(train_acc), "test_accuracy": float(test_acc),
                "train_loss": float(_first(res, "loss_train", "train_loss")),
                "test_loss": float(_first(res, "loss_test", "test_loss")),
                "gap": float(train_acc) - float(test_acc), "split": str(split[run]),
                "path": ck.relative_to(root).as_posix(),
            })
    if not entries:
        raise ValueError(f"{root}: no checkpoint_<epoch>/checkpoints files")
    first = _load_state_dict(entries[0]["file"])
    spec, keys = _model_zoo_spec(first, "relu", entries[0]["file"])
    dense_as_conv = [i for i, (wk, _) in enumerate(keys) if first[wk].dim() == 2 and spec.layers[i].kind == "conv"]
    writer = ZooWriter(out, spec, shard_size=shard_size, num_networks=len(entries), provenance={
        "kind": "classifiers", "dataset": f"model-zoos:{root.resolve()}", "seed": seed, "run_splits": RUN_SPLITS,
        "spec_note": "activation varies per run: see the 'activation' column and spec_for_row",
        "imported_from": {"format": "model-zoos", "root": str(root.resolve()), "keys": [list(k) for k in keys],
                          "dense_stored_as_conv": dense_as_conv,
                          "not_in_spec": "2x2 max pooling after the first two conv layers of their CNNs"}})
    todo = [k for k in range(-(-len(entries) // shard_size)) if k not in writer.completed_shards()]
    for k in tqdm(todo, disable=disabled(progress), desc="importing", unit="shard"):
        chunk = entries[k * shard_size:(k + 1) * shard_size]
        sds = []
        for e in chunk:
            sd = _load_state_dict(e["file"])
            for (wk, _), layer in zip(keys, spec.layers):  # a flattened dense weight becomes its conv kernel
                if wk in sd and sd[wk].dim() == 2 and layer.kind == "conv":
                    sd[wk] = sd[wk].reshape(layer.weight_shape)
            sds.append(sd)
        weights = Weights.from_state_dicts(sds, spec, keys=keys)
        writer.write_shard(k, weights, {c: [e[c] for e in chunk] for c in chunk[0] if c != "file"})
    return writer.finalize()


__all__ = ["import_model_zoo", "import_small_cnn_zoo"]
