"""The commands in the README and docs/ run as written: every flag they give exists.

A renamed option (``--batch-size`` → ``--per-device-train-batch-size``) breaks a documented
command without breaking any test of the code; these checks read every ``langgraft ...`` and
``python benchmarks/X.py ...`` command in a code block or inline code span of README.md and
docs/*.md and look each ``--flag`` up in the parser that would read it.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from langgraft.adapt.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FLAG = re.compile(r"(?<![\w=-])--[a-z][\w-]*")  # not a value given with "=" (--init-option=--option)
QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")  # a quoted value: its flags belong to another command


def flags(words: list[str]) -> set[str]:
    """The options given in ``words``, leaving out those inside quoted values (``--distill "x:--lr 1"``)."""
    return set(FLAG.findall(QUOTED.sub("", " ".join(words))))


def command_lines(text: str) -> list[str]:
    """Shell lines of the fenced code blocks (continuations joined, comments cut) and the inline code spans."""
    lines = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(re.sub(r"(^|\s)#.*", "", line))
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", text)]
    return [part for line in lines for part in re.split(r"&&|;|\|\|", line)]


def documented(pattern: str) -> list[tuple[str, str]]:
    """(doc file, what follows ``pattern`` up to a bare ``--``) for each command ``pattern`` starts in the docs."""
    found = []
    for doc in DOCS:
        for line in command_lines(doc.read_text(encoding="utf-8")):
            for match in re.finditer(pattern + r"(.*)", line):
                found.append((doc.name, match.group(1).split(" -- ")[0]))
    return found


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def subcommand(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser that reads ``words``' subcommands, and the words left after them."""
    while words:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        if words[0] not in choices:
            break
        parser, words = choices[words[0]], words[1:]
    return parser, words


LANGGRAFT = documented(r"(?:^|[\s(])langgraft(?=\s)")
PARSER = build_parser()  # read-only here: one for every case


def test_the_docs_hold_langgraft_commands():
    assert len(LANGGRAFT) > 50


@pytest.mark.parametrize("doc, command", LANGGRAFT)
def test_every_flag_of_a_documented_langgraft_command_exists(doc, command):
    parser, rest = subcommand(PARSER, command.split())
    if parser.prog == "langgraft" and not (rest and rest[0].startswith("--")):
        return  # prose ("langgraft writes ..."), not a command
    unknown = sorted(flags(rest) - options_of(parser))
    assert not unknown, f"{doc}: `{parser.prog}` has no {', '.join(unknown)} (in `langgraft{command}`)"


BENCHMARKS = documented(r"(?<![\w/])benchmarks/(?=\w+\.py)")  # not eval/benchmarks/


@pytest.mark.slow
def test_every_flag_of_a_documented_benchmark_command_exists():
    helps: dict[tuple[str, ...], str] = {}
    wrong = []
    for doc, command in BENCHMARKS:
        script, *words = command.split()
        if not (REPO / "benchmarks" / script).is_file():
            wrong.append(f"{doc}: no benchmarks/{script}")
            continue
        if (script,) not in helps:  # the script's own --help: its parser lives in its main()
            helps[(script,)] = help_text(script)
        sub = words[:1] if words and re.search(r"\{[\w,]*\b%s\b" % re.escape(words[0]), helps[(script,)]) else []
        key = (script, *sub)
        if key not in helps:
            helps[key] = help_text(*key)
        unknown = sorted(flags(words[len(sub):]) - set(FLAG.findall(helps[key])) - {"--help"})
        if unknown:
            wrong.append(f"{doc}: benchmarks/{' '.join(key)} has no {', '.join(unknown)}")
    assert BENCHMARKS and not wrong, "\n".join(wrong)


def help_text(script: str, *sub: str) -> str:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *sub, "--help"],
                          capture_output=True, text=True, cwd=REPO).stdout
