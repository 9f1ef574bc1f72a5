"""README.md runs as written: every Python block is executed (against a small zoo placed where
the README's commands would have built one), and every `weightspace` command line of every
bash block is parsed by the real command-line parser and its counts, rates and seeds are
checked by the validation layer, so a renamed option, a removed command or an invalid value
in the README fails here. (The commands themselves are not run: several fit the full MNIST
for an hour; `tests/test_cli*.py` run each command at small sizes.)"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weightspace.cli import app
from weightspace.cli_checks import commands, rule_for

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), re.S)


def _command_lines() -> list[tuple[str, bool]]:
    """(arguments, whether the README shows it failing: a command followed by ``||``)."""
    lines = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():  # continued lines joined
            words = shlex.split(line, comments=True)
            if words and words[0] == "weightspace":
                cut = next((i for i, w in enumerate(words) if w in ("||", "&&", "|", ";")), len(words))
                lines.append((shlex.join(words[1:cut]), cut < len(words) and words[cut] == "||"))
    return lines


COMMAND_LINES = _command_lines()


def test_the_readme_has_commands_and_python() -> None:
    assert len(COMMAND_LINES) > 30 and sum(lang == "python" for lang, _ in BLOCKS) >= 2


@pytest.mark.parametrize(("line", "fails"), COMMAND_LINES, ids=[line for line, _ in COMMAND_LINES])
def test_readme_command_parses_and_passes_the_number_checks(line, fails, monkeypatch) -> None:
    seen: dict = {}
    for path, info in commands(app):
        def record(*args, _path=path, **kwargs):
            seen.update(path=_path, kwargs=kwargs)

        monkeypatch.setattr(info, "callback", functools.wraps(info.callback)(record))
    r = CliRunner().invoke(app, shlex.split(line))
    assert r.exit_code == 0 and seen, f"weightspace {line}\n{r.output}"
    problems = [p for name, value in seen["kwargs"].items()  # paths unchecked: the README's files are not here
                if (rule := rule_for(seen["path"], name)) is not None and rule.kind in ("int", "float")
                and (p := rule.check(name, value))]
    assert bool(problems) == fails, f"weightspace {line}: {problems or 'no problem, but the README shows it failing'}"


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory) -> Path:
    """A folder with a small zoo at ``zoos/mnist5k`` (digits instead of the 5k MNIST subset)."""
    root = tmp_path_factory.mktemp("readme")
    r = CliRunner().invoke(app, ["zoo", "fit-inrs", "--dataset", "digits", "--limit", "6", "--steps", "20",
                                 "-o", str(root / "zoos" / "mnist5k")])
    assert r.exit_code == 0, r.output
    return root


@pytest.mark.parametrize("code", [body for lang, body in BLOCKS if lang == "python"])
def test_readme_python_runs(code, readme_dir, monkeypatch) -> None:
    monkeypatch.chdir(readme_dir)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - the README's own code


def test_every_command_shows_a_readme_example_in_its_help() -> None:
    from weightspace.cli_examples import EXAMPLES

    readme = {"weightspace " + line for line, fails in COMMAND_LINES if not fails}
    paths = [path for path, _ in commands(app)]
    assert set(EXAMPLES) == set(paths), "one example per command"
    assert not {e for e in EXAMPLES.values()} - readme, "examples that are not README command lines"
    for path in paths:
        r = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "400"})
        assert r.exit_code == 0 and EXAMPLES[path] in " ".join(r.output.split()), (path, r.output[-400:])
