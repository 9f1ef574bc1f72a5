"""``--device``: every command that computes takes it (the same option everywhere), a CUDA
device this machine lacks is refused in one line before any work, and the library functions
behind the commands give the same results with ``device="cpu"`` as with their default."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import typer
from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.cli_checks import Rule, commands, rule_for

runner = CliRunner()

# Commands that compute nothing a device could speed up; every other command takes --device.
# A new command goes here (with the reason) or gets the option.
NO_DEVICE = {
    "models": "lists the registry",
    "zoo info": "reads a zoo's metadata",
    "zoo verify": "reads and hashes files",
    "zoo import": "converts files into a zoo",
    "zoo export": "converts a zoo into files",
    "zoo import-classifiers": "converts checkpoints into a zoo",
}


def _click_commands(group, prefix=()):
    """``(path, click command)`` of every command the real parser knows."""
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (typer's or click's)
            yield from _click_commands(cmd, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), cmd


def test_every_computing_command_takes_device() -> None:
    cli = typer.main.get_command(app)
    found = dict(_click_commands(cli))
    assert set(found) == {path for path, _ in commands(app)}
    assert set(NO_DEVICE) <= set(found), f"NO_DEVICE names unknown commands: {sorted(set(NO_DEVICE) - set(found))}"
    missing, extra = [], []
    for path, cmd in found.items():
        opts = {o for p in cmd.params for o in getattr(p, "opts", ())}
        has = "--device" in opts
        if path in NO_DEVICE and has:
            extra.append(path)
        elif path not in NO_DEVICE and not has:
            missing.append(path)
        if has:  # one option everywhere: named device, checked by the device rule, with its shared help
            param = next(p for p in cmd.params if "--device" in getattr(p, "opts", ()))
            assert param.name == "device" and param.default in ("auto", "cpu"), path
            assert rule_for(path, "device").kind == "device", path
            assert "cpu, cuda, or auto" in (param.help or ""), path
    assert not missing, f"computing commands without --device (add it, or list them in NO_DEVICE): {missing}"
    assert not extra, f"commands in NO_DEVICE that take --device: {extra}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "gpu", "cuda:0"])
@pytest.mark.parametrize("args", [
    ["functa", "fit", "-o", "{tmp}/f"],
    ["compress", "{file}", "-o", "{tmp}/a.wsc", "--bpp", "1"],
    ["zoo", "fit-inrs", "-o", "{tmp}/zoo"],
    ["train", "{tmp}/zoo"],
])
def test_cuda_without_a_cuda_device_is_one_line_before_any_work(tmp_path, args, device) -> None:
    (tmp_path / "zoo").mkdir()
    (tmp_path / "a_file").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    r = runner.invoke(app, [a.format(tmp=tmp_path, file=tmp_path / "a_file") for a in args] + ["--device", device])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert f"--device {device}: no CUDA device is available (this torch build: {torch.__version__})" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_device_rule(monkeypatch) -> None:
    rule = Rule("device")
    assert rule.check("--device", "auto") is None and rule.check("--device", "cpu") is None
    assert "must be one of" in rule.check("--device", "tpu")
    assert "must be one of" in rule.check("--device", "cuda:x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA device is available" in rule.check("--device", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for ok in ("cuda", "gpu", "cuda:0", "cuda:1"):
        assert rule.check("--device", ok) is None, ok
    assert rule.check("--device", "cuda:2") == "--device cuda:2: this machine has 2 CUDA devices (cuda:0 .. cuda:1)"


def test_auto_and_cpu_are_checked_without_importing_torch() -> None:
    code = ("import sys; from weightspace.cli_checks import Rule\n"
            "assert Rule('device').check('--device', 'auto') is None and Rule('device').check('--device', 'cpu') is None\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


# ---------------------------------------------------------------------------- the library
def _tiny_signals(n: int = 6, side: int = 6):
    from weightspace.signals.base import grid_coordinates

    g = torch.Generator().manual_seed(0)
    return grid_coordinates((side, side)), torch.rand(n, side * side, 1, generator=g)


def test_meta_learning_on_cpu_explicitly_is_the_default() -> None:
    from weightspace.inr.meta import MetaConfig, encode, meta_train, reconstruct
    from weightspace.inr.modulated import ModulatedSiren, ModulatedSirenConfig

    coords, values = _tiny_signals()
    runs = []
    for kwargs in ({}, {"device": "cpu"}):
        model = ModulatedSiren(ModulatedSirenConfig(2, 1, hidden=(8, 8), latent_dim=4))
        if kwargs:
            model.to(**kwargs)
        meta_train(model, coords, values, MetaConfig(steps=3, batch_size=4, inner_steps=2, progress=False))
        z = encode(model, values, 2, coords=coords)
        runs.append((z, reconstruct(model, z, coords)))
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert runs[0][0].device.type == "cpu"


def test_hyperinr_on_cpu_explicitly_is_the_default() -> None:
    from weightspace.inr.hyper import HyperINRConfig, encode_codes, fit_hyperinr

    coords, values = _tiny_signals()
    cfg = HyperINRConfig(code_dim=4, hidden=(16,), inr_hidden=(8,), steps=4, batch_size=3, points_per_step=20,
                         encode_steps=3)
    a, b = fit_hyperinr(coords, values, cfg, seed=1), fit_hyperinr(coords, values, cfg, seed=1, device="cpu")
    assert torch.equal(a.codes, b.codes) and torch.equal(a.psnr, b.psnr)
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    codes, psnr = encode_codes(b.model, coords, values[:2])
    assert codes.device.type == "cpu" and psnr.shape == (2,)


def test_codecs_on_cpu_explicitly_are_the_default() -> None:
    from weightspace.compress import pyramid
    from weightspace.compress.codec import compress, decompress
    from weightspace.compress.coin import CoinConfig
    from weightspace.compress.coinpp import train_base
    from weightspace.compress.signal import Signal
    from weightspace.inr.meta import MetaConfig
    from weightspace.inr.modulated import ModulatedSirenConfig

    values = torch.rand(8, 8, 1, generator=torch.Generator().manual_seed(0))
    signal = Signal(values, "image", {})
    coin = [compress(signal, bpp=8, coin_config=CoinConfig(steps=5, bits=8, qat_steps=2), **kw) for kw in ({}, {"device": "cpu"})]
    assert coin[0].data == coin[1].data
    assert torch.equal(decompress(coin[0].data).values, decompress(coin[0].data, device="cpu").values)

    patches = torch.rand(10, 16, 1, generator=torch.Generator().manual_seed(1))
    config = ModulatedSirenConfig(2, 1, hidden=(8,), latent_dim=4)
    meta = MetaConfig(steps=2, batch_size=4, inner_steps=1, progress=False)
    bases = [train_base(patches, "image", (4, 4), config, meta, **kw) for kw in ({}, {"device": "cpu"})]
    assert bases[0].id == bases[1].id

    crops = torch.rand(4, 8, 8, 1, generator=torch.Generator().manual_seed(2))
    pconfig = pyramid.PyramidConfig(axes=2, channels=1, levels=2, hidden=4, conv=4, context=2)
    train = pyramid.TrainConfig(steps=3, batch_size=2)
    with pytest.warns(UserWarning, match="updates"):
        pbases = [pyramid.train_pyramid_base(crops, "image", pconfig, train, fit_steps=3, **kw)
                  for kw in ({}, {"device": "cpu"})]
    assert pbases[0].id == pbases[1].id
    files = [compress(signal, method="coin++", bpp=4, base=pbases[0], search=1, fit_steps=3) for _ in range(2)]
    assert files[0].data == files[1].data


def test_hyperrep_probe_and_sample_on_cpu_explicitly_are_the_default(tmp_path) -> None:
    """`hyperrep probe` / `sample` with ``--device cpu`` print and write exactly what they do by
    default on this machine (an untrained model: the point is the plumbing, not the quality)."""
    import json

    from tests.tasks.hyperrep_zoo import make_zoo
    from weightspace.models.hyperrep import HyperRepConfig, HyperRepresentation
    from weightspace.tasks.hyperrep import save_hyperrep

    zoo = make_zoo(tmp_path / "zoo", runs=12)
    torch.manual_seed(0)
    model = HyperRepresentation(zoo.spec, HyperRepConfig(d_model=16, num_heads=4, encoder_layers=1, decoder_layers=1,
                                                         latent_tokens=2, latent_dim=4))
    model.fit_normalisation(zoo.load("train")[0])
    path = save_hyperrep(tmp_path / "hr.safetensors", model)
    outputs = []
    for extra in ([], ["--device", "cpu"]):
        probe = tmp_path / f"probe{len(extra)}.json"
        r = runner.invoke(app, ["hyperrep", "probe", str(zoo.path), str(path), "--probes", "linear",
                                "--targets", "test_accuracy,epoch", "--json", str(probe), *extra])
        assert r.exit_code == 0, r.output
        s = runner.invoke(app, ["hyperrep", "sample", str(zoo.path), str(path), "-n", "4", "--test-images", "30",
                                "--bandwidth", "0.5", "--finetune-steps", "2", *extra])
        assert s.exit_code == 0, s.output
        outputs.append((json.loads(probe.read_text()), s.output))
    assert outputs[0] == outputs[1]
