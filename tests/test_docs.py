"""Docs that cannot drift (datasette's test_docs): every command and option the parser has is
documented in README.md, in the part of the README about that command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from videolens.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
# A command's synopsis opens its part of a section shared by several commands:
# "**`videolens index PATH...", or "videolens classify VIDEO..." at the start of a code line.
SYNOPSIS = re.compile(r"^(?:\*\*`)?videolens ([a-z][a-z-]*)\b")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """``## `` sections of the README: (heading, body lines), code blocks included."""
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line, []))
        elif sections:
            sections[-1][1].append(line)
    return sections


def command_docs(text: str, command: str) -> str:
    """The README text that documents ``command``:

    - a section whose heading names only ``videolens COMMAND``, whole;
    - in a section whose heading names several commands, the part from the command's synopsis
      to the next command's synopsis;
    - a section whose heading names no command (options shared by several commands, such as
      ``--engine``), whole, when its text names ``videolens COMMAND``.
    """
    parts = []
    for heading, lines in _sections(text):
        named = re.findall(r"`videolens ([a-z][a-z-]*)", heading)
        if named == [command]:
            parts.append("\n".join(lines))
        elif command in named:
            current: str | None = None
            for line in lines:
                match = SYNOPSIS.match(line)
                if match and match.group(1) in named:
                    current = match.group(1)
                if current == command:
                    parts.append(line)
        elif not named and f"videolens {command}" in "\n".join(lines):
            parts.append("\n".join(lines))
    return "\n".join(parts)


def _option_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings
            if flag.startswith("--") and flag not in ("--help", "--version")]


PARSER = build_parser()
COMMANDS = _subcommands(PARSER)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_and_option_is_documented_with_its_command(command):
    docs = command_docs(README.read_text(encoding="utf-8"), command)
    assert docs, (f"README.md has no section for `videolens {command}`: add a `## ` heading "
                  f"naming `videolens {command}`, or its **`videolens {command} ...`** synopsis "
                  "inside a section whose heading names it")
    sub = COMMANDS[command]
    missing = [flag for flag in _option_flags(sub) if not re.search(
        rf"(?<![\w-]){re.escape(flag)}(?![\w-])", docs)]
    nested = _subcommands(sub)
    missing += [f"videolens {command} {name}" for name in nested
                if f"videolens {command} {name}" not in docs and f"`{name}`" not in docs]
    for name, subsub in nested.items():
        missing += [f"{name} {flag}" for flag in _option_flags(subsub) if flag not in docs]
    assert not missing, f"`videolens {command}` options not documented in its README part: " \
                        f"{', '.join(missing)}"


def test_the_rule_finds_a_commands_own_part_only():
    text = "\n".join([
        "## A library: `videolens index`, `videolens search`",
        "**`videolens index PATH [--fps F]`** walks files.",
        "more about index, --prune.",
        "**`videolens search TEXT [--top K]`** ranks moments.",
        "## `videolens probe`",
        "`videolens probe VIDEO [--json]`",
        "## Past one machine",
        "`videolens index` runs on Ray with --engine ray.",
        "## Python API",
        "nothing about commands, --secret",
    ])
    assert "--prune" in command_docs(text, "index") and "--top" not in command_docs(text, "index")
    assert "--engine" in command_docs(text, "index")
    assert "--fps" not in command_docs(text, "search") and "--top" in command_docs(text, "search")
    assert "--engine" not in command_docs(text, "search")
    assert "--json" in command_docs(text, "probe")
    assert "--secret" not in command_docs(text, "index")
    assert command_docs(text, "serve") == ""
