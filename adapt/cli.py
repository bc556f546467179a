"""The ``langgraft`` command: one argparse tree, each stage contributing its own sub-commands.

Every stage module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``; it adds its
parsers and sets ``handler`` (a callable taking the parsed namespace and returning an exit code).
Stage modules import torch/transformers inside their handlers only, so ``--help`` is fast.
Any :class:`langgraft.UserError` becomes one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import typing
from typing import Sequence

from langgraft import __version__
from langgraft.errors import UserError

COMMAND_MODULES = (
    "langgraft.corpora.cli",
    "langgraft.vocab.cli",
    "langgraft.vocab.distill.cli",
    "langgraft.vocab.resources.cli",
    "langgraft.adapt.pretrain.cli",
    "langgraft.adapters.cli",
    "langgraft.eval.cli",
    "langgraft.adapt.pipeline.cli",
)


class OneLineErrors(argparse.ArgumentParser):
    """argparse's usage errors as one line on stderr and exit status 2, like every other bad input."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"langgraft: error: {self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="langgraft",
        description="Graft a new language onto a pretrained language model.",
    )
    parser.add_argument("--version", action="version", version=f"langgraft {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _close_progress_bars() -> None:
    """End any tqdm bar a failed stage left open, so the error starts on a line of its own."""
    tqdm_module = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ())):
        bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        _close_progress_bars()
        print(f"langgraft: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("langgraft: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
