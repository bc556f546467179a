"""Align two tokenizations of the same text where both end a token at the same character.

Fast tokenizers report each token's character span in the original text (after their own
normalization, mapped back), whatever marks word boundaries: byte-level BPE's ``Ġ`` (the span may
include the space), WordPiece's ``##`` and SentencePiece's ``▁``. A character offset where both
tokenizations end a token is one where both models have read exactly the same text: a causal
model's state there summarises the same prefix, a bidirectional one's the same word boundary. Where
several tokens end at the same character (byte-fallback pieces of one character, a lone ``▁``), the
last one counts: only it has read the whole character. Special tokens and empty spans never align.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from langgraft.errors import UserError


@dataclass(frozen=True)
class Encoded:
    """One text under one tokenizer: ids (specials included, as the model reads them) and each token's end."""

    input_ids: list[int]
    ends: list[int]  # character offset where each token ends; -1 for specials and empty spans
    unknown: int  # tokens that are the tokenizer's unknown token


def require_offsets(tokenizer: Any, role: str, where: str) -> None:
    """Alignment needs character offsets, which only fast (Rust) tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"the {role} tokenizer of {where} is a slow (Python) tokenizer without character offsets; "
                        "save it as a fast tokenizer (tokenizer.json) to distill with it")


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[Encoded]:
    """Tokenize ``texts`` with special tokens, cut at ``max_length``; each token's end offset."""
    batch = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length,
                      return_offsets_mapping=True, return_special_tokens_mask=True)
    unk = tokenizer.unk_token_id
    out = []
    for ids, offsets, special in zip(batch["input_ids"], batch["offset_mapping"], batch["special_tokens_mask"]):
        ends = [end if not s and end > start else -1 for (start, end), s in zip(offsets, special)]
        out.append(Encoded(list(ids), ends, sum(1 for i in ids if unk is not None and i == unk)))
    return out


def last_token_at(ends: Sequence[int]) -> dict[int, int]:
    """character offset -> position of the last token ending there."""
    return {end: position for position, end in enumerate(ends) if end > 0}


def aligned_positions(teacher: Encoded, student: Encoded) -> tuple[list[int], list[int]]:
    """(teacher positions, student positions) of the tokens that end at the same character, in text order.

    An end beyond what the other side kept after truncation is dropped (it was not read there).
    """
    teacher_at, student_at = last_token_at(teacher.ends), last_token_at(student.ends)
    shared = sorted(teacher_at.keys() & student_at.keys())
    return [teacher_at[e] for e in shared], [student_at[e] for e in shared]
