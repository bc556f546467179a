"""Write outputs to a temporary sibling path and rename, so a crash never leaves half a file."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from langgraft.errors import UserError
from langgraft.outputs import check_output, disk_full


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _chmod_like_umask(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create owner-only entries; give outputs the permissions a plain open() would."""
    os.chmod(path, mode & ~_current_umask())


def match_umask(root: str | os.PathLike) -> None:
    """Give every file and folder under ``root`` what ``open()``/``mkdir()`` give under the user's umask.

    Writers langgraft calls create some files owner-only (safetensors writes ``0600`` through its own
    temporary file), so every output is passed through here before it is renamed into place.
    """
    umask = _current_umask()
    root = Path(root)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; on success fsync and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    _chmod_like_umask(Path(tmp), 0o666)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, Exception) and disk_full(exc):
            raise UserError(f"disk full while writing {path}: free some space and run the command again; "
                            f"{path} was left as it was") from None
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False,
               inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; on success it replaces ``path`` in one rename.

    ``path`` is checked first (:func:`langgraft.outputs.check_output`): an existing, non-empty
    ``path`` is a :class:`UserError` unless ``overwrite``, and a ``path`` that is, holds or lies
    inside one of ``inputs`` always is. A replaced ``path`` (folder or file) is removed only after
    the new one is in place. A full disk is one :class:`UserError` line; nothing is left behind.
    """
    path = check_output(path, inputs=inputs, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    _chmod_like_umask(tmp, 0o777)
    try:
        yield tmp
        match_umask(tmp)
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and disk_full(exc):
            raise UserError(f"disk full while writing {path}: free some space (or choose another --out) and run the "
                            "command again; nothing was written") from None
        raise
