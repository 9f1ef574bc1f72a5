import pytest
import torch

from weightspace import NetworkSpec, Weights
from weightspace.tasks.classify import classify_zoo
from weightspace.train import TrainConfig
from weightspace.zoo.store import ZooWriter, assign_splits


@pytest.fixture(scope="module")
def learnable_zoo(tmp_path_factory):
    """Random MLPs labelled by a symmetric property of their weights: whether the
    hidden->output layer's mean weight is positive. Every invariant model can learn it."""
    spec = NetworkSpec.mlp([2, 8, 8, 1], activation="relu")
    g = torch.Generator().manual_seed(0)
    n = 384
    w = Weights.unflatten(spec, torch.randn(n, spec.num_params, generator=g))
    labels = (w.weights[2].mean(dim=(1, 2, 3)) > 0).long()
    writer = ZooWriter(tmp_path_factory.mktemp("z"), spec, shard_size=128)
    split = assign_splits(n, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    for k in range(3):
        sl = slice(128 * k, 128 * (k + 1))
        writer.write_shard(k, w[sl], {"label": labels[sl].tolist(), "split": split[sl].tolist()})
    return writer.finalize()


@pytest.mark.parametrize("model", ["mlp", "dws"])
def test_engine_learns_a_learnable_target(learnable_zoo, model):
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, progress=False)
    res = classify_zoo(learnable_zoo, model, config=cfg)
    assert res.test_acc > 0.85, res.row()
    losses = [h["train/loss"] for h in res.history]
    assert losses[-1] < 0.6 * losses[0]


def test_seeded_training_is_reproducible(learnable_zoo):
    cfg = TrainConfig(epochs=2, batch_size=64, progress=False, seed=3)
    a = classify_zoo(learnable_zoo, "dws", config=cfg)
    b = classify_zoo(learnable_zoo, "dws", config=cfg)
    assert a.test_acc == b.test_acc
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_unknown_target_and_model_are_named(learnable_zoo):
    with pytest.raises(KeyError, match="no column 'colour'"):
        classify_zoo(learnable_zoo, "dws", target="colour")
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        classify_zoo(learnable_zoo, "resnet")
