"""Streaming LM training data: documents -> token ids -> packed blocks -> batches.

Corpora are read lazily (:func:`langgraft.corpora.read_documents`), shuffled in bounded memory
(:class:`ShuffledCorpus`: small chunks of each file in a seeded random order per pass, then a
shuffle buffer of documents), tokenized a chunk of documents at a time and concatenated into
blocks of exactly ``block_size`` tokens, so memory does not grow with the corpus and no block
ever contains padding.

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

import functools
import itertools
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from langgraft.corpora.mix import mix_streams
from langgraft.lm import LM_ROWS_KEY, special_token_frame
from langgraft.corpora.readers import LineSpan, iter_text, line_spans, read_documents, splittable
from langgraft.errors import UserError
from langgraft.vocab.resources.text import RESOURCE_DECODE_ERRORS

DOCUMENTS_PER_TOKENIZER_CALL = 256
SHUFFLE_BUFFER = 10_000  # documents held per corpus for shuffling (0: read in file order)
# A corpus file is read in line-aligned chunks in a random order: 16 KiB, or more for files over
# 1 GiB so that there are at most 65536 chunks (their offsets are what is kept in memory).
MIN_CHUNK_BYTES = 16 << 10
MAX_CHUNKS = 1 << 16

Item = TypeVar("Item")


def document_frame(tokenizer: Any, objective: str) -> tuple[list[int], list[int]]:
    """Ids put before and after every document's tokens."""

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
    tokens = 0
    for document in document_ids(tokenizer, read_documents(path), objective):
        tokens += len(document)
        if tokens >= block_size:
            return
    raise UserError(f"corpus {path} has only {tokens} tokens, fewer than one sequence of {block_size}; "
                    "give more text or lower --max-seq-length")


def shuffle_buffer(items: Iterable[Item], size: int, rng: random.Random) -> Iterator[Item]:
    """``items`` in a random order, holding at most ``size`` of them (HF ``datasets``' buffer shuffle).

    The buffer fills with the first ``size`` items; then each new item takes the place of a
    random one, which is yielded; at the end the rest comes out shuffled. The result is a
    permutation of ``items``; an item moves at most about ``size`` places earlier.
    """
    buffer: list[Item] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        slot = rng.randrange(size)
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


@functools.lru_cache(maxsize=16)
def _chunks(path: str, chunk_bytes: int, size: int, mtime_ns: int) -> tuple[LineSpan, ...]:
    """Line-aligned chunks of a file, computed once per file version (size and mtime are the cache key)."""
    return tuple(line_spans(path, chunk_bytes))


class ShuffledCorpus:
    """One corpus as an endless, re-iterable document stream, reshuffled at every pass (epoch).

    Pass ``e`` draws from ``random.Random(f"{seed}:{e}")``: the file's line-aligned chunks
    (:func:`langgraft.corpora.readers.line_spans`; ``chunk_bytes``, default ``MIN_CHUNK_BYTES``
    or size / ``MAX_CHUNKS``) are read in a random order, then go through a
    :func:`shuffle_buffer` of ``buffer_size`` documents. A buffer spanning many small chunks from
    all over the file is what breaks up ordered corpora (books, article ids) far better than a
    buffer alone. Each pass is a permutation of the corpus; memory holds ``buffer_size``
    documents plus the chunk offsets. Files that cannot seek (``.gz``, ``datasets`` folders,
    CoNLL-U, paragraph text) are read in file order through the buffer alone.
    ``buffer_size=0`` reads the file in order. Every ``iter()`` starts again at pass 0, so the
    stream is a function of the seed alone.
    """

    def __init__(self, path: str | os.PathLike, buffer_size: int = SHUFFLE_BUFFER, seed: int | str = 0, *,
                 chunk_bytes: int | None = None):
        if buffer_size < 0:
            raise UserError(f"--shuffle-buffer must be 0 (no shuffling) or positive, got {buffer_size}")
        self.path, self.buffer_size, self.seed, self.chunk_bytes = Path(path), buffer_size, seed, chunk_bytes

    def epoch(self, epoch: int) -> Iterator[str]:
        """The documents of pass ``epoch``, each exactly once."""
        if not self.buffer_size:
            return read_documents(self.path)
        rng = random.Random(f"{self.seed}:{epoch}")
        if splittable(self.path):
            stat = self.path.stat()
            chunk_bytes = self.chunk_bytes or max(MIN_CHUNK_BYTES, -(-stat.st_size // MAX_CHUNKS))
            chunks = _chunks(str(self.path), chunk_bytes, stat.st_size, stat.st_mtime_ns)
            documents = itertools.chain.from_iterable(
                read_documents(self.path, span=chunk) for chunk in rng.sample(chunks, len(chunks)))
        else:
            documents = read_documents(self.path)
        return shuffle_buffer(documents, self.buffer_size, rng)

    def __iter__(self) -> Iterator[str]:
        for epoch in itertools.count():
            empty = True
            for document in self.epoch(epoch):
                empty = False
                yield document
            if empty:
                raise UserError(f"corpus {self.path} holds no document; give a file with text")


class _Mixture:
    """Re-iterable, endless document stream mixing shuffled corpora with temperature ``alpha``."""

    def __init__(self, corpora: Sequence[Path], alpha: float, seed: int, buffer_size: int):
        self.corpora, self.alpha, self.seed, self.buffer_size = list(corpora), alpha, seed, buffer_size

    def __iter__(self) -> Iterator[str]:
        streams = {str(path): ShuffledCorpus(path, self.buffer_size, f"{self.seed}:{index}")
                   for index, path in enumerate(self.corpora)}
        sizes = {str(path): corpus_size(path) for path in self.corpora}
        return (doc for _, doc in mix_streams(streams, self.alpha, self.seed, sizes, num_samples=sys.maxsize))


class PackedLMStream(torch.utils.data.IterableDataset):
    """Endless packed blocks from target corpora (mixed with temperature) plus optional replay.

    Each corpus is shuffled on its own (:class:`ShuffledCorpus`, ``shuffle_buffer`` documents;
    0 = file order) before mixing. Deterministic for a given seed: block ``i`` is always the
    same, which is what makes resume and multi-process runs reproduce a single uninterrupted
    run. ``start_block`` skips the blocks an earlier stage consumed. Yields
    ``{"input_ids", "document_starts", "block_index"}``.
    """

    def __init__(self, tokenizer: Any, corpora: Sequence[str | os.PathLike], objective: str, block_size: int, *,
                 seed: int = 0, alpha: float = 0.3, replay_corpus: str | os.PathLike | None = None,
                 replay_ratio: float = 0.0, start_block: int = 0, shuffle_buffer: int = SHUFFLE_BUFFER):
        if not 0.0 <= replay_ratio < 1.0:
            raise UserError(f"--replay-ratio {replay_ratio} must be in [0, 1)")
        if replay_ratio > 0 and replay_corpus is None:
            raise UserError("--replay-ratio needs --replay-corpus (source-language text)")
        self.tokenizer, self.objective, self.block_size = tokenizer, objective, block_size
        self.corpora = [Path(c) for c in corpora]
        self.seed, self.alpha, self.start_block = seed, alpha, start_block
        self.replay_corpus = Path(replay_corpus) if replay_corpus is not None and replay_ratio > 0 else None
        self.replay_ratio, self.shuffle_buffer = replay_ratio, shuffle_buffer

    def documents(self) -> Iterator[str]:
        target = _Mixture(self.corpora, self.alpha, self.seed, self.shuffle_buffer)
        if self.replay_corpus is None:
            return iter(target)
        streams = {"target": target, "replay": _Mixture([self.replay_corpus], 1.0, self.seed + 1, self.shuffle_buffer)}
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


class LineStream(torch.utils.data.IterableDataset):
    """Tokenized lines of the corpus, cycled forever (the Trainer stops at ``max_steps``): head recovery's data."""

    def __init__(self, files: Sequence[str], tokenizer: Any, max_length: int, skip: int):
        self.files, self.tokenizer, self.max_length, self.skip = files, tokenizer, max_length, skip

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        while True:
            for line in itertools.islice(iter_text(self.files, RESOURCE_DECODE_ERRORS, strip=True), self.skip, None):
                yield self.tokenizer(line, truncation=True, max_length=self.max_length,
                                     return_special_tokens_mask=True)
