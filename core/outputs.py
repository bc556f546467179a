"""The one output guard every command uses: never destroy data, and fail before the work, not after.

:func:`check_output` runs when a command starts (before any model is loaded):

- an existing ``--out`` that holds anything (a non-empty folder, a file) is refused unless the user
  passed ``--overwrite``; an empty folder is used as it is;
- ``--out`` that is an input, lies inside an input folder, or holds an input (or the current
  folder) is refused even with ``--overwrite``: replacing it would destroy what the command reads;
- ``--out`` must be creatable and writable: its nearest existing ancestor is a writable folder.

:func:`disk_full` recognises "no space left" from any writer (``OSError`` with ``ENOSPC``, or
safetensors' own error, which is not an ``OSError``) so that callers can turn it into one line.
"""
from __future__ import annotations

import argparse
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from langgraft.errors import UserError

OVERWRITE_HELP = ("replace an existing --out (never allowed when --out is, contains or lies inside an input, "
                  "or is the current folder)")


def add_output_arguments(parser: argparse.ArgumentParser, help: str, *, required: bool = True,
                         default: str | None = None) -> None:
    """``--out`` and ``--overwrite``, the same for every command."""
    parser.add_argument("--out", required=required, default=default, help=help)
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _real(path: Path) -> Path:
    """``path`` with symbolic links resolved (so a link to an input counts as that input)."""
    return Path(os.path.realpath(path))


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _has_content(path: Path) -> bool:
    if path.is_dir():
        return next(path.iterdir(), None) is not None
    return path.exists() or path.is_symlink()


def check_output(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (), overwrite: bool = False,
                 flag: str = "--out", file: bool = False, replace_hint: str = "pass --overwrite to replace it") -> Path:
    """Refuse an output that would destroy data or cannot be written; return its absolute path.

    ``inputs``: every file or folder the command reads (hub names and ``None`` are skipped: only
    paths that exist here can be destroyed). ``file``: the output is one file, so a folder there is
    refused even with ``overwrite``. ``flag`` and ``replace_hint`` word the message for where the
    output was named (``publish.out`` in a pipeline file, say).
    """
    target = _resolved(out)
    real_target = _real(target)
    if _is_within(_real(Path.cwd()), real_target):
        raise UserError(f"{flag} {out}: that is the current folder (or holds it); give a new folder name")
    for given in inputs:
        if given is None or not Path(given).expanduser().exists():
            continue
        source = _real(_resolved(given))
        if _is_within(real_target, source) or _is_within(source, real_target):
            where = "is" if real_target == source else ("lies inside" if _is_within(real_target, source) else "holds")
            raise UserError(f"{flag} {out} {where} the input {given}; writing there would destroy it, so it is refused "
                            "even with --overwrite; choose another folder")
    if file and target.is_dir():
        raise UserError(f"{flag} {out} is a folder; give the path of a file to write")
    if target.is_dir() and not target.is_symlink():
        if _has_content(target) and not overwrite:
            raise UserError(f"{flag} {out} already exists and is not empty; choose another {flag} or {replace_hint}")
    elif _has_content(target) and not overwrite:
        raise UserError(f"{flag} {out} already exists (a file); choose another {flag} or {replace_hint}")
    _check_writable(target, out, flag)
    return target


def clear_output(target: str | os.PathLike) -> None:
    """Remove an output the user asked to replace (``--overwrite``) for commands that write into it as
    they go (training runs), after :func:`check_output` has passed and every other check with it."""
    target = Path(target)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def _check_writable(target: Path, given: str | os.PathLike, flag: str) -> None:
    ancestor = target if target.exists() and target.is_dir() else target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{flag} {given}: {ancestor} is a file, so no folder can be made inside it; choose another "
                        f"{flag}")
    try:  # permissions alone can say yes where nothing can be made (/proc, read-only mounts, root's access())
        os.rmdir(tempfile.mkdtemp(prefix=".langgraft-probe-", dir=ancestor))
    except OSError:
        raise UserError(f"{flag} {given}: nothing can be created in {ancestor}; choose a folder you can write to") \
            from None


FULL_BELOW_BYTES = 1 << 20  # a write that failed on a filesystem with less free space than this failed for want of it


def disk_full(exc: BaseException, where: str | os.PathLike | None = None) -> bool:
    """True when ``exc`` (from any writer: Python, safetensors, tokenizers, torch) means the disk is full.

    Some writers say so (``ENOSPC``, "No space left on device"); torch's zip writer only reports a
    stream error ("unexpected pos"), so with ``where`` (the folder written to) a failure on a
    filesystem left with less than :data:`FULL_BELOW_BYTES` free counts as full too.
    """
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        text = str(cause)
        if "No space left on device" in text or "StorageFull" in text or "os error 28" in text or "code: 28" in text:
            return True
    if where is None:
        return False
    folder = Path(where)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW_BYTES
    except OSError:
        return False


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen
