"""The CLI's validation layer (`weightspace.cli_checks`): every numeric and path parameter of
every command has a rule, bad values end the command with one line before any work, and an
OS error mid-run (a full disk) is one line that keeps what was written."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.cli_checks import RULES, Rule, commands, rule_for
from weightspace.zoo.store import Zoo

runner = CliRunner()
_HAS_CUDA = __import__("torch").cuda.is_available()


def _parameters():
    for path, info in commands(app):
        hints = typing.get_type_hints(info.callback.__wrapped__, include_extras=True)
        for name, hint in hints.items():
            if name == "return":
                continue
            base = typing.get_args(hint)[0] if hasattr(hint, "__metadata__") else hint
            if typing.get_origin(base) in (typing.Union, __import__("types").UnionType):
                base = next(a for a in typing.get_args(base) if a is not type(None))
            yield path, name, base


def test_every_numeric_and_path_parameter_has_a_rule() -> None:
    missing = [f"{path} {name}" for path, name, base in _parameters()
               if base in (int, float, Path) and rule_for(path, name) is None]
    assert not missing, f"parameters without a rule in cli_checks.RULES: {missing}"
    # and every command is wrapped: a command registered after guard() would bypass the checks
    assert all(hasattr(info.callback, "__weightspace_checked__") for _, info in commands(app))


def test_rules_name_only_parameters_that_exist_with_their_type() -> None:
    params = list(_parameters())
    known = {name for _, name, _ in params} | {f"{p}:{n}" for p, n, _ in params}
    assert not set(RULES) - known, f"rules for no parameter: {sorted(set(RULES) - known)}"
    expected = {"int": (int,), "float": (float,), "input": (Path,), "out_dir": (Path,), "out_file": (Path,)}
    wrong = [f"{path} {name}: {base.__name__} under a {rule.kind} rule" for path, name, base in params
             if (rule := rule_for(path, name)) is not None and rule.kind in expected and base not in expected[rule.kind]]
    assert not wrong, wrong


@pytest.mark.parametrize("rule, value, ok", [
    (Rule("int", 1), 1, True), (Rule("int", 1), 0, False), (Rule("int", 1, 16), 17, False),
    (Rule("float", 0, open_lo=True), 0.0, False), (Rule("float", 0, open_lo=True), 1e-9, True),
    (Rule("float", 0), float("inf"), False), (Rule("float", 0), float("nan"), False), (Rule("float", 0), 0.0, True),
])
def test_number_rules(rule, value, ok) -> None:
    assert (rule.check("--x", value) is None) == ok


@pytest.mark.parametrize("args, message", [
    (["train", "{zoo}", "--epochs", "-1"], "--epochs must be at least 1 (got -1)"),  # was: Lightning's "no limit"
    (["train", "{zoo}", "--epochs", "0"], "--epochs must be at least 1 (got 0)"),
    (["train", "{zoo}", "--lr", "nan"], "--lr must be a finite number (got nan)"),
    (["train", "{zoo}", "--max-minutes", "0"], "--max-minutes must be above 0"),
    (["train", "{zoo}", "--seed", "-3"], "--seed must be at least 0 (got -3)"),
    (["train", "{zoo}", "-o", "{file}"], "--out: {file} is a file, not a directory"),
    (["zoo", "fit-inrs", "--limit", "0", "-o", "{new}"], "--limit must be at least 1 (got 0)"),
    (["zoo", "fit-inrs", "--shard-size", "0", "-o", "{new}"], "--shard-size must be at least 1 (got 0)"),
    (["zoo", "fit-inrs", "--shard-size", "-1", "-o", "{new}"], "--shard-size must be at least 1 (got -1)"),
    (["zoo", "fit-inrs", "--steps", "-10", "-o", "{new}"], "--steps must be at least 1 (got -10)"),
    (["zoo", "fit-inrs", "-o", "{file}"], "--out: {file} is a file, not a directory"),
    (["zoo", "fit-inrs", "-o", "{file}/zoo"], "--out: cannot create {file}/zoo: {file} is a file"),
    (["zoo", "render", "{zoo}", "-o", "{tmp}/fig.txt"], "must end in one of .png"),
    (["zoo", "info", "{tmp}/nothing"], "PATH: {tmp}/nothing does not exist"),
    (["compress", "{file}", "-o", "{tmp}/a.wsc", "--bpp", "inf"], "--bpp must be a finite number (got inf)"),
    (["compress", "{file}", "-o", "{tmp}/a.wsc", "--bpp", "1", "--steps", "-5"], "--steps must be at least 1 (got -5)"),
    (["compress", "{file}", "-o", "{tmp}", "--bpp", "1"], "--out: {tmp} is a directory; give a file name"),
    (["compress", "{file}", "-o", "{tmp}/a.wsc", "--bpp", "1", "--bits", "0"], "--bits must be at least 1 (got 0)"),
    (["hyperrep", "sample", "{zoo}", "{file}", "-n", "0"], "--num must be at least 1 (got 0)"),
    (["nern", "fit", "{file}", "-o", "{tmp}/p.safetensors", "--warmup-epochs", "-1"], "--warmup-epochs must be at least 0"),
    (["functa", "fit", "-o", "{tmp}/f", "--lr", "-1"], "--lr must be above 0 (got -1)"),
    (["functa", "fit", "-o", "{tmp}/f", "--device", "tpu"], "--device must be one of auto, cpu, cuda, gpu or cuda:N"),
    *(pytest.param(args, message, marks=pytest.mark.skipif(_HAS_CUDA, reason="this machine has a CUDA device"))
      for args, message in [
          (["functa", "fit", "-o", "{tmp}/f", "--device", "cuda"], "--device cuda: no CUDA device is available"),
          (["compress", "{file}", "-o", "{tmp}/a.wsc", "--bpp", "1", "--device", "cuda:0"],
           "--device cuda:0: no CUDA device is available (this torch build: "),
          (["hyperrep", "sample", "{zoo}", "{file}", "--device", "gpu"], "--device gpu: no CUDA device is available"),
      ]),
])
def test_bad_arguments_are_one_line_before_any_work(tmp_path, args, message) -> None:
    (tmp_path / "zoo").mkdir()  # never opened: the checks run first
    (tmp_path / "a_file").write_text("x")
    names = {"zoo": tmp_path / "zoo", "file": tmp_path / "a_file", "new": tmp_path / "new", "tmp": tmp_path}
    before = sorted(p.name for p in tmp_path.iterdir())
    r = runner.invoke(app, [a.format(**names) for a in args])
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert message.format(**names) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created


def test_missing_parent_of_an_output_file_is_made_before_the_work(tmp_path) -> None:
    src = tmp_path / "in.npy"
    import numpy as np

    np.save(src, np.linspace(0, 1, 64).reshape(8, 8))
    out = tmp_path / "deep" / "er" / "x.wsc"
    r = runner.invoke(app, ["compress", str(src), "-o", str(out), "--bpp", "8", "--steps", "5"])
    assert r.exit_code == 0, r.output
    assert out.is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_read_only_output_directory(tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = runner.invoke(app, ["zoo", "fit-inrs", "-o", str(ro / "zoo")])
        assert r.exit_code == 2 and f"cannot write in {ro}" in r.output
    finally:
        ro.chmod(0o700)


def test_full_disk_mid_build_is_one_line_and_resumes(tmp_path, monkeypatch, capsys) -> None:
    """The disk fills while the third shard is written (ENOSPC from the store's atomic write):
    one line, exit 1, the first two shards kept, no half-written file left, and the same
    command afterwards completes the zoo. (`benchmarks/reliability.py` fills a real tmpfs.)"""
    import errno

    from weightspace.cli_checks import main
    from weightspace.zoo import store

    out = tmp_path / "zoo"
    argv = ["weightspace", "zoo", "fit-inrs", "--dataset", "digits", "--limit", "24", "--steps", "3",
            "--shard-size", "16", "-o", str(out)]
    real = store._atomic_write

    def filling(path, write):
        if path.name == store.shard_name(2):
            def partial(tmp):
                tmp.write_bytes(b"half a shard")
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
            return real(path, partial)
        return real(path, write)

    monkeypatch.setattr(store, "_atomic_write", filling)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        main(app)
    assert stop.value.code == 1
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if "error" in line.lower()]  # the rest: the progress bar
    assert "Traceback" not in stderr
    assert len(err) == 1 and err[0].startswith("error: no space left on the device writing "), err
    assert sorted(p.name for p in (out / "shards").iterdir()) == [store.shard_name(0), store.shard_name(1)]
    monkeypatch.setattr(store, "_atomic_write", real)
    with pytest.raises(SystemExit) as stop:
        main(app)
    assert stop.value.code == 0
    zoo = Zoo.open(out)
    assert len(zoo) == 72 and zoo.info()["complete"]


def _help_of(path: str) -> str:
    r = runner.invoke(app, [*path.split(), "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, (path, r.output)
    return r.output


def test_every_command_has_help_and_every_option_a_description() -> None:
    """Walks every command's --help: it runs, shows the command's docstring, and no option is
    left without a description (`COMMON_HELP` fills the shared ones)."""
    from typer.models import ArgumentInfo, OptionInfo

    undescribed, mangled = [], []
    for path, info in commands(app):
        text = " ".join(_help_of(path).split())
        boxless = " ".join(text.replace("│", " ").split())
        doc = " ".join((info.callback.__doc__ or "").split())
        assert doc and doc.split(".")[0][:60] in text, f"{path}: --help lacks its description"
        hints = typing.get_type_hints(info.callback.__wrapped__, include_extras=True)
        import inspect

        for name, p in inspect.signature(info.callback.__wrapped__).parameters.items():
            found = [m for m in getattr(hints.get(name), "__metadata__", ()) if isinstance(m, (OptionInfo, ArgumentInfo))]
            param = found[0] if found else p.default
            if not getattr(param, "help", None):
                undescribed.append(f"{path} {name}")
            elif " ".join(param.help.split()) not in boxless:  # e.g. "[default: x]" read as markup and dropped
                mangled.append(f"{path} {name}: {param.help!r}")
    assert not undescribed, f"options without help: {undescribed}"
    assert not mangled, f"help shown other than written: {mangled}"


def test_help_does_not_import_torch() -> None:
    """`weightspace --help` (and every sub-command's) loads no PyTorch: help comes in well under a
    second instead of 7-9 s (benchmarks/cli_startup.py measures it)."""
    code = ("import sys; from weightspace.cli import main; sys.argv = ['weightspace', 'zoo', 'fit-inrs', '--help'];\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"


def test_quiet_turns_every_progress_bar_off(tmp_path) -> None:
    """`weightspace --quiet` prints results and nothing on stderr (a fresh process: the switch is
    an environment variable that Ray workers inherit too)."""
    env = {k: v for k, v in os.environ.items() if k != "WEIGHTSPACE_QUIET"}
    for quiet in (True, False):
        out = tmp_path / f"z{quiet}"
        args = [sys.executable, "-m", "weightspace.cli", *(["--quiet"] if quiet else []), "zoo", "fit-inrs",
                "--dataset", "digits", "--limit", "4", "--steps", "5", "-o", str(out)]
        r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, check=False)
        assert r.returncode == 0, r.stderr
        assert "wrote 12 INRs" in r.stdout
        assert ("fitting INRs" in r.stderr) != quiet, r.stderr
