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
    assert "dwsnets-mnist-inr" in r.output and "mnist-inr 85.71%" in r.output


def test_edit_and_mixup_commands(tmp_path):
    out = tmp_path / "zoo"
    r = runner.invoke(app, ["zoo", "fit-inrs", "--dataset", "digits", "--limit", "8", "--steps", "10", "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["edit", str(out), "--epochs", "1", "--no-progress", "--figure", str(tmp_path / "e.png")])
    assert r.exit_code == 0, r.output
    assert "test MSE" in r.output and (tmp_path / "e.png").exists()
    r = runner.invoke(app, ["edit", str(out), "--epochs", "1", "--no-progress", "-o", str(tmp_path / "run")])
    assert r.exit_code == 0 and "wrote" in r.output, r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path / "run"), str(out), "--device", "cpu"])
    assert r.exit_code == 0 and "against the dilated images (no edit:" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["apply", str(tmp_path / "run"), str(out), "--split", "test", "-o", str(tmp_path / "e.safetensors"),
                            "--device", "cpu"])
    assert r.exit_code == 0 and "edited networks" in r.output, r.output
    from safetensors.torch import load_file

    edited = load_file(str(tmp_path / "e.safetensors"))
    assert edited["layers.0.weight"].shape[0] == len(Zoo.open(out).split("test"))
    r = runner.invoke(app, ["apply", str(tmp_path / "run"), str(out)])  # a table is not what an edit gives
    assert r.exit_code == 2 and "-o EDITED.safetensors" in r.output
    r = runner.invoke(app, ["edit", str(out), "--model", "dws", "--epochs", "1", "--no-progress"])
    assert r.exit_code == 2 and "equivariant" in r.output
    r = runner.invoke(app, ["train", str(out), "--model", "mlp", "--epochs", "1", "--mixup", "0.2", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", str(out), "--model", "statnn", "--epochs", "1", "--augment", "sign+affine", "--no-progress"])
    assert r.exit_code == 0 and "test accuracy" in r.output, r.output
    r = runner.invoke(app, ["train", str(out), "--model", "statnn", "--epochs", "1", "--augment", "twist", "--no-progress"])
    assert r.exit_code == 2 and "unknown augmentation 'twist'" in r.output, r.output
    r = runner.invoke(app, ["train", str(out), "--model", "dws", "--epochs", "1", "--model-config", "set_layer=sab,reduction=max", "--no-progress"])
    assert r.exit_code == 0 and "test accuracy" in r.output, r.output
    r = runner.invoke(app, ["train", str(out), "--model", "dws_light", "--epochs", "1", "--model-config", "norm=channel", "--no-progress"])
    assert r.exit_code == 0 and "test accuracy" in r.output, r.output
    # a preset: the published model and recipe, shrunk here by overrides to stay quick
    r = runner.invoke(app, ["train", str(out), "--model", "dwsnets-mnist-inr", "--epochs", "1", "--model-config",
                            "hidden_channels=8,num_layers=2", "--no-progress"])
    assert r.exit_code == 0 and "dwsnets-mnist-inr: test accuracy" in r.output, r.output
    r = runner.invoke(app, ["train", str(out), "--model", "dws", "--epochs", "1", "--model-config", "depth=3", "--no-progress"])
    assert r.exit_code == 2 and "no option(s) ['depth']" in r.output, r.output
    r = runner.invoke(app, ["train", str(out), "--model", "mlp", "--epochs", "100000", "--max-minutes", "0.005", "--no-progress"])
    assert r.exit_code == 0 and "stopped by --max-minutes after" in r.output, r.output


def test_train_classifiers_and_predict(tmp_path):
    out = tmp_path / "cnns"
    r = runner.invoke(app, ["zoo", "train-classifiers", "-o", str(out), "--dataset", "digits", "--recipe", "mlp", "--runs", "20",
                            "--epochs", "2", "--n-train", "60", "--n-test", "40", "--runs-per-shard", "8"])
    assert r.exit_code == 0, r.output
    zoo = Zoo.open(out)
    assert len(zoo) == 20 * 3 and sorted(zoo.table["epoch"].unique()) == [0, 1, 2]
    r = runner.invoke(app, ["predict", str(out), "--model", "statnn", "--model", "mlp", "--epochs", "2",
                            "--out", str(tmp_path / "fig"), "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "kendall_tau" in r.output and (tmp_path / "fig" / "statnn" / "test_accuracy.png").exists()
    assert "test networks: Kendall tau varies by about" in " ".join(r.output.split())  # a few test runs only
    for m in ("statnn", "mlp"):  # a run directory per model, usable by evaluate and apply
        assert {"model.safetensors", "model.json", "metrics.csv", "run.json"} <= {f.name for f in (tmp_path / "fig" / m).iterdir()}
    r = runner.invoke(app, ["evaluate", str(tmp_path / "fig" / "statnn"), str(out)])
    assert r.exit_code == 0 and "kendall_tau" in r.output and "r2" in r.output, r.output
    r = runner.invoke(app, ["apply", str(tmp_path / "fig" / "statnn"), str(out), "--split", "test"])
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("id,split,test_accuracy,predicted"), r.output
    r = runner.invoke(app, ["predict", str(out), "--target", "optimizer", "--epochs", "1", "--no-progress",
                            "-o", str(tmp_path / "opt")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["apply", str(tmp_path / "opt" / "statnn"), str(out)])
    header = r.output.splitlines()[0].split(",")
    assert r.exit_code == 0 and "predicted" in header and any(h.startswith("p_") and h != "p_0" for h in header), header
    r = runner.invoke(app, ["predict", str(out), "--epochs", "1", "-o", str(tmp_path / "fig")])
    assert r.exit_code == 2 and "not empty; pass --resume" in " ".join(r.output.split())
    r = runner.invoke(app, ["predict", str(out), "--target", "nope"])
    assert r.exit_code == 2 and "no column 'nope'" in " ".join(r.output.split())
    r = runner.invoke(app, ["zoo", "train-classifiers", "-o", str(tmp_path / "x"), "--recipe", "resnet"])
    assert r.exit_code == 2 and "unknown zoo recipe 'resnet'" in " ".join(r.output.split())


def test_train_classifiers_width_and_hidden(tmp_path):
    out = tmp_path / "mlps"
    r = runner.invoke(app, ["zoo", "train-classifiers", "-o", str(out), "--dataset", "digits", "--recipe", "mlp",
                            "--hidden", "12,6", "--runs", "4", "--epochs", "1", "--n-train", "40", "--n-test", "20"])
    assert r.exit_code == 0, r.output
    assert [la.out_features for la in Zoo.open(out).spec.layers] == [12, 6, 10]
    for args, message in ((["--recipe", "mlp", "--width", "8"], "--width is the small-cnn"),
                          (["--recipe", "small-cnn", "--hidden", "8"], "--hidden is the mlp"),
                          (["--recipe", "mlp", "--hidden", "8,x"], "comma-separated integers"),
                          (["--width", "0"], "--width must be at least 1")):
        r = runner.invoke(app, ["zoo", "train-classifiers", "-o", str(tmp_path / "never"), *args])
        assert r.exit_code == 2 and message in " ".join(r.output.split()), (args, r.output)
        assert not (tmp_path / "never").exists()
