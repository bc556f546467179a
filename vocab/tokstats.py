"""How well tokenizers fit a corpus: fertility, split words, unknown tokens, vocabulary overlap.

Counts are per whitespace word of the original text so tokenizers with different
pre-tokenizers compare fairly. Each token is attributed to a word through its character
offsets (one vectorized ``searchsorted`` per batch), and documents stream in batches through
the Rust ``encode_batch``.
"""
from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from langgraft.errors import UserError
from langgraft.vocab.canonical import canonical_tokens, detect_family
from langgraft.vocab.tokenizers import as_tokenizer, iter_batches, plain_backend

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_WORD = re.compile(r"\S+")
COLUMNS = (
    ("tokenizer", "tokenizer", "{}"),
    ("family", "family", "{}"),
    ("vocab_size", "vocab", "{:,}"),
    ("fertility", "fertility (tokens/word)", "{:.3f}"),
    ("split_share", "words split", "{:.1%}"),
    ("unk_rate", "UNK rate", "{:.2%}"),
    ("overlap", "overlap with {reference}", "{:.1%}"),
)


def tokenizer_stats(
    tokenizers: Mapping[str, str | os.PathLike | PreTrainedTokenizerBase],
    corpus_files: Sequence[str | os.PathLike] = (),
    *,
    texts: Iterable[str] | None = None,
    reference: str | None = None,
    fmt: str = "auto",
    on_decode_error: str = "fail",
    reader_options: dict[str, Any] | None = None,
    batch_size: int = 1000,
) -> list[dict[str, Any]]:
    """One row of statistics per named tokenizer on ``corpus_files`` (or in-memory ``texts``).

    ``reference`` names the tokenizer whose vocabulary the overlap is measured against
    (default: the first). Rows: fertility (tokens per whitespace word), split_share (words cut
    into 2+ tokens), unk_rate (share of tokens that are the unknown token), overlap (share of
    non-special vocabulary whose boundary-aware canonical form is in the reference vocabulary).
    """
    if not tokenizers:
        raise UserError("no tokenizer given; pass at least one --tokenizer")
    loaded = {name: as_tokenizer(tok) for name, tok in tokenizers.items()}
    reference = reference or next(iter(loaded))
    if reference not in loaded:
        raise UserError(f"reference tokenizer {reference!r} is not among {', '.join(loaded)}")
    backends = {name: plain_backend(tok) for name, tok in loaded.items()}
    totals = {name: np.zeros(3, dtype=np.int64) for name in loaded}  # tokens, split words, unknown tokens
    words = documents = 0
    batches = _text_batches(texts, batch_size) if texts is not None else iter_batches(
        corpus_files, fmt=fmt, on_decode_error=on_decode_error, batch_size=batch_size, **(reader_options or {}))
    for batch in batches:
        word_ends, char_base = _word_ends(batch)
        words += len(word_ends)
        documents += len(batch)
        for name, backend in backends.items():
            encodings = backend.encode_batch(batch, add_special_tokens=False)
            totals[name] += _count(encodings, word_ends, char_base, loaded[name].unk_token_id)
    if words == 0:
        raise UserError("the corpus contains no words; give a non-empty corpus")
    reference_keys = set(_canonical_keys(loaded[reference]))
    rows = []
    for name, tok in loaded.items():
        tokens, split, unknown = (int(value) for value in totals[name])
        keys = _canonical_keys(tok)
        rows.append({
            "tokenizer": name,
            "family": detect_family(tok).name,
            "vocab_size": len(tok),
            "documents": documents,
            "words": words,
            "tokens": tokens,
            "fertility": tokens / words,
            "split_share": split / words,
            "unk_rate": unknown / tokens if tokens else 0.0,
            "overlap": sum(key in reference_keys for key in keys) / len(keys) if keys else 0.0,
            "reference": reference,
        })
    return rows


def format_stats_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`tokenizer_stats` rows."""
    reference = rows[0]["reference"] if rows else ""
    header = [title.format(reference=reference) for _key, title, _fmt in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _title, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def format_stats_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(rows), indent=2, ensure_ascii=False)


def _canonical_keys(tokenizer: PreTrainedTokenizerBase) -> list[tuple[bytes, bool]]:
    """Boundary-aware keys (bytes, word-initial) of the non-special vocabulary."""
    return [token.key for token in canonical_tokens(tokenizer) if token.key is not None]


def _text_batches(texts: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        if text.strip():
            batch.append(text)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _word_ends(batch: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """End offsets of every whitespace word, in one coordinate system over the joined batch."""
    char_base = np.cumsum([0] + [len(text) + 1 for text in batch[:-1]], dtype=np.int64)
    ends = [np.fromiter((match.end() for match in _WORD.finditer(text)), dtype=np.int64) + base
            for text, base in zip(batch, char_base)]
    return np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64), char_base


def _count(encodings: list[Any], word_ends: np.ndarray, char_base: np.ndarray, unk_id: int | None) -> np.ndarray:
    """(tokens, words with 2+ tokens, unknown tokens) for one batch of encodings."""
    starts = [np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)[:, 0] + base
              for encoding, base in zip(encodings, char_base)]
    ids = np.concatenate([np.asarray(encoding.ids, dtype=np.int64) for encoding in encodings])
    if ids.size == 0:
        return np.zeros(3, dtype=np.int64)
    # a token belongs to the first word ending after its first character (so "▁" before a word joins it)
    owner = np.minimum(np.searchsorted(word_ends, np.concatenate(starts), side="right"), len(word_ends) - 1)
    per_word = np.bincount(owner, minlength=len(word_ends))
    unknown = int((ids == unk_id).sum()) if unk_id is not None else 0
    return np.array([ids.size, int((per_word >= 2).sum()), unknown], dtype=np.int64)
