"""Shared fixtures: tiny source models of every family, synthetic corpora on disk."""
from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import numpy
import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # benchmarks load from the (fixture) cache only
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from tiny import build_source_model, source_sentences, target_sentences, write_labelled_tsv  # noqa: E402

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


KEYWORDS = {"lord", "god", "king", "spirit"}


@pytest.fixture(scope="session")
def labelled(tmp_path_factory) -> dict[str, Path]:
    """Sequence labels (mentions a keyword or not) and IOB word tags (keyword or not)."""
    root = tmp_path_factory.mktemp("labelled")
    sentences = source_sentences(64, seed=5)
    seq = root / "train.tsv"
    seq.write_text("text\tlabel\n" + "".join(
        f"{s}\t{'holy' if KEYWORDS & set(s.lower().rstrip('.').split()) else 'plain'}\n" for s in sentences))
    iob = root / "train.iob"
    iob.write_text("\n".join(
        "".join(f"{w} {'B-K' if w.lower().rstrip('.') in KEYWORDS else 'O'}\n" for w in s.split()) for s in sentences))
    return {"seq": seq, "iob": iob}


@pytest.fixture(scope="session")
def trained_modules(tiny_models, labelled, target_corpus, tmp_path_factory) -> dict[str, Path]:
    """``<kind>-lang`` / ``<kind>-task`` for lora, sft and madx: a bert language module (MLM on the
    target corpus) and a task module (sequence labels) stacked on it, trained once per session."""
    from langgraft.adapt.pretrain.language_modules import train_language_module
    from langgraft.adapters import TrainOptions, train_task_module

    options = TrainOptions(max_steps=3, per_device_train_batch_size=8, max_seq_length=32, save_steps=1000,
                           learning_rate=5e-3, logging_steps=1000)
    root = tmp_path_factory.mktemp("trained_modules")
    built = {}
    for kind, config in (("lora", {"rank": 4}), ("sft", {"k": 2000}), ("madx", {})):
        built[f"{kind}-lang"] = train_language_module(kind, tiny_models["bert"], [target_corpus], language="tg",
                                                      out=root / f"{kind}-lang", config=config, options=options)
        built[f"{kind}-task"] = train_task_module(kind, tiny_models["bert"], labelled["seq"], task="seq-cls",
                                                  out=root / f"{kind}-task", config=config, options=options,
                                                  language_module=built[f"{kind}-lang"])
    return built


TASK_LABELS = ("holy", "plain")  # lora_parts' task module labels


@pytest.fixture(scope="session")
def lora_parts(tiny_models, target_corpus, tmp_path_factory) -> dict[str, Path]:
    """Two bert LoRA language modules (different seeds and ranks) and a LoRA task module with its head."""
    from langgraft.adapt.pretrain.language_modules import train_language_module
    from langgraft.adapters import TrainOptions, train_task_module

    options = TrainOptions(max_steps=2, per_device_train_batch_size=8, max_seq_length=32, save_steps=1000,
                           learning_rate=5e-3, logging_steps=1000)
    root = tmp_path_factory.mktemp("lora_parts")
    train = root / "train.tsv"
    write_labelled_tsv(train, 32, labels=TASK_LABELS)
    parts = {}
    for name, rank, seed in (("lang-a", 4, 0), ("lang-b", 2, 1)):
        parts[name] = train_language_module("lora", tiny_models["bert"], [target_corpus], language=name[-1],
                                            out=root / name, config={"rank": rank},
                                            options=dataclasses.replace(options, seed=seed))
    parts["task"] = train_task_module("lora", tiny_models["bert"], train, task="seq-cls", out=root / "task",
                                      config={"rank": 4}, options=options, labels=list(TASK_LABELS))
    return parts
