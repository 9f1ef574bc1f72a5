"""Backends: Ray tasks give the same zoo as the local loop, bit for bit."""

from __future__ import annotations

import pytest
import torch

from weightspace.inr.siren import get_recipe
from weightspace.signals import load_digits
from weightspace.zoo.backends import LocalBackend, RayBackend, make_backend
from weightspace.zoo.build import build_inr_zoo

RECIPE = get_recipe("nfn", steps=20)


@pytest.fixture
def ray_local(monkeypatch):
    """A Ray instance on loopback only, no dashboard, no usage reporting; shut down after the test."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    from weightspace.zoo.backends import _loopback_node

    with _loopback_node(ray):  # plain _node_ip_address="127.0.0.1" still listens on every interface
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_make_backend() -> None:
    assert isinstance(make_backend("local"), LocalBackend)
    assert isinstance(make_backend("ray", "ray://head:10001"), RayBackend)
    with pytest.raises(ValueError, match="needs --backend ray"):
        make_backend("local", "ray://head:10001")
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("dask")


def test_ray_equals_local_and_resumes(tmp_path, ray_local) -> None:
    data = load_digits(limit=3)
    assert torch.get_num_threads() == 1  # as in each Ray task (tests/conftest.py)
    local = build_inr_zoo(
        data, tmp_path / "local", RECIPE, shard_size=2, progress=False, inrs_per_train_image=2
    )
    remote = build_inr_zoo(
        data,
        tmp_path / "ray",
        RECIPE,
        shard_size=2,
        progress=False,
        inrs_per_train_image=2,
        backend=RayBackend(max_in_flight=2),
    )
    assert ray_local.is_initialized()  # the backend used the caller's instance and left it running
    assert all(torch.equal(a, b) for a, b in zip(local.weights().tensors(), remote.weights().tensors()))
    cols = ["id", "shard", "row", "source_index", "copy", "label", "split", "seed", "steps", "psnr"]
    assert local.table[cols].equals(remote.table[cols])
    # an interrupted Ray run resumes: lose two shards, run again, get the same zoo
    for k in (1, 3):
        (tmp_path / "ray" / "shards" / f"{k:05d}.safetensors").unlink()
    remote.table[~remote.table["shard"].isin([1, 3])].to_parquet(tmp_path / "ray" / "table.parquet")
    again = build_inr_zoo(
        data, tmp_path / "ray", RECIPE, shard_size=2, progress=False, inrs_per_train_image=2, backend="ray"
    )
    assert all(torch.equal(a, b) for a, b in zip(local.weights().tensors(), again.weights().tensors()))
    assert again.table[cols].equals(local.table[cols])
