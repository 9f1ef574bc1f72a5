import pytest
import torch

from weightspace import NetworkSpec, Weights, forward
from weightspace.inr.siren import get_recipe
from weightspace.signals import load_digits
from weightspace.zoo import siren_grad
from weightspace.zoo.fit_inr import fit_inrs


def _autograd(spec, params, coords, y):
    leaves = [p.detach().clone().requires_grad_() for p in params]
    mse = (forward(Weights.from_tensors(spec, leaves), coords) - y).square().mean(dim=(1, 2))
    mse.sum().backward()
    return mse.detach(), [p.grad for p in leaves]


@pytest.mark.parametrize("hidden,out_c,in_d", [((32, 32), 1, 2), ((5,), 3, 3), ((7, 1, 4), 2, 1)])
def test_hand_gradient_equals_autograd(hidden, out_c, in_d):
    torch.manual_seed(0)
    spec = NetworkSpec.siren(in_d, hidden, out_c, omega=30.0)
    n, p = 4, 50
    coords = torch.rand(p, in_d, dtype=torch.float64) * 2 - 1
    params = []
    for layer in spec.layers:
        params += [torch.randn(n, layer.out_features, layer.in_features, dtype=torch.float64) * 0.1,
                   torch.randn(n, layer.out_features, dtype=torch.float64) * 0.1]
    y = torch.randn(n, p, out_c, dtype=torch.float64)
    want_mse, want = _autograd(spec, params, coords, y)
    grad = siren_grad.SirenMSEGrad(spec, coords, max_networks=n + 2)  # buffers larger than the batch
    mse = grad(params, y)
    torch.testing.assert_close(mse, want_mse)
    for i, (p_, g) in enumerate(zip(params, want)):
        torch.testing.assert_close(p_.grad, g, msg=lambda m, i=i: f"tensor {i}: {m}")


@pytest.mark.parametrize("hidden,out_c,in_d,n", [((32, 32), 1, 2, 4), ((5,), 3, 3, 1), ((7, 1, 4), 2, 1, 3)])
def test_compiled_float32_gradient_equals_autograd(hidden, out_c, in_d, n, monkeypatch):
    # float32 on CPU takes the compiled whole step (n = 1 runs as a batch of two) when the native
    # kernel is off (it is tested below)
    monkeypatch.setenv("WEIGHTSPACE_NATIVE", "0")
    torch.manual_seed(1)
    spec = NetworkSpec.siren(in_d, hidden, out_c, omega=30.0)
    coords = torch.rand(60, in_d) * 2 - 1
    params = []
    for layer in spec.layers:
        params += [torch.randn(n, layer.out_features, layer.in_features) * 0.1, torch.randn(n, layer.out_features) * 0.1]
    y = torch.randn(n, 60, out_c)
    want_mse, want = _autograd(spec, [p.double() for p in params], coords.double(), y.double())
    mse = siren_grad.SirenMSEGrad(spec, coords, max_networks=n)(params, y)
    assert mse.dtype == torch.float32 and mse.shape == (n,)
    torch.testing.assert_close(mse.double(), want_mse, rtol=1e-5, atol=1e-6)
    assert siren_grad._steps and False not in siren_grad._steps.values(), "the compiled step did not run (no C++ compiler?)"
    for i, (p_, g) in enumerate(zip(params, want)):
        assert p_.grad.shape == p_.shape
        torch.testing.assert_close(p_.grad.double(), g, rtol=1e-3, atol=1e-5, msg=lambda m, i=i: f"tensor {i}: {m}")
    # switched off: the eager buffered step, same gradients
    monkeypatch.setenv("WEIGHTSPACE_COMPILE", "0")
    compiled = [p_.grad for p_ in params]
    siren_grad.SirenMSEGrad(spec, coords, max_networks=n)(params, y)
    for a, b in zip(compiled, params):
        assert a is not b.grad
        torch.testing.assert_close(a, b.grad, rtol=1e-3, atol=2e-5)  # each within 1e-5 of the float64 truth


def test_unsupported_specs_are_refused_and_fall_back():
    relu = NetworkSpec.mlp([2, 8, 1], activation="relu")
    assert not siren_grad.supports(relu)
    with pytest.raises(ValueError, match="sine hidden layers"):
        siren_grad.SirenMSEGrad(relu, torch.zeros(3, 2), 1)


@pytest.mark.parametrize("name", ["dwsnets", "nfn"])
def test_fit_by_hand_equals_fit_by_autograd(name):
    # early stopping on, so networks leave the batch and the buffers are used as views
    recipe = get_recipe(name, steps=30, early_stop_psnr=12.0 if name == "dwsnets" else None)
    data = load_digits(limit=6)
    coords, targets = data.coordinates(), data.targets()[:6]
    a = fit_inrs(coords, targets, recipe, list(range(6)))
    b = fit_inrs(coords, targets, recipe, list(range(6)), use_autograd=True)
    assert torch.equal(a.steps, b.steps)
    if name == "dwsnets":  # some networks stopped early, some ran to the end
        assert (a.steps < 30).any() and (a.steps == 30).any()
    torch.testing.assert_close(a.psnr, b.psnr, rtol=1e-4, atol=1e-3)
    for x, y in zip(a.weights.tensors(), b.weights.tensors()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_fused_sincos_matches_torch_in_float32():
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(10_000, generator=g) * 3, (torch.rand(10_000, generator=g) * 2 - 1) * 1000,
                   torch.tensor([0.0, torch.pi / 2, -torch.pi, 1e-30, 2.5 * torch.pi])])
    s, c = siren_grad.sincos(z)
    ref = z.double()
    assert (s.double() - ref.sin()).abs().max() < 1e-6
    assert (c.double() - ref.cos()).abs().max() < 1e-6
    # and not a copy of its input or of torch.sin by accident of the test: cos is not sin
    assert (s - c).abs().max() > 1.0


def test_grid_axes_recognises_row_major_grids_only():
    from weightspace.signals.base import grid_coordinates

    for shape in [(3, 4), (2, 3, 5)]:
        axes = siren_grad.grid_axes(grid_coordinates(shape))
        assert axes is not None and [a.numel() for a in axes] == list(shape)
        for a, n in zip(axes, shape):
            torch.testing.assert_close(a, torch.linspace(-1, 1, n))
    g = grid_coordinates((3, 4))
    flipped = siren_grad.grid_axes(g.flip(0))  # a grid walked backwards is a grid of reversed axes
    assert flipped is not None and flipped[0][0] == 1.0 and flipped[1][0] == 1.0
    uneven = torch.stack(torch.meshgrid(torch.tensor([0.0, 0.1, 0.7]), torch.tensor([-1.0, 2.0]), indexing="ij"), -1)
    assert siren_grad.grid_axes(uneven.reshape(-1, 2)) is not None  # any spacing
    gen = torch.Generator().manual_seed(0)
    not_grids = {
        "shuffled rows": g[torch.randperm(12, generator=gen)],
        "column-major": torch.stack(torch.meshgrid(torch.linspace(-1, 1, 3), torch.linspace(-1, 1, 4), indexing="xy"),
                                    -1).reshape(-1, 2),
        "random points": torch.rand(12, 2, generator=gen),
        "a point missing": g[:-1],
        "one axis of size 1": grid_coordinates((1, 5)),
        "one axis only": grid_coordinates((9,)),
    }
    for name, coords in not_grids.items():
        assert siren_grad.grid_axes(coords) is None, name


@pytest.mark.parametrize("hidden,out_c,shape,n", [((32, 32), 1, (6, 7), 3), ((5,), 3, (3, 4, 5), 2), ((7, 1, 4), 2, (4, 3), 1)])
def test_grid_step_gradient_equals_autograd(hidden, out_c, shape, n, monkeypatch):
    # on a grid the compiled step takes the first layer's sines per axis (angle-sum identity)
    from weightspace.signals.base import grid_coordinates

    monkeypatch.setenv("WEIGHTSPACE_NATIVE", "0")  # the compiled step; the native kernel is tested below
    torch.manual_seed(2)
    spec = NetworkSpec.siren(len(shape), hidden, out_c, omega=30.0)
    coords = grid_coordinates(shape)
    params = []
    for layer in spec.layers:
        params += [torch.randn(n, layer.out_features, layer.in_features) * 0.1, torch.randn(n, layer.out_features) * 0.1]
    y = torch.randn(n, coords.shape[0], out_c)
    want_mse, want = _autograd(spec, [p.double() for p in params], coords.double(), y.double())
    grad = siren_grad.SirenMSEGrad(spec, coords, max_networks=n)
    assert grad.axes is not None
    mse = grad(params, y)
    assert ("grid", len(shape)) in {k[0] for k, v in siren_grad._steps.items() if v is not False}
    torch.testing.assert_close(mse.double(), want_mse, rtol=1e-5, atol=1e-6)
    for i, (p_, g) in enumerate(zip(params, want)):
        assert p_.grad.shape == p_.shape
        # float32 rounding of the sums over points, relative to each gradient's own scale (the
        # first layer's reach ~25 here); the dense step's errors are of the same size
        atol = 1e-5 * max(1.0, g.abs().max().item())
        torch.testing.assert_close(p_.grad.double(), g, rtol=1e-3, atol=atol, msg=lambda m, i=i: f"tensor {i}: {m}")
    # the identity switched off: the dense compiled step, same gradients
    monkeypatch.setenv("WEIGHTSPACE_GRID_IDENTITY", "0")
    grid_grads = [p_.grad for p_ in params]
    dense = siren_grad.SirenMSEGrad(spec, coords, max_networks=n)
    assert dense.axes is None
    dense(params, y)
    for a, b in zip(grid_grads, params):
        torch.testing.assert_close(a, b.grad, rtol=1e-3, atol=2e-5 * max(1.0, a.abs().max().item()))


@pytest.mark.parametrize("hidden,out_c,shape,n", [
    ((32, 32), 1, (7, 9), 5),  # the published recipes' shape, on a grid
    ((16,), 3, (3, 4, 5), 2),  # one hidden layer, RGB-like output, a 3-D grid
    ((64, 64, 64), 2, (37,), 3),  # audio-like 1-D input (no grid), a point count not a multiple of the tile
    ((32, 32), 1, None, 4),  # scattered points (no grid)
])
def test_native_kernel_equals_autograd(hidden, out_c, shape, n):
    from weightspace.signals.base import grid_coordinates

    torch.manual_seed(3)
    spec = NetworkSpec.siren(len(shape) if shape else 2, hidden, out_c, omega=30.0)
    coords = grid_coordinates(shape) if shape else torch.rand(50, 2) * 2 - 1
    params = []  # scaled by fan-in: omega = 30 in every sine layer would otherwise amplify float32 rounding 30x per layer
    for layer in spec.layers:
        params += [torch.randn(n, layer.out_features, layer.in_features) / layer.in_features,
                   torch.randn(n, layer.out_features) * 0.1]
    y = torch.randn(n, coords.shape[0], out_c)
    want_mse, want = _autograd(spec, [p.double() for p in params], coords.double(), y.double())
    grad = siren_grad.SirenMSEGrad(spec, coords, max_networks=n)
    assert grad.native, "the native kernel did not build (no C compiler?)"
    assert (grad.axes is not None) == (shape is not None and len(shape) > 1)
    mse = grad(params, y)
    torch.testing.assert_close(mse.double(), want_mse, rtol=1e-5, atol=1e-6)
    for i, (p_, g) in enumerate(zip(params, want)):
        assert p_.grad.shape == p_.shape and p_.grad.is_contiguous()
        atol = 1e-5 * max(1.0, g.abs().max().item())
        torch.testing.assert_close(p_.grad.double(), g, rtol=1e-3, atol=atol, msg=lambda m, i=i: f"tensor {i}: {m}")
    # each network on its own gives its own result, bit for bit: no dependence on the batch or the thread split
    for j in range(n):
        one = [p_.detach()[j : j + 1].clone() for p_ in params]
        mse_j = siren_grad.SirenMSEGrad(spec, coords, max_networks=1)(one, y[j : j + 1])
        assert torch.equal(mse_j, mse[j : j + 1])
        for a, b in zip(one, params):
            assert torch.equal(a.grad[0], b.grad[j])


def test_native_kernel_is_skipped_where_it_does_not_apply(monkeypatch):
    from weightspace.zoo import siren_native

    coords = torch.rand(20, 2)
    assert siren_native.supported(coords, [32, 32], 2)
    assert not siren_native.supported(coords, [5], 1)  # width not a multiple of 16
    assert not siren_native.supported(coords, [32, 64], 2)  # unequal widths
    assert not siren_native.supported(coords.double(), [32], 1)
    monkeypatch.setenv("WEIGHTSPACE_NATIVE", "0")
    assert not siren_native.supported(coords, [32, 32], 2)
    spec = NetworkSpec.siren(2, (32, 32), 1, omega=30.0)
    assert not siren_grad.SirenMSEGrad(spec, coords, 2).native


def test_native_kernel_without_a_compiler_warns_and_falls_back(monkeypatch, tmp_path):
    from weightspace.zoo import siren_native

    monkeypatch.setattr(siren_native, "_lib", None)  # forget the loaded library: build again
    monkeypatch.setenv("WEIGHTSPACE_CACHE_DIR", str(tmp_path))  # and nothing cached
    monkeypatch.setattr(siren_native, "_compiler", lambda: None)
    spec = NetworkSpec.siren(2, (16,), 1, omega=30.0)
    coords = torch.rand(20, 2)
    with pytest.warns(UserWarning, match="native SIREN kernel is unavailable.*no C compiler"):
        grad = siren_grad.SirenMSEGrad(spec, coords, 2)
    assert not grad.native and not list(tmp_path.iterdir())
    params = []
    for layer in spec.layers:
        params += [torch.randn(2, layer.out_features, layer.in_features) * 0.1, torch.randn(2, layer.out_features) * 0.1]
    y = torch.randn(2, 20, 1)
    want_mse, _ = _autograd(spec, [p.double() for p in params], coords.double(), y.double())
    torch.testing.assert_close(grad(params, y).double(), want_mse, rtol=1e-5, atol=1e-6)  # the fallback step


def test_native_kernel_builds_into_the_cache_once(monkeypatch, tmp_path):
    from weightspace.zoo import siren_native

    monkeypatch.setattr(siren_native, "_lib", None)
    monkeypatch.setenv("WEIGHTSPACE_CACHE_DIR", str(tmp_path))
    assert siren_native.available()
    built = list((tmp_path / "native").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no temporary file left behind
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(siren_native, "_lib", None)
    assert siren_native.available()
    assert [p.stat().st_mtime_ns for p in (tmp_path / "native").iterdir()] == [stamp]  # reused, not rebuilt
