"""The native-kernel cache runs only code this user put there.

Each test plants, under the exact name the loader looks for, a shared library whose
constructor creates a marker file: the marker appears if and only if the planted library
was loaded. A clean cache loads it (so the marker can tell); an untrusted directory or file
(writable by others, owned by another uid, a symlink) is refused with a warning that says
why, and the real kernel is built instead.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from weightspace.zoo import siren_native

CC = siren_native._compiler()
pytestmark = [
    pytest.mark.skipif(CC is None, reason="needs a C compiler"),
    pytest.mark.skipif(not hasattr(os, "geteuid"), reason="needs POSIX owners and modes"),
]
NOBODY = 65534  # another uid to own planted files (the tests chown as root)
needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")


@pytest.fixture(scope="module")
def real_kernel(tmp_path_factory) -> Path:
    """The real kernel, compiled once for the module (rebuilds below copy it: same bytes, no compile time)."""
    out = tmp_path_factory.mktemp("kernel") / "kernel.so"
    siren_native._compile(CC, str(out))
    return out


@pytest.fixture
def cache(monkeypatch, tmp_path, real_kernel):
    """An empty ``$WEIGHTSPACE_CACHE_DIR``, no library loaded yet, builds counted, temp dirs in tmp_path."""
    root = tmp_path / "cache"
    monkeypatch.setenv("WEIGHTSPACE_CACHE_DIR", str(root))
    monkeypatch.setattr(siren_native, "_lib", None)  # forget the loaded library (restored afterwards)
    builds: list[str] = []

    def compile_(cc: str, out: str) -> None:
        builds.append(out)
        shutil.copyfile(real_kernel, out)

    monkeypatch.setattr(siren_native, "_compile", compile_)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # where a private build goes
    return SimpleNamespace(root=root, builds=builds, private_tmp=private_tmp)


def _plant(directory: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Compile, as ``directory/<expected name>``, a library whose constructor creates a marker file."""
    marker = tmp_path / "planted-library-ran"
    src = tmp_path / "planted.c"
    src.write_text(
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void planted(void) {\n"
        f'    FILE *f = fopen("{marker}", "w"); if (f) fclose(f);\n'
        "}\n"
    )
    target = directory / siren_native._library_name(CC)
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(target), str(src)], check=True, capture_output=True)
    os.chmod(target, 0o755)
    return target, marker


def _private_dir(cache: Path) -> Path:
    native = cache / "native"
    native.mkdir(parents=True, mode=0o700)
    return native


def test_fresh_cache_is_private_and_built_atomically(cache) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean first build says nothing
        assert siren_native.available()
    for d in (cache.root, cache.root / "native"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    (lib,) = (cache.root / "native").iterdir()  # the library only: the temporary file was renamed onto it
    assert lib.name == siren_native._library_name(CC)
    assert lib.stat().st_uid == os.geteuid() and stat.S_IMODE(lib.stat().st_mode) == 0o755
    assert len(cache.builds) == 1 and Path(cache.builds[0]).parent == cache.root / "native"  # built beside the target


def test_clean_cache_is_loaded(cache, tmp_path) -> None:
    # the control: a trusted cache is used as is (no build), so the marker does show a load
    planted, marker = _plant(_private_dir(cache.root), tmp_path)
    with pytest.warns(UserWarning, match="native SIREN kernel is unavailable"):  # it lacks the kernel's symbols
        assert not siren_native.available()
    assert marker.exists() and not cache.builds


@pytest.mark.parametrize("mode,why", [(0o777, "writable by group and others"), (0o770, "writable by group"),
                                      (0o703, "writable by others")])
def test_writable_cache_dir_is_refused(cache, tmp_path, mode, why) -> None:
    native = _private_dir(cache.root)
    planted, marker = _plant(native, tmp_path)
    native.chmod(mode)
    with pytest.warns(UserWarning, match=f"not using the native-kernel cache: cache directory .* is {why}"):
        assert siren_native.available()  # the real kernel, built privately
    assert not marker.exists()
    assert len(cache.builds) == 1 and Path(cache.builds[0]).parent.parent == cache.private_tmp
    assert list(native.iterdir()) == [planted]  # nothing written into the untrusted directory
    assert not list(cache.private_tmp.iterdir())  # the private build directory is gone


@needs_root
def test_cache_dir_of_another_user_is_refused(cache, tmp_path) -> None:
    native = _private_dir(cache.root)
    planted, marker = _plant(native, tmp_path)
    os.chown(native, NOBODY, NOBODY)
    with pytest.warns(UserWarning, match=f"cache directory .* is owned by uid {NOBODY}"):
        assert siren_native.available()
    assert not marker.exists() and list(native.iterdir()) == [planted]


@needs_root
def test_library_of_another_user_is_refused_and_rebuilt(cache, tmp_path) -> None:
    planted, marker = _plant(_private_dir(cache.root), tmp_path)
    os.chown(planted, NOBODY, NOBODY)
    with pytest.warns(UserWarning, match=f"not loading the cached native kernel: .* is owned by uid {NOBODY}"):
        assert siren_native.available()
    assert not marker.exists() and len(cache.builds) == 1
    assert planted.stat().st_uid == os.geteuid()  # replaced by this user's build
    # and the rebuilt library is trusted: the next process loads it without a build or a word
    siren_native._lib = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert siren_native.available()
    assert len(cache.builds) == 1


def test_group_writable_library_is_refused_and_rebuilt(cache, tmp_path) -> None:
    planted, marker = _plant(_private_dir(cache.root), tmp_path)
    planted.chmod(0o775)
    with pytest.warns(UserWarning, match="not loading the cached native kernel: .* is writable by group"):
        assert siren_native.available()
    assert not marker.exists() and len(cache.builds) == 1
    assert stat.S_IMODE(planted.stat().st_mode) == 0o755


def test_symlinked_library_is_refused(cache, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted, marker = _plant(elsewhere, tmp_path)  # a file of this user's, but reached through a link
    link = _private_dir(cache.root) / planted.name
    link.symlink_to(planted)
    with pytest.warns(UserWarning, match="cannot be opened safely"):
        assert siren_native.available()
    assert not marker.exists() and not link.is_symlink()  # the link was replaced by a build
