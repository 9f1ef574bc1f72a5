import json

from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.zoo.store import Zoo

runner = CliRunner()


def test_fit_inrs_info_and_train(tmp_path):
    out = tmp_path / "zoo"
    r = runner.invoke(app, ["zoo", "fit-inrs", "--dataset", "digits", "--limit", "12", "--steps", "20", "-o", str(out), "--shard-size", "16"])
    assert r.exit_code == 0, r.output
    zoo = Zoo.open(out)
    assert len(zoo) == 36  # 12 per split
    r = runner.invoke(app, ["zoo", "info", str(out)])
    assert r.exit_code == 0, r.output
    assert "linear(2->32) sine(omega=30)" in r.output and "train 12" in r.output and "psnr" in r.output
    r = runner.invoke(app, ["zoo", "info", str(out), "--json"])
    assert json.loads(r.output)["networks"] == 36
    r = runner.invoke(app, ["train", str(out), "--model", "dws", "--epochs", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output


def test_errors_are_clean(tmp_path):
    r = runner.invoke(app, ["zoo", "info", str(tmp_path)])
    assert r.exit_code == 2 and "zoo.json is missing" in r.output
    r = runner.invoke(app, ["zoo", "fit-inrs", "--dataset", "cifar-1000", "-o", str(tmp_path / "z")])
    assert r.exit_code == 2 and "cifar-1000" in r.output
    r = runner.invoke(app, ["models"])
    assert "dws" in r.output and "mlp" in r.output


def test_edit_and_mixup_commands(tmp_path):
    out = tmp_path / "zoo"
    r = runner.invoke(app, ["zoo", "fit-inrs", "--dataset", "digits", "--limit", "8", "--steps", "10", "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["edit", str(out), "--epochs", "1", "--no-progress", "--figure", str(tmp_path / "e.png")])
    assert r.exit_code == 0, r.output
    assert "test MSE" in r.output and (tmp_path / "e.png").exists()
    r = runner.invoke(app, ["edit", str(out), "--model", "dws", "--epochs", "1", "--no-progress"])
    assert r.exit_code == 2 and "equivariant" in r.output
    r = runner.invoke(app, ["train", str(out), "--model", "mlp", "--epochs", "1", "--mixup", "0.2", "--no-progress"])
    assert r.exit_code == 0, r.output
