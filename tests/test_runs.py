"""Run directories: what `weightspace train --out` leaves, resuming, evaluate / apply."""

import csv
import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from weightspace import NetworkSpec, Weights
from weightspace.cli import app
from weightspace.core.transforms import Standardize, parse_augmentation
from weightspace.runs import RunError, apply_run, evaluate_run, load_run, predict, prepare_run_dir
from weightspace.tasks import classify
from weightspace.tasks.classify import classify_zoo
from weightspace.train import TrainConfig
from weightspace.zoo.store import ZooWriter, assign_splits

runner = CliRunner()
FAST = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False)


def _zoo(path, sizes, n, seed=0):
    """Random MLPs labelled by whether the last layer's mean weight is positive."""
    spec = NetworkSpec.mlp(sizes, activation="relu")
    g = torch.Generator().manual_seed(seed)
    w = Weights.unflatten(spec, torch.randn(n, spec.num_params, generator=g))
    labels = (w.weights[-1].mean(dim=(1, 2, 3)) > 0).long()
    writer = ZooWriter(path, spec, shard_size=64)
    split = assign_splits(n, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    for k in range((n + 63) // 64):
        sl = slice(64 * k, 64 * (k + 1))
        writer.write_shard(k, w[sl], {"label": labels[sl].tolist(), "split": split[sl].tolist()})
    return writer.finalize()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return _zoo(tmp_path_factory.mktemp("zoo"), [2, 8, 8, 1], 192)


@pytest.fixture(scope="module")
def other_zoo(tmp_path_factory):
    return _zoo(tmp_path_factory.mktemp("other"), [2, 4, 1], 64, seed=1)


@pytest.fixture(scope="module")
def run(zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    return classify_zoo(zoo, "mlp", config=FAST, out=out), out


def test_the_run_directory_round_trips(zoo, run):
    res, out = run
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "model.json", "model.safetensors", "run.json"]
    model, meta = load_run(out)
    assert meta.spec == zoo.spec and meta.num_classes == 2 and meta.target == "label" and meta.architecture == "mlp"
    # the best weights, bit for bit, and the same logits as the in-memory model on standardised inputs
    saved, trained = model.net.state_dict(), res.model.state_dict()
    assert list(saved) == list(trained) and all(torch.equal(saved[k], trained[k]) for k in saved)
    train_w, _ = zoo.load("train")
    norm = Standardize.fit(train_w)
    assert meta.standardize == norm
    w, _ = zoo.load("test")
    res.model.eval()
    with torch.no_grad():
        assert torch.equal(predict(model, w), res.model(norm(w)))
    assert json.loads((out / "model.json").read_text()) == meta.to_dict()


def test_metrics_csv_has_one_row_per_epoch_and_run_json_the_run(run):
    res, out = run
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(rows[0])
    assert [float(r["train_loss"]) for r in rows] == [h["train/loss"] for h in res.history]  # exact (repr)
    assert float(rows[0]["lr"]) == FAST.lr and float(rows[1]["lr"]) < FAST.lr  # cosine schedule
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["finished"] and info["started"]
    assert info["test"]["acc"] == res.test_acc and info["train_config"]["epochs"] == 3 and info["seed"] == 0
    assert set(info["versions"]) == {"python", "torch", "lightning", "weightspace"}


class Killed(RuntimeError):
    pass


@pytest.mark.parametrize("case", ["cosine", "warmup"])
def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(zoo, tmp_path, monkeypatch, case):
    cfg = TrainConfig(epochs=4, batch_size=32, lr=3e-3, progress=False, seed=5)
    if case == "warmup":
        cfg = TrainConfig(**{**cfg.__dict__, "warmup_steps": 7, "optimizer": "adam", "amsgrad": True})
    # mlp has dropout (torch's global generator); the augmentation draws from the dataset's
    kw = {"config": cfg, "augment": parse_augmentation("permutation+noise")}
    full = classify_zoo(zoo, "mlp", out=tmp_path / "full", **kw)

    import weightspace.train as engine

    original = engine._Module.training_step

    def dies_in_epoch_3(self, batch, batch_idx):
        if len(self.history) == 2 and batch_idx == 1:
            raise Killed("killed mid-epoch")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(engine._Module, "training_step", dies_in_epoch_3)
    with pytest.raises(Killed):
        classify_zoo(zoo, "mlp", out=tmp_path / "cut", **kw)
    monkeypatch.setattr(engine._Module, "training_step", original)
    assert (tmp_path / "cut" / "checkpoint.safetensors").is_file()
    assert len(list(csv.DictReader((tmp_path / "cut" / "metrics.csv").open()))) == 2
    with pytest.raises(RunError, match="exists and is not empty; pass --resume"):
        classify_zoo(zoo, "mlp", out=tmp_path / "cut", **kw)
    resumed = classify_zoo(zoo, "mlp", out=tmp_path / "cut", resume=True, **kw)

    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # exact, not approximately
    assert resumed.test_acc == full.test_acc and resumed.val_acc == full.val_acc
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(resumed.history) == drop(full.history)
    assert len(list(csv.DictReader((tmp_path / "cut" / "metrics.csv").open()))) == 4
    info = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert info["status"] == "complete" and len(info["resumed"]) == 1
    assert not (tmp_path / "cut" / "checkpoint.safetensors").exists()
    with pytest.raises(RunError, match="nothing to resume.*complete"):
        classify_zoo(zoo, "mlp", out=tmp_path / "cut", resume=True, **kw)


def test_resume_refuses_other_settings(zoo, tmp_path, monkeypatch):
    import weightspace.train as engine

    (tmp_path / "r").mkdir()
    monkeypatch.setattr(engine._Module, "on_train_epoch_end", lambda self: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        classify_zoo(zoo, "mlp", config=FAST, out=tmp_path / "r")
    (tmp_path / "r" / "checkpoint.safetensors").write_bytes(b"")  # stands for a checkpoint
    with pytest.raises(RunError, match="different settings than the run .*epochs"):
        classify_zoo(zoo, "mlp", config=TrainConfig(**{**FAST.__dict__, "epochs": 5}), out=tmp_path / "r", resume=True)


def test_a_bad_out_is_refused_before_training(zoo, tmp_path, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("trained")

    monkeypatch.setattr(classify, "fit", no_training)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(RunError, match="exists and is not a directory"):
        classify_zoo(zoo, "mlp", config=FAST, out=file)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="exists and is not empty"):
        classify_zoo(zoo, "mlp", config=FAST, out=busy)
    with pytest.raises(RunError, match="not a run directory"):  # --overwrite deletes only a run's files
        classify_zoo(zoo, "mlp", config=FAST, out=busy, overwrite=True)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(RunError, match="nothing to resume"):
        classify_zoo(zoo, "mlp", config=FAST, out=tmp_path / "new", resume=True)
    with pytest.raises(RunError, match="exclude each other"):
        prepare_run_dir(tmp_path / "x", resume=True, overwrite=True)
    for args in (["--out", str(file)], ["--out", str(busy)], ["--resume"]):
        r = runner.invoke(app, ["train", str(zoo.path), "--model", "mlp", "--epochs", "1", "--no-progress", *args])
        assert r.exit_code == 2 and "error:" in r.output and "test accuracy" not in r.output, r.output


def test_overwrite_replaces_a_run(zoo, run, tmp_path):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(run[1], out)
    res = classify_zoo(zoo, "mlp", config=TrainConfig(**{**FAST.__dict__, "epochs": 1}), out=out, overwrite=True)
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 1 and res.epochs_run == 1


def test_evaluate_and_apply(zoo, other_zoo, run, tmp_path):
    res, out = run
    ev = evaluate_run(out, zoo, "test")
    assert ev["acc"] == pytest.approx(res.test_acc, abs=1e-6) and ev["loss"] == pytest.approx(res.test_loss, rel=1e-5)
    table = apply_run(out, zoo.path)
    assert len(table) == len(zoo) and list(table.columns) == ["id", "split", "label", "predicted", "p_0", "p_1"]
    probs = torch.tensor(table[["p_0", "p_1"]].to_numpy())
    assert torch.allclose(probs.sum(1), torch.ones(len(table), dtype=probs.dtype))
    assert (table["predicted"].to_numpy() == probs.argmax(1).numpy()).all()
    # the same networks as a stacked file in the shard layout, and one of them as a state dict
    w, _ = zoo.load(None)
    stacked = {f"layers.{i}.weight": t[:, 0].contiguous() for i, t in enumerate(w.weights)}
    stacked |= {f"layers.{i}.bias": t[:, 0].contiguous() for i, t in enumerate(w.biases)}
    save_file(stacked, str(tmp_path / "stacked.safetensors"))
    from_file = apply_run(out, tmp_path / "stacked.safetensors")
    assert (from_file[["p_0", "p_1"]].to_numpy() == table[["p_0", "p_1"]].to_numpy()).all()
    save_file(w.to_state_dict(3), str(tmp_path / "one.safetensors"))
    one = apply_run(out, tmp_path / "one.safetensors")
    # (a batch of one may round differently from a batch of 192)
    assert len(one) == 1 and abs(one[["p_0", "p_1"]].to_numpy() - table[["p_0", "p_1"]].to_numpy()[3]).max() < 1e-6
    # another spec is refused, naming both
    with pytest.raises(RunError, match=r"spec mismatch: the run's model takes linear\(2->8\).*linear\(2->4\)"):
        evaluate_run(out, other_zoo)
    with pytest.raises(RunError, match="spec mismatch"):
        apply_run(out, other_zoo.path)
    ow, _ = other_zoo.load(None)
    save_file(ow.to_state_dict(0), str(tmp_path / "other.safetensors"))
    with pytest.raises(RunError, match=r"spec mismatch: .*linear\(2->8\).*holds .*0.weight \[4, 2\]"):
        apply_run(out, tmp_path / "other.safetensors")


def test_evaluate_and_apply_commands(zoo, other_zoo, run, tmp_path):
    res, out = run
    r = runner.invoke(app, ["evaluate", str(out), str(zoo.path), "--split", "test"])
    assert r.exit_code == 0 and f"accuracy {100 * res.test_acc:.2f}%" in r.output, r.output
    r = runner.invoke(app, ["apply", str(out), str(zoo.path), "--split", "val"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == "id,split,label,predicted,p_0,p_1" and len(lines) == 1 + len(zoo.split("val"))
    r = runner.invoke(app, ["apply", str(out), str(zoo.path), "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0 and len((tmp_path / "p.csv").read_text().splitlines()) == 1 + len(zoo)
    for cmd in (["evaluate", str(out), str(other_zoo.path)], ["apply", str(out), str(other_zoo.path)]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2 and "spec mismatch: the run's model takes" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path), str(zoo.path)])
    assert r.exit_code == 2 and "no model.safetensors" in " ".join(r.output.split())  # rich wraps lines


def test_train_command_writes_a_run(zoo, tmp_path):
    out = tmp_path / "cli"
    args = ["train", str(zoo.path), "--model", "mlp", "--epochs", "1", "--no-progress", "--augment", "permutation"]
    r = runner.invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 0 and "test accuracy" in r.output, r.output
    info = json.loads((out / "run.json").read_text())
    assert info["command"][0] == "weightspace" and info["augment"] == "permutation" and info["status"] == "complete"
    assert load_run(out)[1].model == "mlp"
    r = runner.invoke(app, [*args, "--out", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
