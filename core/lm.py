"""Language-model primitives shared by training, evaluation and initialization.

- Logits only where a loss needs them (:class:`SelectedRowsHead`, :func:`logits_at`,
  :func:`selected_rows_loss`): MLM scores ~15% of the positions, and on small models the vocabulary
  projection is most of the compute.
- Fixed whole-word masks (:func:`masked_word_spans`): drawn from a hash of (seed, document, word),
  never from a tokenizer, so every model is scored on the same words.
- Scored windows (:func:`mlm_windows`, :func:`clm_windows`, :func:`window_logits`): the inputs of
  bits per character (``langgraft.eval.bpc``) and of output-bias calibration (``langgraft.vocab``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from langgraft.models import unwrap

_WORD = re.compile(r"\S+")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


def word_mask_draws(seed: int, document_index: int, n_words: int) -> np.ndarray:
    """Uniform [0, 1) draws for words ``0..n_words-1`` of a document; word i is masked if draw < rate."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x100000001B3) + np.uint64(document_index))
        hashed = _splitmix64(key ^ _splitmix64(np.arange(n_words, dtype=np.uint64)))
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def masked_word_spans(text: str, document_index: int, seed: int, rate: float) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the words of ``text`` chosen for masking."""
    spans = [match.span() for match in _WORD.finditer(text)]
    draws = word_mask_draws(seed, document_index, len(spans))
    return [span for span, draw in zip(spans, draws) if draw < rate]


def special_token_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single sequence (``[CLS]``/``[SEP]``, ``<s>``/``</s>``)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare):])
    return [], []


# Batch key holding the boolean [batch, seq] mask of positions whose logits the loss needs. It
# is removed from the model's inputs by a forward pre-hook and never reaches the model.
LM_ROWS_KEY = "lm_rows"


def head_module(model: torch.nn.Module) -> torch.nn.Module | None:
    """The top-level sub-module that holds the vocabulary projection (``cls``, ``lm_head``, ...).

    Running it on the selected rows only also skips the head's transform (dense + norm) on the
    others. ``None`` when the model has no output embeddings.
    """
    inner = unwrap(model)
    projection = inner.get_output_embeddings()
    if projection is None:
        return None
    for child in inner.children():
        if child is projection or any(module is projection for module in child.modules()):
            return child
    return projection


class SelectedRowsHead:
    """Make an LM compute logits only at the positions a loss needs (a ``[n_rows, vocab]`` tensor).

    On small models the vocabulary projection is most of the compute, and MLM scores only ~15%
    of the positions. Pass the boolean mask as ``model(..., lm_rows=mask)``: a forward pre-hook
    on ``model`` takes it out of the inputs, and a pre-hook on the head keeps only those rows of
    the hidden states. Without ``lm_rows`` the model behaves as usual. Pure PyTorch hooks: the
    model stays a stock ``PreTrainedModel`` (checkpoints and ``save_pretrained`` are unchanged).
    """

    def __init__(self, model: torch.nn.Module):
        self.rows: torch.Tensor | None = None
        head = head_module(model)
        self.handles = [
            model.register_forward_pre_hook(self._take_rows, with_kwargs=True),
            model.register_forward_hook(self._forget_rows, always_call=True),
        ]
        if head is not None:
            self.handles.append(head.register_forward_pre_hook(self._select_rows, with_kwargs=True))

    def _take_rows(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        self.rows = kwargs.pop(LM_ROWS_KEY, None)
        return args, kwargs

    def _select_rows(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.rows is None:
            return None
        if args:
            return (args[0][self.rows], *args[1:]), kwargs
        name = next(key for key, value in kwargs.items() if torch.is_tensor(value))
        return args, {**kwargs, name: kwargs[name][self.rows]}

    def _forget_rows(self, *_: Any) -> None:
        self.rows = None

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def __enter__(self) -> "SelectedRowsHead":
        return self

    def __exit__(self, *_: Any) -> None:
        self.remove()


def logits_at(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              rows: torch.Tensor) -> torch.Tensor:
    """Logits ``[rows.sum(), vocab]`` at the ``True`` positions of ``rows``, in row-major order."""
    with SelectedRowsHead(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **{LM_ROWS_KEY: rows}).logits
    return logits if logits.dim() == 2 else logits[rows]


def selected_rows_loss(objective: str) -> Callable[..., torch.Tensor]:
    """Trainer ``compute_loss_func``: cross-entropy over the logits of the ``lm_rows`` positions.

    Logits arrive as ``[n_rows, vocab]`` (see :class:`SelectedRowsHead`);
    targets are the labels at those rows, in the same row-major order. Normalised by Trainer's
    ``num_items_in_batch`` so gradient accumulation and multi-process runs match one big batch.
    """

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        targets = labels[:, 1:] if objective == "clm" else labels
        keep = targets != -100
        logits = outputs.logits if outputs.logits.dim() == 2 else (
            outputs.logits[:, :-1][keep] if objective == "clm" else outputs.logits[keep])
        total = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
        if num_items_in_batch is None:
            return total / keep.sum().clamp(min=1)
        return total / num_items_in_batch

    return loss


@dataclass
class ScoredWindow:
    """One model input and the positions scored in it (``targets[i]`` is the id expected at ``positions[i]``)."""

    input_ids: list[int]
    positions: list[int]
    targets: list[int]


def mlm_windows(tokenizer: Any, texts: list[str], first_index: int, seed: int, rate: float,
                max_length: int) -> tuple[list[ScoredWindow], int]:
    """Windows with the tokens of masked words replaced by the mask token; returns masked characters."""
    prefix, suffix = special_token_frame(tokenizer)
    body = max_length - len(prefix) - len(suffix)
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    windows, characters = [], 0
    for offset, (text, ids, offsets) in enumerate(zip(texts, encoded["input_ids"], encoded["offset_mapping"])):
        spans = masked_word_spans(text, first_index + offset, seed, rate)
        if not spans or not ids:
            continue
        starts = np.array([s for s, _ in spans])
        ends = np.array([e for _, e in spans])
        token_offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        overlaps = (token_offsets[:, :1] < ends[None, :]) & (token_offsets[:, 1:] > starts[None, :])
        masked = overlaps.any(axis=1)
        characters += int((ends - starts)[overlaps.any(axis=0)].sum())
        for begin in range(0, len(ids), body):
            chunk = np.asarray(ids[begin:begin + body])
            chosen = np.flatnonzero(masked[begin:begin + body])
            if chosen.size == 0:
                continue
            inputs = chunk.copy()
            inputs[chosen] = tokenizer.mask_token_id
            windows.append(ScoredWindow(prefix + inputs.tolist() + suffix, (chosen + len(prefix)).tolist(),
                                        chunk[chosen].tolist()))
    return windows, characters


def clm_windows(tokenizer: Any, texts: list[str], max_length: int) -> tuple[list[ScoredWindow], int]:
    """Overlapping windows over BOS + document; every text token is a target exactly once."""
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    stride = max(1, max_length // 2)
    windows, characters = [], 0
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        if not ids:
            continue
        if start_id is None:  # the first token has no context: score from the second one
            characters += len(text) - offsets[0][1]
        else:
            ids = [start_id] + list(ids)
            characters += len(text)
        first = 1
        while first < len(ids):
            end = min(len(ids), first + stride if first > 1 else max_length)
            begin = max(0, end - max_length)
            positions = list(range(first - 1 - begin, end - 1 - begin))
            windows.append(ScoredWindow(list(ids[begin:end]), positions, list(ids[first:end])))
            first = end
    return windows, characters


def window_logits(model: Any, windows: list[ScoredWindow], pad_id: int) -> tuple[Any, Any]:
    """Logits at the scored positions of ``windows`` (one padded batch) and the ids expected there."""
    device = next(model.parameters()).device
    width = max(len(w.input_ids) for w in windows)
    input_ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(windows), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for row, window in enumerate(windows):
        input_ids[row, :len(window.input_ids)] = torch.tensor(window.input_ids)
        attention[row, :len(window.input_ids)] = 1
        rows += [row] * len(window.positions)
        cols += window.positions
        targets += window.targets
    selected = torch.zeros((len(windows), width), dtype=torch.bool)
    selected[rows, cols] = True
    # positions ascend within each window, so ``targets`` is in the row-major order of ``selected``
    logits = logits_at(model, input_ids.to(device), attention.to(device), selected.to(device))
    return logits, torch.tensor(targets, device=device)


def pad_batch(rows: Sequence[Sequence[int]], padding: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into (input_ids, attention_mask) tensors."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), padding, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row_index, row in enumerate(rows):
        ids[row_index, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[row_index, : len(row)] = 1
    return ids, mask
