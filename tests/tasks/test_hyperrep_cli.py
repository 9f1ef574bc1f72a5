import json

from typer.testing import CliRunner

from tests.tasks.hyperrep_zoo import make_zoo
from weightspace.cli import app
from weightspace.zoo.store import Zoo

runner = CliRunner()


def test_fit_probe_sample_commands(tmp_path):
    zoo = make_zoo(tmp_path / "zoo")
    model = tmp_path / "hr"  # a run directory; probe and sample take it or the model file in it
    r = runner.invoke(app, ["hyperrep", "fit", str(zoo.path), "-o", str(model), "--epochs", "2", "--batch-size", "8",
                            "--d-model", "16", "--layers", "1", "--latent-tokens", "2", "--latent-dim", "4", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (model / "hyperrep.safetensors").exists() and "embedding of 8 values" in r.output
    assert "invariance gap 0" in r.output
    r = runner.invoke(app, ["hyperrep", "probe", str(zoo.path), str(model), "--probes", "linear",
                            "--figure", str(tmp_path / "map.png"), "--json", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "p.json").read_text())
    assert {row["target"] for row in rows} >= {"test_accuracy", "epoch", "activation"}
    assert {row["features"] for row in rows} == {"hyperrep", "statnn"}
    assert (tmp_path / "map.png").exists() and "StatNN" in r.output
    r = runner.invoke(app, ["hyperrep", "sample", str(zoo.path), str(model), "-n", "6", "--test-images", "50",
                            "--finetune-steps", "3", "--out", str(tmp_path / "samples"), "--figure", str(tmp_path / "h.png")])
    assert r.exit_code == 0, r.output
    assert "6 sampled networks" in r.output and "fine-tuned random_init" in r.output and "(select)" in r.output
    r = runner.invoke(app, ["hyperrep", "sample", str(zoo.path), str(model / "hyperrep.safetensors"), "-n", "4",
                            "--test-images", "50", "--bandwidth", "0.3"])
    assert r.exit_code == 0 and "bandwidth 0.3 (fixed)" in r.output, r.output
    r = runner.invoke(app, ["hyperrep", "sample", str(zoo.path), str(model), "--bandwidth", "wide"])
    assert r.exit_code == 2 and "--bandwidth must be a number" in " ".join(r.output.split())
    samples = Zoo.open(tmp_path / "samples")
    assert len(samples) == 6 and samples.table["test_accuracy"].between(0, 1).all()
    assert (tmp_path / "h.png").exists()


def test_one_latent_per_token_adds_the_layer_pooled_probe(tmp_path):
    zoo = make_zoo(tmp_path / "zoo")
    model = tmp_path / "hr"
    r = runner.invoke(app, ["hyperrep", "fit", str(zoo.path), "-o", str(model), "--epochs", "1", "--batch-size", "8",
                            "--d-model", "16", "--layers", "1", "--latent-tokens", "0", "--latent-dim", "4", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["hyperrep", "probe", str(zoo.path), str(model), "--probes", "linear", "--targets",
                            "test_accuracy", "--json", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    assert {row["features"] for row in json.loads((tmp_path / "p.json").read_text())} == {
        "hyperrep", "hyperrep_pooled", "statnn"}
    assert "layer-pooled" in r.output
    r = runner.invoke(app, ["hyperrep", "fit", str(zoo.path), "-o", str(tmp_path / "x"), "--latent-tokens", "-1"])
    assert r.exit_code == 2 and "latent-tokens" in r.output


def test_errors_name_the_problem(tmp_path):
    zoo = make_zoo(tmp_path / "zoo", runs=6)
    r = runner.invoke(app, ["hyperrep", "probe", str(zoo.path), str(tmp_path / "none.safetensors")])
    assert r.exit_code == 2 and "MODEL_PATH: " in r.output and "none.safetensors does not exist" in " ".join(r.output.split())
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    r = runner.invoke(app, ["hyperrep", "probe", str(zoo.path), str(tmp_path / "junk.safetensors")])
    assert r.exit_code == 2 and "junk.safetensors" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["hyperrep", "fit", str(tmp_path), "-o", str(tmp_path / "m")])
    assert r.exit_code == 2 and "zoo.json is missing" in " ".join(r.output.split())
    assert not (tmp_path / "m" / "hyperrep.safetensors").exists()
    # the model file of earlier versions' --out: refused with where the model goes now
    r = runner.invoke(app, ["hyperrep", "fit", str(zoo.path), "-o", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 2 and "takes a run directory" in " ".join(r.output.split())
    assert not (tmp_path / "m.safetensors").exists()


def test_the_model_file_name_agrees_with_the_run_files():
    from weightspace import cli_hyperrep, runs

    assert cli_hyperrep.MODEL_FILE == runs.HYPERREP_MODEL and runs.HYPERREP_MODEL in runs.RUN_FILES


def test_fit_keeps_a_run_directory_and_resumes(tmp_path):
    zoo = make_zoo(tmp_path / "zoo", runs=6)
    args = ["hyperrep", "fit", str(zoo.path), "-o", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "8",
            "--d-model", "16", "--layers", "1", "--latent-tokens", "2", "--latent-dim", "4", "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "complete" and run["epochs_run"] == 2 and "reconstruction" in run["test"]
    assert run["seed"] == 0 and run["command"][0] == "weightspace" and run["train_config"]["epochs"] == 2
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3  # a header and one row per epoch
    r = runner.invoke(app, args)  # the run exists: refused, nothing trained
    assert r.exit_code == 2 and "pass --resume" in " ".join(r.output.split())
    r = runner.invoke(app, [*args, "--resume"])  # complete: nothing to resume
    assert r.exit_code == 2 and "nothing to resume" in " ".join(r.output.split())
    before = (tmp_path / "run" / "hyperrep.safetensors").stat().st_mtime_ns
    r = runner.invoke(app, [*args, "--overwrite"])  # replaced: a fresh run's files, the model rewritten
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "hyperrep.safetensors").stat().st_mtime_ns != before
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"


def test_sane_fit_and_probe_on_a_seen_and_an_unseen_zoo(tmp_path):
    seen, unseen = make_zoo(tmp_path / "a"), make_zoo(tmp_path / "b", seed=5)
    model = tmp_path / "sane"
    r = runner.invoke(app, ["hyperrep", "sane-fit", str(seen.path), "-o", str(model), "--epochs", "2", "--batch-size",
                            "16", "--tokensize", "8", "--window", "8", "--d-model", "16", "--layers", "1",
                            "--latent-dim", "4", "--supersample", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (model / "sane.safetensors").exists() and "embeddings of 4 values" in r.output
    for zoo in (seen, unseen):
        r = runner.invoke(app, ["hyperrep", "sane-probe", str(zoo.path), str(model), "--probes", "linear",
                                "--targets", "test_accuracy,activation", "--json", str(tmp_path / "p.json")])
        assert r.exit_code == 0, r.output
        rows = json.loads((tmp_path / "p.json").read_text())
        assert {(row["features"], row["target"]) for row in rows} == {
            (f, t) for f in ("sane", "statnn") for t in ("test_accuracy", "activation")}
    bad = runner.invoke(app, ["hyperrep", "sane-fit", str(seen.path), "-o", str(tmp_path / "x"), "--window", "0"])
    assert not (tmp_path / "x").exists()
    big = runner.invoke(app, ["hyperrep", "sane-fit", str(seen.path), "-o", str(tmp_path / "z"), "--d-model", "15"])
    assert big.exit_code == 2 and "must be even" in " ".join(big.output.split())
    assert bad.exit_code == 2 and "--window must be at least 1" in " ".join(bad.output.split())
    twice = runner.invoke(app, ["hyperrep", "sane-fit", str(seen.path), str(seen.path), "-o", str(tmp_path / "y")])
    assert twice.exit_code == 2 and "named twice" in twice.output
    r = runner.invoke(app, ["hyperrep", "sane-probe", str(seen.path), str(model), "--probes", "forest"])
    assert r.exit_code == 2 and "--probes must be" in " ".join(r.output.split())


def test_sample_to_a_requested_property(tmp_path):
    zoo = make_zoo(tmp_path / "zoo")
    model = tmp_path / "hr"
    r = runner.invoke(app, ["hyperrep", "fit", str(zoo.path), "-o", str(model), "--epochs", "1", "--batch-size", "8",
                            "--d-model", "16", "--layers", "1", "--latent-tokens", "2", "--latent-dim", "4", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["hyperrep", "sample", str(zoo.path), str(model), "-n", "5", "--test-images", "40",
                            "--where", "test_accuracy>=0.5, epoch==2", "--bandwidth", "0.5"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "requested test_accuracy>=0.5, epoch==2" in text and "met by the samples: test_accuracy >= 0.5:" in text
    for where, message in (("accuracy>0.5", "no column 'accuracy'"), ("epoch>=x", "is not a number"),
                           ("activation>relu", "compare it with == or !="), ("test_accuracy>=2", "no zoo model meets"),
                           ("epoch", "expected column OP value")):
        r = runner.invoke(app, ["hyperrep", "sample", str(zoo.path), str(model), "--where", where])
        assert r.exit_code == 2 and message in " ".join(r.output.split()), (where, r.output)


def test_select_where_keeps_exactly_the_rows_meeting_every_condition():
    import pandas as pd

    from weightspace.tasks.hyperrep_sample import select_where

    table = pd.DataFrame({"test_accuracy": [0.2, 0.95, 0.91, 0.5], "epoch": [1, 2, 4, 2],
                          "activation": ["relu", "gelu", "gelu", "relu"]})
    assert select_where(table, "test_accuracy>=0.9").tolist() == [1, 2]
    assert select_where(table, "test_accuracy>=0.9, epoch==2").tolist() == [1]
    assert select_where(table, "activation==relu").tolist() == [0, 3]
    assert select_where(table, "epoch!=2, test_accuracy<0.3").tolist() == [0]
