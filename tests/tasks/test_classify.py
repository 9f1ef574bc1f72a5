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


def test_compiled_training_learns_and_keeps_the_models_own_state(learnable_zoo):
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, progress=False, compile=True)
    res = classify_zoo(learnable_zoo, "mlp", config=cfg)
    assert res.test_acc > 0.85, res.row()
    eager = classify_zoo(learnable_zoo, "mlp", config=TrainConfig(epochs=1, progress=False))
    assert list(res.model.state_dict()) == list(eager.model.state_dict())  # no compiler wrapper in the keys
    # one compiled shape: the last partial batch of each epoch is dropped (268 train nets -> 8 x 32)
    n_train = int((learnable_zoo.table["split"] == "train").sum())
    assert n_train % 32 != 0
    assert res.epochs_run == 12
    seen = res.examples_per_second * res.train_seconds
    assert seen == pytest.approx(12 * (n_train // 32) * 32, rel=1e-6)


def test_a_compiler_failure_falls_back_to_eager_but_a_model_error_is_raised(learnable_zoo, monkeypatch):
    import weightspace.train as engine

    def broken_compiler(model, **kw):
        def run(*a):
            raise torch._dynamo.exc.TorchDynamoException("no backend here")

        return run

    monkeypatch.setattr(engine.torch, "compile", broken_compiler)
    with pytest.warns(UserWarning, match="torch.compile failed .*no backend here.*training eagerly"):
        res = classify_zoo(learnable_zoo, "mlp", config=TrainConfig(epochs=12, batch_size=32, lr=3e-3, progress=False, compile=True))
    assert res.epochs_run == 12 and res.test_acc > 0.85

    def buggy(model, **kw):
        def run(*a):
            raise ValueError("shape mismatch in the model")

        return run

    monkeypatch.setattr(engine.torch, "compile", buggy)
    with pytest.raises(ValueError, match="shape mismatch in the model"):
        classify_zoo(learnable_zoo, "mlp", config=TrainConfig(epochs=1, progress=False, compile=True))


def test_max_minutes_bounds_a_compilation_in_flight(learnable_zoo, monkeypatch):
    """A compilation that outlives --max-minutes is interrupted (here a stand-in compiler that
    would block for an hour), training stops before any step, and the run says so."""
    import time

    import weightspace.train as engine

    calls = []

    def slow_compiler(model, **kw):
        def run(*a):
            calls.append(1)
            time.sleep(3600)

        return run

    monkeypatch.setattr(engine.torch, "compile", slow_compiler)
    with pytest.warns(UserWarning, match="--max-minutes ran out while torch.compile was still compiling"):
        res = classify_zoo(learnable_zoo, "mlp", config=TrainConfig(epochs=5, batch_size=32, progress=False,
                                                                   compile=True, max_minutes=0.01))
    assert calls == [1]  # interrupted inside the first compiled call, never called again
    assert res.epochs_run == 0 and res.train_seconds < 600  # not the hour the compiler asked for
    assert 0.0 <= res.test_acc <= 1.0


def test_max_minutes_stops_training_and_keeps_the_best_epoch(learnable_zoo):
    res = classify_zoo(learnable_zoo, "mlp", config=TrainConfig(epochs=10_000, batch_size=32, progress=False, max_minutes=0.02))
    assert 1 <= res.epochs_run < 10_000
    assert res.train_seconds < 30
    assert 0.0 <= res.test_acc <= 1.0 and res.val_acc > 0


@pytest.mark.parametrize("spec_name,kinds", [("tanh", ("sign",)), ("relu", ("scale",)), ("relu", ("permutation", "scale")),
                                             ("tanh", ("permutation", "sign"))])
def test_augmentation_of_standardised_batches_keeps_every_networks_function(spec_name, kinds):
    """The classification task standardises weights per tensor (nonzero means here); its
    augmentation, de-standardised, must give networks that compute the original functions."""
    from weightspace.core.functional import forward
    from weightspace.core.transforms import RandomSymmetry, Standardize
    from weightspace.tasks.classify import training_transform

    act = {"tanh": "tanh", "relu": "relu"}[spec_name]
    spec = NetworkSpec.mlp([2, 6, 5, 1], activation=act)
    g = torch.Generator().manual_seed(0)
    raw = Weights.unflatten(spec, torch.randn(64, spec.num_params, generator=g, dtype=torch.float64) * 0.5 + 0.1)
    norm = Standardize.fit(raw)
    assert min(abs(m) for m in norm.mean) > 0.01  # the case the old code got wrong
    augmented = training_transform(RandomSymmetry(kinds), norm)(norm(raw), g)
    back = norm.invert(augmented)
    x = torch.rand(32, 2, generator=g, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(forward(back, x), forward(raw, x))
    assert not torch.allclose(back.flatten(), raw.flatten())  # it did move the weights
    # the transform of the standardised weights without the raw-space wrapper does not keep them
    if kinds != ("permutation",):
        wrong = norm.invert(RandomSymmetry(kinds)(norm(raw), torch.Generator().manual_seed(1)))
        assert (forward(wrong, x) - forward(raw, x)).abs().max() > 1e-3


def test_statnn_trains_on_a_batch_of_one():
    from weightspace.models.registry import create_model

    spec = NetworkSpec.mlp([2, 4, 1])
    model = create_model("statnn", spec, out_features=3).train()
    w = Weights.unflatten(spec, torch.randn(1, spec.num_params))
    out = model(w)
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.norm.running_mean.abs().sum() == 0  # one network: running statistics left alone


def test_recipe_takes_a_presets_training_and_lets_options_override_it():
    from weightspace.tasks.classify import recipe

    config, aug = recipe("dwsnets-mnist-inr")
    assert (config.lr, config.batch_size, config.epochs, config.optimizer, config.amsgrad, config.schedule) == (
        5e-3, 512, 100, "adamw", True, "constant")
    assert config.grad_clip is None and aug == "affine"
    config, aug = recipe("dwsnets-mnist-inr", epochs=3, lr=None, augment="")
    assert config.epochs == 3 and config.lr == 5e-3 and aug == ""
    config, aug = recipe("mlp")
    assert config.epochs == 40 and config.batch_size == 32 and aug == ""
