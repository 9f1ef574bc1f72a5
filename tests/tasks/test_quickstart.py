import json

from weightspace.inr.siren import get_recipe
from weightspace.tasks.quickstart import QuickstartConfig, run_quickstart


def test_quickstart_smoke_run_writes_results_and_reuses_its_zoo(tmp_path, capsys):
    cfg = QuickstartConfig(limit=6, recipe=get_recipe("dwsnets", steps=10), epochs=1)
    summary = run_quickstart(tmp_path, cfg, progress=False)
    assert [r["model"] for r in summary["results"]] == ["mlp", "dws"]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in summary["results"])
    assert (tmp_path / "reconstructions.png").stat().st_size > 1000
    assert json.loads((tmp_path / "quickstart.json").read_text())["networks"] == 18
    out = capsys.readouterr().out
    assert "test accuracy" in out and "reusing" not in out
    shard = next((tmp_path).glob("zoo-*/shards/00000.safetensors"))
    before = shard.stat().st_mtime_ns
    run_quickstart(tmp_path, cfg, progress=False)
    assert "reusing cached zoo" in capsys.readouterr().out
    assert shard.stat().st_mtime_ns == before
