"""Lat-lon grid signals: harmonic fields are what they claim, .npy files load back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from weightspace.signals.grids import (
    latlon,
    load_grid_npy,
    load_spherical_harmonics,
    spherical_harmonic_field,
)


def test_band_limit_zero_is_constant_and_degree_one_is_a_dipole() -> None:
    f0 = spherical_harmonic_field(9, 17, 0, seed=1)
    assert np.allclose(f0, f0.flat[0]) and np.isclose(abs(f0.flat[0]), 1.0)  # unit RMS constant
    lat, lon = latlon(9, 17)
    # band limit 1 is a constant plus a linear function of the unit vector on the sphere
    f1 = spherical_harmonic_field(9, 17, 1, seed=2).reshape(-1)
    xyz = np.stack([np.ones_like(lat), np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1)
    coef, *_ = np.linalg.lstsq(xyz, f1, rcond=None)
    assert np.allclose(xyz @ coef, f1, atol=1e-9)
    f4 = spherical_harmonic_field(9, 17, 4, seed=2).reshape(-1)
    coef, *_ = np.linalg.lstsq(xyz, f4, rcond=None)
    assert not np.allclose(xyz @ coef, f4, atol=1e-3)  # higher degrees are not linear


def test_dataset_is_seeded_and_in_range() -> None:
    a, b = load_spherical_harmonics(3, 8, 16, seed=0), load_spherical_harmonics(3, 8, 16, seed=0)
    c = load_spherical_harmonics(3, 8, 16, seed=1)
    assert a.values.shape == (9, 128, 1) and a.kind == "grid" and a.classes == ("L2", "L4", "L8")
    assert float(a.values.min()) >= 0 and float(a.values.max()) <= 1
    assert np.array_equal(a.values.numpy(), b.values.numpy()) and not np.array_equal(a.values.numpy(), c.values.numpy())


def test_npy_round_trip_and_bad_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 7)) * 30 + 280  # e.g. temperatures in kelvin
    np.save(tmp_path / "t.npy", x)
    ds = load_grid_npy(tmp_path / "t.npy")
    assert ds.signal_shape == (5, 7, 1) and len(ds) == 2
    lo, hi = ds.meta["lo"], ds.meta["hi"]
    back = lo + ds.as_grid()[..., 0].double().numpy() * (hi - lo)
    assert np.allclose(back, x, rtol=1e-6)
    np.save(tmp_path / "bad.npy", np.zeros(5))
    with pytest.raises(ValueError, match="expected"):
        load_grid_npy(tmp_path / "bad.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="junk.npy"):
        load_grid_npy(tmp_path / "junk.npy")
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        load_grid_npy(tmp_path / "nan.npy")
