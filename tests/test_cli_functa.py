from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.zoo.store import Zoo

runner = CliRunner()


def test_functa_fit_encode_sample(tmp_path):
    out = tmp_path / "f"
    r = runner.invoke(app, ["functa", "fit", "-o", str(out), "--dataset", "digits", "--limit", "10", "--hidden", "16,16",
                            "--latent-dim", "8", "--steps", "5", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "functaset" in r.output and len(Zoo.open(out / "functaset")) == 30
    r = runner.invoke(app, ["functa", "encode", str(out / "functa.safetensors"), "-o", str(tmp_path / "g"), "--limit", "4",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert Zoo.open(tmp_path / "g").provenance["kind"] == "functa"
    r = runner.invoke(app, ["functa", "sample", str(out / "functaset"), "-o", str(tmp_path / "s.png"), "--count", "3",
                            "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.png").exists() and "nearest training signal" in r.output
    # the functaset is a zoo like any other: the engine trains a classifier on it
    r = runner.invoke(app, ["train", str(out / "functaset"), "--model", "mlp", "--epochs", "1", "--no-progress"])
    assert r.exit_code == 0, r.output


def test_hyperinr_fit_encode(tmp_path):
    out = tmp_path / "h"
    r = runner.invoke(app, ["hyperinr", "fit", "-o", str(out), "--limit", "6", "--code-dim", "8", "--hidden", "32",
                            "--inr-hidden", "8,8", "--steps", "20", "--encode-steps", "5", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(Zoo.open(out / "codes")) == 18 and Zoo.open(out / "weights").provenance["generator"] == "hyperinr"
    r = runner.invoke(app, ["hyperinr", "encode", str(out / "hyperinr.safetensors"), "-o", str(tmp_path / "e"), "--limit", "3",
                            "--steps", "5", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["zoo", "render", str(tmp_path / "e" / "weights"), "-o", str(tmp_path / "r.png"), "--count", "2",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output


def test_errors_are_clean(tmp_path):
    r = runner.invoke(app, ["functa", "encode", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "missing.safetensors" in r.output
    r = runner.invoke(app, ["hyperinr", "fit", "-o", str(tmp_path / "y"), "--hidden", "a,b"])
    assert r.exit_code == 2 and "sizes" in r.output


def test_hyperinr_encode_takes_the_fits_grid_unless_told(tmp_path):
    """The model file records the fit's data options: encoding shapes without --resolution uses
    the fit's grid (said in one line) instead of the dataset's default; another one is warned of."""
    out = tmp_path / "h"
    r = runner.invoke(app, ["hyperinr", "fit", "-o", str(out), "--dataset", "shapes", "--field", "udf", "--resolution", "6",
                            "--per-class", "1", "--steps", "2", "--encode-steps", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    model = str(out / "hyperinr.safetensors")
    r = runner.invoke(app, ["hyperinr", "encode", model, "--dataset", "shapes", "--per-class", "1", "--steps", "1",
                            "-o", str(tmp_path / "e1"), "--no-progress"])
    assert r.exit_code == 0 and "--resolution 6: the fit's" in r.output, r.output
    assert Zoo.open(tmp_path / "e1" / "codes").provenance["source"]["resolution"] == 6
    r = runner.invoke(app, ["hyperinr", "encode", model, "--dataset", "shapes", "--per-class", "1", "--steps", "1",
                            "--resolution", "8", "-o", str(tmp_path / "e2"), "--no-progress"])
    assert r.exit_code == 0 and "--resolution 8 differs from the fit's 6" in r.output, r.output


def test_functa_infer_shapes_from_partial_observations(tmp_path):
    import json

    out = tmp_path / "fs"
    r = runner.invoke(app, ["functa", "fit", "-o", str(out), "--dataset", "shapes", "--per-class", "2", "--resolution", "6",
                            "--field", "sdf", "--hidden", "16,16", "--latent-dim", "8", "--steps", "3", "--no-progress",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["functa", "infer", str(out / "functaset"), "--observe", "view:-y", "--observe", "random:0.5",
                            "--figure", str(tmp_path / "i.png"), "--json", str(tmp_path / "i.json"), "--device", "cpu"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "i.json").read_text())
    assert [row["observation"] for row in rows] == ["view:-y", "random:0.5"]
    assert rows[1]["observed"] == 0.5 and 0 < rows[0]["observed"] < 1 and all(0 <= row["functa_iou"] <= 1 for row in rows)
    assert (tmp_path / "i.png").stat().st_size > 0 and "nearest IoU" in r.output and "view:-y" in r.output
    # refused before any work, in one line: a bad observation, a field without an inside, a non-shape functaset
    r = runner.invoke(app, ["functa", "infer", str(out / "functaset"), "--observe", "view:up", "--json",
                            str(tmp_path / "never.json")])
    assert r.exit_code == 2 and "view:AXIS" in r.output and not (tmp_path / "never.json").exists()
    udf = tmp_path / "fu"
    r = runner.invoke(app, ["functa", "fit", "-o", str(udf), "--dataset", "shapes", "--per-class", "1", "--resolution", "4",
                            "--field", "udf", "--hidden", "8", "--latent-dim", "4", "--steps", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["functa", "infer", str(udf / "functaset")])
    assert r.exit_code == 2 and "has no inside" in " ".join(r.output.split())
    digits = tmp_path / "fd"
    r = runner.invoke(app, ["functa", "fit", "-o", str(digits), "--dataset", "digits", "--limit", "3", "--hidden", "8",
                            "--latent-dim", "4", "--steps", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["functa", "infer", str(digits / "functaset")])
    assert r.exit_code == 2 and "needs shapes on a grid" in " ".join(r.output.split())


def test_gasp_fit_and_sample(tmp_path):
    import json

    out = tmp_path / "g"
    r = runner.invoke(app, ["gasp", "fit", "--dataset", "digits", "--limit", "60", "--steps", "2", "--batch-size", "4",
                            "--samples", "16", "-o", str(out), "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == {"gasp.safetensors", "losses.csv", "samples.png", "quality.json"}
    q = json.loads((out / "quality.json").read_text())
    assert set(q) == {"classifier_test_accuracy", "gasp", "real_test"} and 0 <= q["gasp"]["class_spread"] <= 1
    assert len((out / "losses.csv").read_text().splitlines()) == 3  # header + one row per step
    r = runner.invoke(app, ["gasp", "sample", str(out), "-n", "3", "--scale", "2", "-o", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and "1x, 2x" in r.output, r.output
    # refused before any work: a non-empty --out, a 3D preset on images, an unknown preset
    r = runner.invoke(app, ["gasp", "fit", "--dataset", "digits", "-o", str(out)])
    assert r.exit_code == 2 and "not empty" in r.output
    for preset, words in (("gasp-shapes-cpu", "is for 3D signals"), ("gasp-cifar", "unknown --preset")):
        r = runner.invoke(app, ["gasp", "fit", "--dataset", "digits", "--preset", preset, "-o", str(tmp_path / preset)])
        assert r.exit_code == 2 and words in " ".join(r.output.split()), r.output
        assert not (tmp_path / preset).exists()


def test_nerf_fit_and_sample(tmp_path):
    import json

    out = tmp_path / "n"
    r = runner.invoke(app, ["nerf", "fit", "-o", str(out), "--per-class", "2", "--size", "6", "--steps", "2",
                            "--samples", "8", "--hidden", "16,16", "--latent-dim", "8", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    record = json.loads((out / "nerf.json").read_text())
    assert [row["views"] for row in record["novel_views"]] == [0, 1, 2, 4, 8] and (out / "views.png").exists()
    assert 0 < record["truth_chroma"] <= 1 and "object chroma" in r.output
    r = runner.invoke(app, ["nerf", "sample", str(out), "-n", "2", "--epochs", "2", "-o", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and (tmp_path / "s.png").exists(), r.output
    (out / "latents.safetensors").write_bytes(b"damaged")
    r = runner.invoke(app, ["nerf", "sample", str(out), "-o", str(tmp_path / "d.png")])
    assert r.exit_code == 2 and "not a readable safetensors file" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["nerf", "sample", str(tmp_path), "-o", str(tmp_path / "t.png")])
    assert r.exit_code == 2 and "no nerf.safetensors" in " ".join(r.output.split())
    r = runner.invoke(app, ["nerf", "fit", "-o", str(tmp_path / "m"), "--views", "4"])
    assert r.exit_code == 2 and "--views must be at least 8" in " ".join(r.output.split())
    r = runner.invoke(app, ["nerf", "fit", "-o", str(tmp_path / "m"), "--appearance-dim", "65"])
    assert r.exit_code == 2 and "--appearance-dim must lie in 0..--latent-dim (64)" in " ".join(r.output.split())


def test_gasp_refuses_signals_it_cannot_render(tmp_path):
    r = runner.invoke(app, ["gasp", "fit", "--dataset", "tones", "-o", str(tmp_path / "g")])
    assert r.exit_code == 2 and "images (2D) or volumes (3D)" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "g").exists()
