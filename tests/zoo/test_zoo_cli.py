"""`weightspace zoo fit-inrs / render / import` end to end, on tiny data."""

from __future__ import annotations

from typer.testing import CliRunner

from tests.zoo.test_importers import _write_dwsnets
from weightspace.cli import app
from weightspace.zoo.store import Zoo

runner = CliRunner()


def _text(result) -> str:
    return " ".join(result.output.split())  # rich wraps long lines at the terminal width


def test_fit_shapes_with_copies_then_render(tmp_path) -> None:
    out = tmp_path / "shapes"
    r = runner.invoke(
        app,
        [
            "zoo",
            "fit-inrs",
            "--dataset",
            "shapes",
            "--per-class",
            "1",
            "--resolution",
            "6",
            "--steps",
            "10",
            "--inrs-per-train-image",
            "2",
            "--shard-size",
            "8",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    zoo = Zoo.open(out)
    n_train = int((zoo.table[zoo.table["copy"] == 0]["split"] == "train").sum())
    assert len(zoo) == 12 + n_train and zoo.provenance["signal_kind"] == "shape"
    assert zoo.provenance["source"] == {
        "dataset": "shapes",
        "kind": None,
        "seed": 0,
        "per_class": 1,
        "resolution": 6,
    }
    r = runner.invoke(app, ["zoo", "render", str(out), "--index", "0,3", "-o", str(tmp_path / "fig.png")])
    assert r.exit_code == 0, r.output
    assert "network 3" in r.output and "decoded:" in r.output and (tmp_path / "fig.png").exists()
    r = runner.invoke(app, ["zoo", "render", str(out), "--index", "99", "-o", str(tmp_path / "f.png")])
    assert r.exit_code == 2 and "no networks with id [99]" in _text(r)


def test_fit_errors_are_clean(tmp_path) -> None:
    r = runner.invoke(
        app, ["zoo", "fit-inrs", "--dataset", "digits", "--field", "sdf", "-o", str(tmp_path / "z")]
    )
    assert r.exit_code == 2 and "do not apply" in _text(r)
    r = runner.invoke(
        app, ["zoo", "fit-inrs", "--dataset", "digits", "--backend", "dask", "-o", str(tmp_path / "z2")]
    )
    assert r.exit_code == 2 and "unknown backend" in _text(r)


def test_import_dwsnets_and_render(tmp_path) -> None:
    _write_dwsnets(tmp_path / "dws", (2, 1, 1))
    r = runner.invoke(app, ["zoo", "import", "dwsnets", str(tmp_path / "dws"), "-o", str(tmp_path / "zoo")])
    assert r.exit_code == 0, r.output
    assert "imported 4 INRs" in _text(r) and "train 2" in _text(r)
    r = runner.invoke(
        app, ["zoo", "render", str(tmp_path / "zoo"), "--split", "test", "-o", str(tmp_path / "f.png")]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "f.png").exists()
    r = runner.invoke(app, ["zoo", "import", "pickles", str(tmp_path / "dws"), "-o", str(tmp_path / "z2")])
    assert r.exit_code == 2 and "unknown format" in _text(r)


def test_small_cnn_on_images_too_small_for_it_is_one_line(tmp_path) -> None:
    # the 8x8 digits shrink to nothing through three unpadded stride-2 convolutions: refused
    # before any training, with the way out named (a traceback from inside training before)
    r = runner.invoke(app, ["zoo", "train-classifiers", "-o", str(tmp_path / "z"), "--dataset", "digits",
                            "--recipe", "small-cnn", "--runs", "2", "--epochs", "1"])
    assert r.exit_code != 0
    assert "at least 15x15 pixels, got 8x8" in r.output and "--recipe mlp" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "z").exists()
