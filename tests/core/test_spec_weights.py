import json

import pytest
import torch
from torch import nn

from tests.specs import SPECS, example_input, random_weights
from weightspace import LayerSpec, NetworkSpec, Sine, Weights, forward


@pytest.mark.parametrize("name", SPECS)
def test_spec_json_round_trip(name):
    spec = SPECS[name]
    again = NetworkSpec.from_json(spec.to_json())
    assert again == spec and hash(again) == hash(spec)
    json.loads(spec.to_json())  # plain JSON, no custom objects


@pytest.mark.parametrize("name", SPECS)
def test_module_round_trip(name):
    spec = SPECS[name]
    module = spec.build_module(seed=1)
    assert NetworkSpec.from_module(module) == spec
    assert sum(p.numel() for p in module.parameters()) == spec.num_params


@pytest.mark.parametrize("name", SPECS)
def test_state_dict_round_trip_is_exact(name):
    spec = SPECS[name]
    modules = [spec.build_module(seed=s) for s in range(3)]
    w = Weights.from_state_dicts([m.state_dict() for m in modules], spec)
    for i, m in enumerate(modules):
        sd = w.to_state_dict(i)
        assert sd.keys() == m.state_dict().keys()
        for k, v in m.state_dict().items():
            assert torch.equal(sd[k], v), k
    # module -> Weights -> module
    rebuilt = w.to_module(2)
    for (k, a), b in zip(rebuilt.state_dict().items(), modules[2].state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name", SPECS)
def test_functional_forward_equals_module(name, dtype):
    spec = SPECS[name]
    modules = [spec.build_module(seed=s).to(dtype) for s in range(3)]
    w = Weights.from_modules(modules)
    g = torch.Generator().manual_seed(3)
    x = example_input(spec, generator=g, dtype=dtype)
    ref = torch.stack([m(x) for m in modules])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(forward(w, x), ref, rtol=tol, atol=tol)
    # per-network inputs
    xs = torch.stack([x, x * 0.5, -x])
    ref = torch.stack([m(xi) for m, xi in zip(modules, xs)])
    torch.testing.assert_close(forward(w, xs), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", SPECS)
def test_flatten_unflatten_and_indexing(name, gen):
    spec = SPECS[name]
    w = random_weights(spec, 5, generator=gen, channels=2)
    flat = w.flatten()
    assert flat.shape == (5, 2, spec.num_params)
    again = Weights.unflatten(spec, flat)
    assert all(torch.equal(a, b) for a, b in zip(w.tensors(), again.tensors()))
    assert len(w[1]) == 1 and len(w[1:4]) == 3 and len(w[[0, 4]]) == 2
    assert torch.equal(w[3].flatten()[0], flat[3])
    assert torch.equal(Weights.cat([w[:2], w[2:]]).flatten(), flat)


def test_bad_inputs_are_named():
    spec = SPECS["mlp_relu"]
    sd = spec.build_module(seed=0).state_dict()
    with pytest.raises(KeyError, match="missing '2.weight'"):
        Weights.from_state_dicts([{k: v for k, v in sd.items() if k != "2.weight"}], spec)
    bad = dict(sd)
    bad["0.weight"] = torch.zeros(5, 4)
    with pytest.raises(ValueError, match="'0.weight' has shape"):
        Weights.from_state_dicts([bad], spec)
    with pytest.raises(ValueError, match="layer 1 takes 4 inputs but layer 0 gives 3"):
        NetworkSpec((LayerSpec("linear", 2, 3), LayerSpec("linear", 4, 1)))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        LayerSpec("linear", 2, 3, activation="swish")
    with pytest.raises(ValueError, match="needs global pooling"):
        NetworkSpec((LayerSpec("conv", 1, 2, (3, 3)), LayerSpec("linear", 2, 1)))
    with pytest.raises(ValueError, match="unsupported module BatchNorm1d"):
        NetworkSpec.from_module(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match=r"layer 0: weight shape"):
        Weights(spec, (torch.zeros(1, 1, 2, 2),) + random_weights(spec, 1).weights[1:], random_weights(spec, 1).biases)
    w = random_weights(spec, 2)
    with pytest.raises(ValueError, match="input has 7 features"):
        forward(w, torch.zeros(3, 7))


def test_from_module_reads_foreign_siren():
    module = nn.Sequential(nn.Linear(2, 6), Sine(30.0), nn.Dropout(0.1), nn.Linear(6, 1))
    spec = NetworkSpec.from_module(module)
    assert spec == NetworkSpec.siren(2, [6], 1)
    assert [layer.omega for layer in spec.layers] == [30.0, 1.0]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_from_tensors_round_trip_is_exact_and_keeps_gradients(name, gen):
    spec = SPECS[name]
    w = random_weights(spec, 3, generator=gen)
    leaves = [t[:, 0].clone().requires_grad_() for t in w.tensors()]
    back = Weights.from_tensors(spec, leaves)
    for a, b in zip(back.tensors(), w.tensors()):
        assert torch.equal(a, b)
    back.flatten().sum().backward()
    assert all(p.grad is not None for p in leaves)
    with pytest.raises(ValueError, match="more tensors"):
        Weights.from_tensors(spec, [*leaves, leaves[0]])
