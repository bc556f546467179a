"""Turn :class:`~langgraft.vocab.init.base.TransferResources` into loaded resources.

The methods ask for "source word vectors", "target word vectors", "a dictionary" or "aligned
parallel text"; these functions load what the user gave, or build it from the corpora / parallel
text. Built resources are cached in ``resources.workdir`` (when set) under a name derived from
the inputs and options, so a second ``langgraft init`` with the same inputs reuses them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from langgraft.errors import UserError
from langgraft.vocab.resources.align import align_words, induce_dictionary
from langgraft.vocab.resources.dictionary import read_dictionary, write_dictionary
from langgraft.vocab.resources.fasttext import (FastTextOptions, WordVectors, load_fasttext,
                                                tokenized_lines, train_fasttext_on_lines)
from langgraft.corpora.readers import iter_text
from langgraft.vocab.resources.text import RESOURCE_DECODE_ERRORS, parallel_sentences


def _fingerprint(files: Iterable[str], extra: Any) -> str:
    """Hash of file identities (path, size, mtime) and options: the cache key of a derived resource."""
    parts = []
    for name in files:
        stat = os.stat(name)
        parts.append([str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns])
    payload = json.dumps([parts, extra], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _build_or_load(resources: Any, name: str, build: Callable[[Path], Any], load: Callable[[Path], Any]) -> Any:
    """Load ``workdir/name`` when cached, else build it there; without a workdir build it in a
    temporary directory that is removed once the result is in memory."""
    if not resources.workdir:
        with tempfile.TemporaryDirectory(prefix="langgraft-resource-") as tmp:
            return build(Path(tmp) / name)
    path = Path(resources.workdir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return load(path) if path.is_file() else build(path)


def word_vectors(resources: Any, side: str, options: FastTextOptions) -> WordVectors:
    """Word-level fastText for ``side`` ("source"/"target"): the given ``.bin`` or one trained
    on that side's corpus (cached in the workdir)."""
    given = getattr(resources, f"{side}_embeddings")
    if given:
        return load_fasttext(given)
    corpus = list(getattr(resources, f"{side}_corpus") or [])
    if not corpus:
        raise UserError(f"need --{side}-embeddings (fastText .bin) or --{side}-corpus (text to train it on)")
    name = f"fasttext-{side}-{_fingerprint(corpus, dataclasses.asdict(options))}.bin"
    return _build_or_load(resources, name,
                          lambda out: train_fasttext_on_lines(iter_text(corpus, RESOURCE_DECODE_ERRORS), out, options, {"corpus": corpus}),
                          load_fasttext)


def token_vectors(resources: Any, tokenizer: Any, options: FastTextOptions) -> WordVectors:
    """Token-level fastText (FOCUS): trained on the target corpus tokenized by ``tokenizer``;
    fastText's "words" are the tokenizer's own token strings (cached in the workdir)."""
    corpus = list(resources.target_corpus or [])
    if not corpus:
        raise UserError("need --target-corpus: FOCUS trains token-level fastText on target-language text")
    vocab_hash = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:16]
    key = _fingerprint(corpus, [dataclasses.asdict(options), vocab_hash])
    options = dataclasses.replace(options, lowercase=False, split=False)
    description = {"corpus": corpus, "tokenized_with": getattr(tokenizer, "name_or_path", "")}
    return _build_or_load(
        resources, f"fasttext-tokens-{key}.bin",
        lambda out: train_fasttext_on_lines(tokenized_lines(iter_text(corpus, RESOURCE_DECODE_ERRORS), tokenizer), out, options, description),
        lambda path: load_fasttext(path, lowercase=False))


def parallel_text(resources: Any) -> tuple[list[str], list[str]]:
    if not resources.parallel:
        raise UserError("need --parallel SOURCE_FILE TARGET_FILE (sentence- or id-aligned text)")
    return parallel_sentences(*resources.parallel)


def dictionary(resources: Any, *, min_count: int = 3, min_probability: float = 0.1) -> list[tuple[str, str]]:
    """The given ``--dictionary``, or one induced from ``--parallel`` with eflomal (cached)."""
    if resources.dictionary:
        return read_dictionary(resources.dictionary)
    if not resources.parallel:
        raise UserError("need --dictionary (source<TAB>target TSV) or --parallel SRC TGT to induce one with eflomal")

    def build(out: Path) -> list[tuple[str, str]]:
        pairs = induce_dictionary(align_words(*parallel_text(resources)), min_count=min_count,
                                  min_probability=min_probability)
        if not pairs:
            raise UserError(f"no dictionary pair could be induced from --parallel {' '.join(resources.parallel)} "
                            f"(min_count={min_count}); give more parallel text or a --dictionary")
        write_dictionary(pairs, out)
        return pairs

    key = _fingerprint(resources.parallel, [min_count, min_probability])
    return _build_or_load(resources, f"dictionary-{key}.tsv", build, lambda path: read_dictionary(path, format="tsv"))
