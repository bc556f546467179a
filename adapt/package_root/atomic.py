"""Write outputs to a temporary sibling path and rename, so a crash never leaves half a file."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from langgraft.errors import UserError


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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; on success it replaces ``path`` in one rename.

    With ``overwrite=False`` an existing ``path`` is a :class:`UserError` (checked before any work).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"output {path} already exists; choose another --out or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    _chmod_like_umask(tmp, 0o777)
    try:
        yield tmp
        match_umask(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
