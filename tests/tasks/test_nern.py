"""NeRN: reference CNNs' channel symmetries, function-preserving reordering, the predictor,
fit -> file -> reconstruction into the original architecture, and the CLI."""

from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.signals.images import ImageDataset
from weightspace.tasks.nern import NeRNConfig, fit_nern, load_nern, reconstruct, reconstruct_state, save_nern
from weightspace.tasks.nern_predictor import KernelLayout, KernelPredictor, PredictorConfig
from weightspace.tasks.nern_reorder import (
    invert,
    permute_state_dict,
    random_permutations,
    reorder,
    shortest_path_order,
    smoothness,
)
from weightspace.zoo.reference_cnns import (
    CNNConfig,
    ModelFileError,
    build_cnn,
    channel_groups,
    feature_modules,
    kernel_keys,
    load_cnn,
    save_cnn,
)

ARCHS = [CNNConfig("resnet8", 3, 5, width=4), CNNConfig("resnet14", 1, 10, width=3), CNNConfig("smallcnn", 1, 10, 5)]
IDS = [c.architecture for c in ARCHS]


def _randomised(config: CNNConfig, gen: torch.Generator) -> torch.nn.Module:
    """A float64 network in eval mode whose BN statistics and affine maps are not trivial, so a
    permutation that missed a BN tensor would change the outputs."""
    model = build_cnn(config, seed=0).double()
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=gen, dtype=v.dtype) + 0.5
        elif v.is_floating_point() and v.dim() == 1:  # BN affine maps and means, biases
            state[k] = torch.randn(v.shape, generator=gen, dtype=v.dtype)
    model.load_state_dict(state)
    return model.eval()


def _tiny_images(n: int = 60, channels: int = 1, side: int = 8, classes: int = 10) -> ImageDataset:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(n) % classes
    images = torch.rand(n, side, side, channels, generator=g) * 0.2
    images[torch.arange(n), labels % side, :, :] += 0.8  # a learnable class signal: a bright row
    split = ["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4)
    return ImageDataset(images.clamp(0, 1), labels, tuple(split), "tiny", tuple(str(c) for c in range(classes)))


# ---------------------------------------------------------------------------- symmetry and reordering
@pytest.mark.parametrize("config", ARCHS, ids=IDS)
def test_channel_groups_cover_every_hidden_axis_once(config):
    state = build_cnn(config).state_dict()
    members = [m for g in channel_groups(config) for m in g.members]
    assert len(members) == len(set(members))
    covered = set(members)
    for g in channel_groups(config):
        for key, axis in g.members:
            assert state[key].shape[axis] == g.size, (g.name, key)
    for key, v in state.items():
        if v.dim() == 0:  # BN's num_batches_tracked
            continue
        out_axis_hidden = not key.startswith(("fc.", "8."))  # the classifier's rows are the logits
        if out_axis_hidden:
            assert (key, 0) in covered, key
        first_layer = key in ("conv1.weight", "0.weight")  # its input axis is the image's channels
        if v.dim() >= 2 and not first_layer:
            assert (key, 1) in covered, key


@pytest.mark.parametrize("config", ARCHS, ids=IDS)
def test_reordering_leaves_outputs_unchanged(config, gen):
    model = _randomised(config, gen)
    x = torch.randn(4, config.in_channels, 12, 12, generator=gen, dtype=torch.float64)
    y = model(x)
    state, groups = model.state_dict(), channel_groups(config)
    new, perms, report = reorder(state, groups, kernel_keys(state))
    other = build_cnn(config).double().eval()
    for p in (perms, random_permutations(groups, gen)):
        other.load_state_dict(permute_state_dict(state, groups, p))
        torch.testing.assert_close(other(x), y, rtol=1e-10, atol=1e-10)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    assert report.after["cross_filter"] <= report.before["cross_filter"] + 1e-12
    back = permute_state_dict(new, groups, invert(perms))
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("config", ARCHS[:2], ids=IDS[:2])
def test_uncoupled_permutation_changes_outputs(config, gen):
    """The check above can fail: permuting one residual writer alone breaks the function."""
    model = _randomised(config, gen)
    x = torch.randn(4, config.in_channels, 12, 12, generator=gen, dtype=torch.float64)
    y = model(x)
    stream = next(g for g in channel_groups(config) if g.name.startswith("stream"))
    # One writer of the residual stream alone, not the others adding into it.
    key, axis = next(m for m in reversed(stream.members) if m[0].endswith("conv2.weight"))
    size = stream.size
    state = dict(model.state_dict())
    state[key] = state[key].index_select(axis, torch.arange(size).roll(1))
    model.load_state_dict(state)
    assert not torch.allclose(model(x), y, atol=1e-6)


def test_shortest_path_recovers_a_scrambled_line(gen):
    t = torch.linspace(0, 1, 40, dtype=torch.float64)
    points = torch.stack([t, t**2, torch.sin(3 * t)], 1)
    scramble = torch.randperm(40, generator=gen)
    order = shortest_path_order(points[scramble].numpy())
    recovered = scramble[torch.from_numpy(order)]
    assert torch.equal(recovered, torch.arange(40)) or torch.equal(recovered, torch.arange(40).flip(0))


def test_reordering_restores_hidden_smoothness_quickly(gen):
    """Kernels that vary smoothly with the channel index, scrambled by a random function-preserving
    permutation: the heuristic brings the smoothness back; ResNet-20 shapes take well under seconds."""
    config = CNNConfig("smallcnn", 1, 10, 32)
    state = build_cnn(config).state_dict()
    keys = kernel_keys(state)
    t = torch.linspace(0, 2, 32)
    for k in keys:
        o, i = state[k].shape[:2]
        grid = torch.sin(t[:o, None, None] + t[None, :i, None] + torch.arange(9) / 3)
        state[k] = grid.reshape(o, i, 3, 3)
    groups = channel_groups(config)
    scrambled = permute_state_dict(state, groups, random_permutations(groups, gen))
    _, _, report = reorder(scrambled, groups, keys)
    smooth = smoothness(state, keys)
    assert report.before["cross_filter"] > 2 * smooth["cross_filter"]
    assert report.after["cross_filter"] < 1.1 * smooth["cross_filter"]
    assert report.after["in_filter"] < 1.1 * smooth["in_filter"]
    big = build_cnn(CNNConfig("resnet20", 3, 10, 16)).state_dict()
    start = time.perf_counter()
    reorder(big, channel_groups(CNNConfig("resnet20", 3, 10, 16)), kernel_keys(big))
    assert time.perf_counter() - start < 15.0  # ~0.1 s on an idle core; generous for loaded machines


# ---------------------------------------------------------------------------- predictor
def test_kernel_layout_and_predictor_shapes():
    state = build_cnn(ARCHS[0]).state_dict()
    keys = kernel_keys(state)
    assert all(state[k].shape[2:] == (3, 3) for k in keys) and not any("shortcut" in k for k in keys)
    layout = KernelLayout.from_state_dict(state, keys)
    coords = layout.coordinates()
    assert coords.shape == (layout.num_kernels, 3)
    parts = layout.split(layout.gather(state))
    assert all(torch.equal(parts[k], state[k]) for k in keys)
    assert KernelLayout.from_json(layout.to_json()) == layout
    pred = KernelPredictor(layout, PredictorConfig(hidden=8, depth=2, frequencies=3), torch.ones(layout.num_layers))
    assert pred.encode(coords).shape == (layout.num_kernels, 3 * 7)
    assert pred.kernels(coords).shape == (layout.num_kernels, 9)
    assert len(feature_modules(ARCHS[0])) == 1 + 3 * ARCHS[0].blocks_per_stage


# ---------------------------------------------------------------------------- fit, file, reconstruction
TINY = NeRNConfig(PredictorConfig(hidden=16, depth=2, frequencies=4), warmup_epochs=1, epochs=1, batch_size=16,
                  kernels_per_step=64, progress=False)


@pytest.mark.parametrize("config", [CNNConfig("resnet8", 1, 10, 2), CNNConfig("smallcnn", 1, 10, 4)],
                         ids=["resnet8", "smallcnn"])
def test_reconstruction_loads_into_original_architecture_and_runs(config, tmp_path):
    data = _tiny_images()
    original = build_cnn(config, seed=3).eval()
    nern = fit_nern(original, config, data, TINY)
    path = save_nern(tmp_path / "p.safetensors", nern)
    loaded = load_nern(path)
    assert loaded.permutations.keys() == nern.permutations.keys()
    rebuilt = reconstruct(loaded)  # a fresh module of the original architecture, weights loaded
    assert type(rebuilt) is type(original)
    state, ref = rebuilt.state_dict(), original.state_dict()
    assert state.keys() == ref.keys() and all(state[k].shape == ref[k].shape for k in ref)
    x = torch.rand(3, 1, 8, 8)
    out = rebuilt(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    # Undoing the reordering or not: the same function.
    same = build_cnn(config).eval()
    same.load_state_dict(reconstruct_state(loaded, original_order=False))
    torch.testing.assert_close(same(x), out, rtol=1e-5, atol=1e-5)
    # The kept tensors (BN affine maps, shortcuts, classifier) come back exactly, in the original
    # order; BN running statistics are re-measured for the rebuilt kernels.
    for k in ref:
        if k not in kernel_keys(ref) and not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(state[k], ref[k], rtol=0, atol=0)
    recalibrated = [k for k in ref if k.endswith("running_var")]
    assert all(not torch.equal(state[k], ref[k]) for k in recalibrated)
    sizes = loaded.sizes()
    assert sizes["kernels"] + sizes["kept"] == sizes["network"]


def test_cnn_file_round_trip_and_errors(tmp_path):
    config = CNNConfig("resnet8", 1, 10, 2)
    model = build_cnn(config, seed=1).eval()
    path = save_cnn(tmp_path / "m.safetensors", model, config, {"dataset": "digits", "test_accuracy": 0.5})
    loaded, cfg, extra = load_cnn(path)
    assert cfg == config and extra == {"dataset": "digits", "test_accuracy": 0.5}
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ModelFileError, match="no such file"):
        load_cnn(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00not a safetensors file at all")
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_cnn(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="not a weightspace CNN file"):
        load_cnn(tmp_path / "foreign.safetensors")
    with pytest.raises(ModelFileError, match="not a NeRN predictor file"):
        load_nern(path)
    broken = dict(model.state_dict())
    broken.pop("fc.bias")
    save_file(broken, str(tmp_path / "short.safetensors"), metadata=config.to_metadata())
    with pytest.raises(ModelFileError, match="fc.bias"):
        load_cnn(tmp_path / "short.safetensors")
    with pytest.raises(ValueError, match="unknown architecture"):
        CNNConfig("resnet21")


def _text(result) -> str:
    return " ".join(result.output.split())  # rich wraps long lines


def test_cli_train_fit_reconstruct(tmp_path):
    runner = CliRunner()
    model, pred, rebuilt = tmp_path / "m.safetensors", tmp_path / "p.safetensors", tmp_path / "r.safetensors"
    r = runner.invoke(app, ["nern", "train-reference", "--arch", "smallcnn", "--dataset", "digits", "--width", "4",
                            "--epochs", "1", "--no-progress", "-o", str(model)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["nern", "fit", str(model), "-o", str(pred), "--hidden", "8", "--depth", "1",
                            "--warmup-epochs", "1", "--epochs", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "test accuracy: original" in _text(r) and "reconstructed" in _text(r)
    r = runner.invoke(app, ["nern", "reconstruct", str(pred), "-o", str(rebuilt), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output
    _, config, extra = load_cnn(rebuilt)
    assert config.architecture == "smallcnn" and 0.0 <= extra["test_accuracy"] <= 1.0
    r = runner.invoke(app, ["nern", "reconstruct", str(model), "-o", str(rebuilt)])
    assert r.exit_code == 2 and "not a NeRN predictor file" in _text(r)
    r = runner.invoke(app, ["nern", "fit", str(tmp_path / "none.safetensors"), "-o", str(pred)])
    assert r.exit_code == 2 and "none.safetensors does not exist" in _text(r)
