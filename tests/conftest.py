"""Shared fixtures: tiny source models of every family, synthetic corpora on disk."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from tiny import build_source_model, source_sentences, target_sentences  # noqa: E402

FAMILIES = ("bert", "gpt2", "xlmr", "llama")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """family -> directory holding a tiny model + its source-language tokenizer."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_source_model(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def source_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "source.txt"
    path.write_text("\n".join(source_sentences(600, seed=10)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def target_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "target.txt"
    path.write_text("\n".join(target_sentences(600, seed=11)) + "\n", encoding="utf-8")
    return path
