"""Every README snippet runs as written, and every command the README and the examples show
parses with the real parser (its flags exist)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from frugalml.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _commands() -> list[tuple[str, bool]]:
    """``frugalml ...`` commands, each with whether it is a complete invocation: the README's
    bash blocks and the command lines in the examples' header comments are; inline code in
    the README's prose may name a command without its required arguments."""
    found: list[tuple[str, bool]] = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            found += [(part.strip(), True) for part in line.split("&&")]
    found += [(c, False) for c in re.findall(r"`((?:\.venv/bin/)?frugalml [^`]+)`", README)]
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        text = example.read_text(encoding="utf-8")
        text = re.sub(r"\\\n#\s*", " ", text)  # a command continued over comment lines
        for line in text.splitlines():
            match = re.match(r"#\s+((?:\.venv/bin/)?frugalml .*?)(\s+#.*)?$", line)
            if match:
                found.append((match.group(1), True))
    commands = []
    for command, complete in found:
        command = command.removeprefix(".venv/bin/")
        words = [w for w in command.split()[1:] if w not in {"-q", "--quiet", "--debug", "..."}]
        if command.startswith("frugalml ") and words:  # not prose about a global option
            commands.append((command, complete))
    return commands


def test_the_readme_has_snippets_to_test() -> None:
    assert len(_blocks("python")) >= 1
    assert len(_commands()) >= 10


@pytest.mark.slow  # a fresh interpreter imports torch: seconds, more on a loaded machine
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_each_python_snippet_runs_as_written(tmp_path: Path, index: int) -> None:
    """In a fresh interpreter, in an empty directory: nothing defined elsewhere."""
    source = _blocks("python")[index]
    script = tmp_path / "snippet.py"
    script.write_text(source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


class _ParseError(Exception):
    pass


def _raise(message: str) -> None:
    raise _ParseError(message)


@pytest.mark.parametrize(("command", "complete"), _commands())
def test_each_shown_command_parses(
    command: str, complete: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = shlex.split(command, comments=True)[1:]
    if tokens[-1:] == ["..."] and "--" not in tokens:
        tokens = tokens[:-1]
    monkeypatch.setattr("argparse.ArgumentParser.error", lambda self, message: _raise(message))
    try:
        args = build_parser().parse_args(tokens)
    except _ParseError as exc:  # an unknown command or flag, or a bad value
        if not complete and str(exc).startswith("the following arguments are required"):
            return  # prose naming a command, not an invocation; its flags all parsed
        pytest.fail(f"{command!r} does not parse: {exc}")
    assert getattr(args, "handler", None) is not None, command
    for token in tokens:  # files the commands name exist in the repository
        if token.startswith(("examples/", "scripts/")):
            assert (ROOT / token).exists(), token
