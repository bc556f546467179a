"""The one exception type the CLI turns into a single clear line and exit status 2."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: say what is wrong, where, and how to fix it, in one line.

    Raised anywhere in langgraft (API or CLI). The CLI prints ``langgraft: error: <message>``
    and exits with status 2; nothing is half-written because outputs go through
    :mod:`langgraft.atomic`.
    """
