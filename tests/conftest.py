"""Shared fixtures: tiny source models of every family, synthetic corpora on disk."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy
import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from tiny import build_source_model, source_sentences, target_sentences  # noqa: E402

FAMILIES = ("bert", "gpt2", "xlmr", "llama")


@pytest.fixture(autouse=True)
def same_random_state_for_every_test():
    """Each test starts from the same global random state, whatever ran before it.

    Tests that draw on purpose seed their own generators; this covers the draws nobody sees (a
    classification head initialised by ``from_pretrained(num_labels=...)``, dropout masks), so a
    test's outcome never depends on which tests ran first or on luck.
    """
    random.seed(0)
    numpy.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """family -> directory holding a tiny model + its source-language tokenizer."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_source_model(family, root / family) for family in FAMILIES}


def _lines_file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def source_corpus(tmp_path_factory) -> Path:
    return _lines_file(tmp_path_factory.mktemp("corpus") / "source.txt", source_sentences(600, seed=10))


@pytest.fixture(scope="session")
def target_corpus(tmp_path_factory) -> Path:
    return _lines_file(tmp_path_factory.mktemp("corpus") / "target.txt", target_sentences(600, seed=11))


@pytest.fixture(scope="session")
def target_tokenizers(tmp_path_factory) -> dict[str, Path]:
    """family -> directory with a target-language tokenizer of the same family (replacement mode)."""
    from tiny import TOKENIZER_BUILDERS

    root = tmp_path_factory.mktemp("target_tokenizers")
    texts = target_sentences(400, seed=1)
    for family in FAMILIES:
        TOKENIZER_BUILDERS[family](root / family, texts)
    return {family: root / family for family in FAMILIES}


@pytest.fixture(scope="session")
def extended_tokenizers(tmp_path_factory, tiny_models, target_corpus) -> dict[str, Path]:
    """family -> the source tokenizer extended with target pieces (``langgraft tokenizer extend``)."""
    from langgraft.vocab.tokenizers import extend_tokenizer

    root = tmp_path_factory.mktemp("extended_tokenizers")
    for family in FAMILIES:
        extend_tokenizer(tiny_models[family], [target_corpus], root / family, new_tokens=40)
    return {family: root / family for family in FAMILIES}


@pytest.fixture(scope="session")
def parallel_corpus(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(source file, target file, word mapping): line-aligned synthetic parallel text.

    The target side is the source side translated word for word by a fixed one-to-one mapping
    into invented target-language words, so the true bilingual dictionary is known.
    """
    import random
    import re

    from tiny import SOURCE_WORDS, TARGET_AFFIXES, TARGET_STEMS

    rng = random.Random(7)
    mapping: dict[str, str] = {}
    for word in SOURCE_WORDS:
        candidate = ""
        while not candidate or candidate in mapping.values():
            candidate = "".join(rng.choice(TARGET_STEMS) for _ in range(2)) + rng.choice(TARGET_AFFIXES)
        mapping[word] = candidate
    root = tmp_path_factory.mktemp("parallel")
    source = source_sentences(500, seed=21)
    target = [" ".join(mapping.get(w, w) for w in re.findall(r"\w+|[^\w\s]", s.lower())) for s in source]
    (root / "source.txt").write_text("\n".join(source) + "\n", encoding="utf-8")
    (root / "target.txt").write_text("\n".join(target) + "\n", encoding="utf-8")
    return root / "source.txt", root / "target.txt", mapping


@pytest.fixture(scope="session")
def word_resources(tmp_path_factory, parallel_corpus):
    """Word-level fastText for both sides of the parallel corpus (small) + the true dictionary (as TSV)."""
    from langgraft.vocab.init import TransferResources
    from langgraft.vocab.resources import fasttext

    root = tmp_path_factory.mktemp("word_resources")
    src, tgt, mapping = parallel_corpus
    for side, path in (("src", src), ("tgt", tgt)):
        fasttext.train_fasttext([path], root / f"{side}.bin", dim=12, epochs=3, bucket=20_000)
    (root / "dict.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in mapping.items()), encoding="utf-8")
    return TransferResources(source_embeddings=str(root / "src.bin"), target_embeddings=str(root / "tgt.bin"),
                             dictionary=str(root / "dict.tsv"))


@pytest.fixture(scope="session")
def target_eval_corpus(tmp_path_factory) -> Path:
    """Held-out target-language text (20 sentences) for evaluation during training."""
    return _lines_file(tmp_path_factory.mktemp("eval") / "dev.txt", target_sentences(20, seed=99))


@pytest.fixture(scope="session")
def bert_with_target_words(tiny_models, tmp_path_factory) -> Path:
    """The tiny bert with three target-language words added to its tokenizer and embedding table."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path_factory.mktemp("transferred")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    tokenizer.add_tokens(["ndaku", "mulira", "chizani"])
    model = AutoModelForMaskedLM.from_pretrained(tiny_models["bert"])
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
