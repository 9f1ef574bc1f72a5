import pytest
import torch

from weightspace.core.functional import forward
from weightspace.zoo.store import Zoo
from weightspace.zoo.vectors import (
    read_vectors,
    vector_spec,
    vectors_to_weights,
    weights_to_vectors,
    write_vector_zoo,
)


def test_vector_zoo_round_trip_is_exact(tmp_path, gen):
    v = torch.randn(10, 7, generator=gen)
    split = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    write_vector_zoo(tmp_path / "z", v, {"label": list(range(10)), "split": split}, provenance={"kind": "test"}, shard_size=4)
    zoo = Zoo.open(tmp_path / "z")
    assert zoo.spec == vector_spec(7) and zoo.provenance["kind"] == "test"
    got, table = read_vectors(zoo)
    assert torch.equal(got, v) and table["label"].tolist() == list(range(10))
    got, _ = read_vectors(zoo, "val")
    assert torch.equal(got, v[6:8])


def test_vectors_are_the_networks_outputs(gen):
    v = torch.randn(5, 3, generator=gen)
    w = vectors_to_weights(v)
    assert torch.equal(forward(w, torch.ones(1, 1))[:, 0], v)
    assert torch.equal(weights_to_vectors(w), v)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"vectors \[N, d\]"):
        vectors_to_weights(torch.zeros(3))
    from weightspace.core.spec import NetworkSpec
    from weightspace.core.weights import Weights

    w = Weights.unflatten(NetworkSpec.mlp([2, 3]), torch.zeros(1, 9))
    with pytest.raises(ValueError, match="not a vector zoo spec"):
        weights_to_vectors(w)
