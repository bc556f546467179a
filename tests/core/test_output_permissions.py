"""Every file langgraft writes gets the permissions a plain ``open()`` gives under the user's umask.

safetensors writes its files owner-only (``0600``); checkpoints, tokenizers and modules must still
be readable by whoever the user's umask lets read them (a shared group, a web server publishing a
model). The umask here (``027``) differs from the common default, so a pass is not a coincidence.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from langgraft.adapt.cli import main

UMASK = 0o027


@pytest.fixture
def umask_027():
    previous = os.umask(UMASK)
    yield
    os.umask(previous)


def modes_off(root: Path) -> list[str]:
    """Entries under ``root`` whose mode is not what open()/mkdir() would have given."""
    wrong = []
    for path in [root, *root.rglob("*")]:
        expected = (0o777 if path.is_dir() else 0o666) & ~UMASK
        actual = stat.S_IMODE(path.stat().st_mode)
        if actual != expected:
            wrong.append(f"{path.relative_to(root)}: {oct(actual)} (expected {oct(expected)})")
    return wrong


def test_init_tokenizer_and_pretrain_outputs_follow_the_umask(umask_027, tiny_models, target_tokenizers,
                                                             target_corpus, tmp_path):
    bert = str(tiny_models["bert"])
    assert main(["tokenizer", "train", "--source", bert, "--corpus", str(target_corpus), "--vocab-size", "300",
                 "--out", str(tmp_path / "tok")]) == 0
    assert main(["init", "--source", bert, "--tokenizer", str(target_tokenizers["bert"]), "--method", "random",
                 "--out", str(tmp_path / "init")]) == 0
    assert main(["pretrain", "--model", str(tmp_path / "init"), "--corpus", str(target_corpus), "--max-steps", "2",
                 "--save-steps", "1", "--max-seq-length", "32", "--per-device-train-batch-size", "2",
                 "--report-to", "none", "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "init" / "model.safetensors").is_file() and (tmp_path / "run" / "model.safetensors").is_file()
    assert any((tmp_path / "run" / "checkpoints").rglob("*.safetensors"))
    for name in ("tok", "init", "run"):
        assert modes_off(tmp_path / name) == [], name


@pytest.mark.slow
def test_module_outputs_follow_the_umask(umask_027, tiny_models, target_corpus, tmp_path):
    for kind, options in (("lora", []), ("sft", ["--k", "1000"]), ("madx", [])):
        out = tmp_path / kind
        assert main(["module", "train-language", "--kind", kind, *options, "--model", str(tiny_models["bert"]),
                     "--corpus", str(target_corpus), "--language", "tg", "--max-steps", "2",
                     "--per-device-train-batch-size", "2", "--max-length", "32", "--out", str(out)]) == 0
        assert any(out.rglob("*.safetensors")) and modes_off(out) == [], kind
