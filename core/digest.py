"""Content hashes of files and folders: what keys a pipeline stage, and what a manifest records."""
from __future__ import annotations

import hashlib
from pathlib import Path

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_path(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash of a file, or of a folder (relative names + file hashes, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode())
            digest.update(sha256_path(item).encode())
        return digest.hexdigest()
    stat = path.stat()
    known = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if known not in _FILE_HASHES:  # big checkpoints are hashed once per process
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
        _FILE_HASHES[known] = digest.hexdigest()
    return _FILE_HASHES[known]
