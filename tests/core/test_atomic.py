"""Outputs appear whole or not at all, with ordinary permissions."""
import os
import stat

import pytest

from langgraft.atomic import atomic_dir, atomic_file
from langgraft.errors import UserError


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as handle:
            handle.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_file(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"


def test_atomic_dir_leaves_nothing_on_failure_and_honours_umask(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "weights").write_text("partial")
            raise RuntimeError("crash")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("complete")
    assert (out / "weights").read_text() == "complete"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask


def test_atomic_dir_refuses_existing_when_asked(tmp_path):
    out = tmp_path / "published"
    out.mkdir()
    (out / "keep").write_text("the user's file")
    with pytest.raises(UserError, match="already exists"):
        with atomic_dir(out, overwrite=False):
            pass
