"""Placeholder: this stage's sub-commands are being written."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    return None
