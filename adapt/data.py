"""Streaming LM training data: documents -> token ids -> packed blocks -> batches.

Corpora are read lazily (:func:`langgraft.corpora.read_documents`), tokenized a chunk of
documents at a time and concatenated into blocks of exactly ``block_size`` tokens, so memory
does not grow with the corpus and no block ever contains padding.

- MLM: each document is framed like the tokenizer frames a sentence (``[CLS] ... [SEP]``) and
  blocks attend across document boundaries (RoBERTa "full sentences"). Masks are drawn per
  batch (dynamic masking) from a generator seeded by the run seed and the block index, so a
  resumed or distributed run masks exactly like an uninterrupted one.
- CLM: each document is ``BOS text EOS`` (EOS only when it differs from BOS). The collator
  passes ``position_ids`` that restart at every document and no ``attention_mask``; transformers
  then builds a block-diagonal causal mask (packed-sequence detection), so attention never
  crosses documents. The first token of every document is never a target.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from langgraft.adapt.lm_rows import LM_ROWS_KEY
from langgraft.errors import UserError

DOCUMENTS_PER_TOKENIZER_CALL = 256


def document_frame(tokenizer: Any, objective: str) -> tuple[list[int], list[int]]:
    """Ids put before and after every document's tokens."""
    from langgraft.eval.bpc import special_token_frame

    if objective == "mlm":
        return special_token_frame(tokenizer)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    end = tokenizer.eos_token_id if tokenizer.eos_token_id not in (None, start) else None
    return ([start] if start is not None else []), ([end] if end is not None else [])


def document_ids(tokenizer: Any, documents: Iterable[str], objective: str) -> Iterator[list[int]]:
    """Framed token ids of each document, tokenizing ``DOCUMENTS_PER_TOKENIZER_CALL`` at a time."""
    prefix, suffix = document_frame(tokenizer, objective)
    chunk: list[str] = []
    for document in documents:
        chunk.append(document)
        if len(chunk) == DOCUMENTS_PER_TOKENIZER_CALL:
            yield from (prefix + ids + suffix for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"])
            chunk = []
    if chunk:
        yield from (prefix + ids + suffix for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"])


def pack(documents: Iterable[list[int]], block_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Concatenate documents and cut full blocks: ``(input_ids, document_starts)`` int64/bool arrays.

    ``document_starts[i]`` is True where a document (or the part of one that spills over from the
    previous block) begins; the tail shorter than a block is dropped, never padded.
    """
    ids: list[int] = []
    starts: list[bool] = []
    for document in documents:
        if not document:
            continue
        ids.extend(document)
        starts.append(True)
        starts.extend([False] * (len(document) - 1))
        while len(ids) >= block_size:
            block_starts = np.array(starts[:block_size], dtype=bool)
            block_starts[0] = True
            yield np.array(ids[:block_size], dtype=np.int64), block_starts
            del ids[:block_size], starts[:block_size]


def corpus_size(path: str | os.PathLike) -> float:
    """Bytes on disk: the size used for temperature sampling (a directory counts its files)."""
    path = Path(path)
    if path.is_dir():
        return float(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()))
    return float(path.stat().st_size) if path.exists() else 0.0


def check_corpus_fits(tokenizer: Any, path: str | os.PathLike, objective: str, block_size: int) -> None:
    """:class:`UserError` unless ``path`` yields at least one full block (stops at the first one)."""
    from langgraft.corpora import read_documents

    tokens = 0
    for document in document_ids(tokenizer, read_documents(path), objective):
        tokens += len(document)
        if tokens >= block_size:
            return
    raise UserError(f"corpus {path} has only {tokens} tokens, fewer than one sequence of {block_size}; "
                    "give more text or lower --max-seq-length")


class _Mixture:
    """Re-iterable, endless document stream mixing corpora with temperature ``alpha``."""

    def __init__(self, corpora: Sequence[Path], alpha: float, seed: int):
        self.corpora, self.alpha, self.seed = list(corpora), alpha, seed

    def __iter__(self) -> Iterator[str]:
        from langgraft.corpora.mix import CorpusStream, mix_streams

        streams = {str(path): CorpusStream(path) for path in self.corpora}
        sizes = {str(path): corpus_size(path) for path in self.corpora}
        return (doc for _, doc in mix_streams(streams, self.alpha, self.seed, sizes, num_samples=sys.maxsize))


class PackedLMStream(torch.utils.data.IterableDataset):
    """Endless packed blocks from target corpora (mixed with temperature) plus optional replay.

    Deterministic for a given seed: block ``i`` is always the same, which is what makes resume
    and multi-process runs reproduce a single uninterrupted run. ``start_block`` skips the
    blocks an earlier stage consumed. Yields ``{"input_ids", "document_starts", "block_index"}``.
    """

    def __init__(self, tokenizer: Any, corpora: Sequence[str | os.PathLike], objective: str, block_size: int, *,
                 seed: int = 0, alpha: float = 0.3, replay_corpus: str | os.PathLike | None = None,
                 replay_ratio: float = 0.0, start_block: int = 0):
        if not 0.0 <= replay_ratio < 1.0:
            raise UserError(f"--replay-ratio {replay_ratio} must be in [0, 1)")
        if replay_ratio > 0 and replay_corpus is None:
            raise UserError("--replay-ratio needs --replay-corpus (source-language text)")
        self.tokenizer, self.objective, self.block_size = tokenizer, objective, block_size
        self.corpora = [Path(c) for c in corpora]
        self.seed, self.alpha, self.start_block = seed, alpha, start_block
        self.replay_corpus = Path(replay_corpus) if replay_corpus is not None and replay_ratio > 0 else None
        self.replay_ratio = replay_ratio

    def documents(self) -> Iterator[str]:
        from langgraft.corpora.mix import mix_streams

        target = _Mixture(self.corpora, self.alpha, self.seed)
        if self.replay_corpus is None:
            return iter(target)
        streams = {"target": target, "replay": _Mixture([self.replay_corpus], 1.0, self.seed + 1)}
        shares = {"target": 1.0 - self.replay_ratio, "replay": self.replay_ratio}
        return (doc for _, doc in mix_streams(streams, 1.0, self.seed + 2, shares, num_samples=sys.maxsize))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        blocks = pack(document_ids(self.tokenizer, self.documents(), self.objective), self.block_size)
        for index, (input_ids, starts) in enumerate(blocks):
            if index >= self.start_block:
                yield {"input_ids": input_ids, "document_starts": starts, "block_index": index}


def position_ids_from_starts(starts: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 wherever ``starts`` is True (vectorised)."""
    index = torch.arange(starts.shape[-1]).expand_as(starts)
    last_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=-1).values
    return index - last_start


@dataclass
class PackedLMCollator:
    """Stack packed blocks into a batch with labels and the ``lm_rows`` mask for the loss.

    MLM: BERT-style dynamic masking (``mlm_probability`` of the non-special tokens; 80% mask
    token, 10% random token, 10% unchanged). CLM: labels are the inputs (shifted by the loss)
    with document starts excluded; ``position_ids`` restart per document when the model takes them.
    """

    tokenizer: Any
    objective: str
    mlm_probability: float = 0.15
    seed: int = 0
    position_ids: bool = True

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids = torch.as_tensor(np.stack([e["input_ids"] for e in examples]))
        if self.objective == "mlm":
            generator = torch.Generator().manual_seed((self.seed * 0x9E3779B1 + int(examples[0]["block_index"])) % 2**63)
            input_ids, labels = self._mask(input_ids, generator)
            return {"input_ids": input_ids, "labels": labels, LM_ROWS_KEY: labels != -100}
        starts = torch.as_tensor(np.stack([e["document_starts"] for e in examples]))
        labels = input_ids.masked_fill(starts, -100)
        rows = torch.zeros_like(starts)
        rows[:, :-1] = labels[:, 1:] != -100
        batch = {"input_ids": input_ids, "labels": labels, LM_ROWS_KEY: rows}
        if self.position_ids:
            batch["position_ids"] = position_ids_from_starts(starts)
        return batch

    def _mask(self, input_ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        special = torch.isin(input_ids, torch.tensor(self.tokenizer.all_special_ids))
        chosen = (torch.rand(input_ids.shape, generator=generator) < self.mlm_probability) & ~special
        labels = input_ids.masked_fill(~chosen, -100)
        draw = torch.rand(input_ids.shape, generator=generator)
        random_ids = torch.randint(len(self.tokenizer), input_ids.shape, generator=generator)
        masked = input_ids.masked_fill(chosen & (draw < 0.8), self.tokenizer.mask_token_id)
        masked = torch.where(chosen & (draw >= 0.8) & (draw < 0.9), random_ids, masked)
        return masked, labels
