"""A full disk ends a command in one line, exit status 2, with nothing half-written left on it.

The disk is a small tmpfs mounted for the test; where mounting is not allowed (not root, or no
mount namespace) the tests skip and say so.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from langgraft.adapt.cli import main
from langgraft.training import SEAL_FILE


@pytest.fixture
def small_disk(request, tmp_path) -> Path:
    """A tmpfs of ``request.param`` KiB (default 64) at ``tmp_path/disk``."""
    size = getattr(request, "param", 64)
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)  # a failed writer may still hold a file there


def run_disk_full(argv: list, capsys) -> str:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.rstrip("\n").split("\n")[-1].split("\r")[-1]  # training prints progress bars before it
    assert err.count("langgraft: error:") == 1 and last.startswith("langgraft: error:"), err
    assert re.search(r"disk full", last, re.I) and "Traceback" not in err, err
    return last


def test_corpus_prepare_on_a_full_disk_leaves_nothing(small_disk, tmp_path, capsys):
    corpus = tmp_path / "big.txt"
    corpus.write_text("".join(f"line number {i} of a corpus larger than the disk\n" for i in range(8000)),
                      encoding="utf-8")
    run_disk_full(["corpus", "prepare", corpus, "--out", small_disk / "prepared"], capsys)
    assert list(small_disk.iterdir()) == []


def test_init_on_a_full_disk_leaves_nothing(small_disk, tiny_models, target_tokenizers, capsys):
    run_disk_full(["init", "--source", tiny_models["bert"], "--tokenizer", target_tokenizers["bert"],
                   "--method", "mean", "--out", small_disk / "init"], capsys)
    assert list(small_disk.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("small_disk", [320], indirect=True)
def test_pretrain_on_a_full_disk_leaves_no_half_written_checkpoint(small_disk, tiny_models, target_corpus, capsys):
    out = small_disk / "run"
    err = run_disk_full(["pretrain", "--model", tiny_models["bert"], "--corpus", target_corpus, "--out", out,
                         "--max-steps", "4", "--save-steps", "1", "--max-seq-length", "32",
                         "--per-device-train-batch-size", "2", "--report-to", "none"], capsys)
    assert "--resume" in err or "resume" in err
    checkpoints = [path for path in out.rglob("checkpoint-*") if path.is_dir()]
    assert all((path / SEAL_FILE).is_file() for path in checkpoints), checkpoints
