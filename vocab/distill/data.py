"""The distillation data: snippets mined for the new tokens, parallel pairs, and the teacher's targets.

Same text: the target corpus is streamed once, each line cut into windows of ``snippet_tokens``
student tokens; a window is kept while it holds a token that still has fewer than
``snippets_per_token`` snippets (corpus order: deterministic, no draw), and the run stops when
every token is served or ``max_snippets`` are kept. Memory: the kept texts and one count per token.

The teacher (frozen, ``no_grad``) then reads each snippet once; its hidden states at the aligned
positions (:mod:`.align`), or its pooled sentence vector for parallel text, are kept as the
targets, so the training steps never run the teacher unless the logit KL asks for it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from langgraft.corpora.readers import batched, iter_text, read_parallel
from langgraft.errors import UserError
from langgraft.lm import pad_batch

from .align import Encoded, aligned_positions, encode, last_token_at

LINE_BATCH = 256
TEACHER_BATCH = 16


@dataclass
class Snippets:
    texts: list[str]
    counts: np.ndarray  # snippets per token id (only the wanted ids count)
    wanted: np.ndarray  # bool per token id: the rows distillation is for


def mine_snippets(tokenizer: Any, corpus: Sequence[str], wanted: np.ndarray, per_token: int, snippet_tokens: int,
                  max_snippets: int) -> Snippets:
    """Windows of the corpus holding the wanted tokens, up to ``per_token`` each (see the module docstring)."""
    counts = np.zeros(len(wanted), dtype=np.int64)
    open_tokens = int(wanted.sum())
    texts: list[str] = []
    for lines in batched(iter_text(corpus, skip_blank=True), LINE_BATCH):
        batch = tokenizer(lines, add_special_tokens=False, return_offsets_mapping=True)
        for line, ids, offsets in zip(lines, batch["input_ids"], batch["offset_mapping"]):
            ids = np.asarray(ids, dtype=np.int64)
            for start in range(0, len(ids), snippet_tokens):
                window = ids[start:start + snippet_tokens]
                window = window[window < len(wanted)]
                hits = window[wanted[window]]
                if not len(hits) or not (counts[hits] < per_token).any():
                    continue
                served = np.unique(hits)
                before = counts[served] < per_token
                np.add.at(counts, hits, 1)
                open_tokens -= int((before & (counts[served] >= per_token)).sum())
                end = min(start + snippet_tokens, len(ids)) - 1
                texts.append(line[offsets[start][0]:offsets[end][1]].strip())
                if len(texts) >= max_snippets or open_tokens <= 0:
                    return Snippets(texts, counts, wanted)
    return Snippets(texts, counts, wanted)


@dataclass
class Pairs:
    source: list[str]
    target: list[str]


def read_pairs(source_file: str, target_file: str, max_pairs: int) -> Pairs:
    """The first ``max_pairs`` non-empty pairs of a line- or id-aligned parallel corpus."""
    kept = ((s, t) for _, s, t in read_parallel(source_file, target_file) if s.strip() and t.strip())
    pairs = list(itertools.islice(kept, max_pairs))
    if not pairs:
        raise UserError(f"parallel text {source_file} / {target_file} has no non-empty sentence pair; give one "
                        "sentence per line on both sides (or id<TAB>text lines)")
    return Pairs([s for s, _ in pairs], [t for _, t in pairs])


def check_readable(encoded: Iterable[Encoded], max_unknown: float, where: str) -> None:
    """A teacher whose tokenizer maps much of the text to its unknown token cannot teach it."""
    tokens = unknown = 0
    for item in encoded:
        tokens += sum(1 for end in item.ends if end >= 0)
        unknown += item.unknown
    if tokens and unknown / tokens > max_unknown:
        raise UserError(f"the teacher's tokenizer reads {unknown / tokens:.0%} of {where} as its unknown token "
                        f"(more than max_unknown {max_unknown:g}): it cannot read this text; choose a teacher "
                        "that knows the script, or use --teacher-text parallel")


def fit_both(teacher_tok: Any, student_tok: Any, texts: Sequence[str], max_length: int
             ) -> tuple[list[Encoded], list[Encoded]]:
    """Both tokenizations of ``texts``; a text that one side had to cut is cut where both still read it."""
    teacher, student = encode(teacher_tok, texts, max_length), encode(student_tok, texts, max_length)
    for index, (t, s) in enumerate(zip(teacher, student)):
        if len(t.input_ids) >= max_length or len(s.input_ids) >= max_length:
            end = min(max(t.ends), max(s.ends))
            if end > 0:
                teacher[index] = encode(teacher_tok, [texts[index][:end]], max_length)[0]
                student[index] = encode(student_tok, [texts[index][:end]], max_length)[0]
    return teacher, student


def layer_states(hidden_states: Sequence[torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """The chosen hidden states side by side: ``[batch, tokens, len(layers) * hidden]``."""
    try:
        return torch.cat([hidden_states[layer] for layer in layers], dim=-1)
    except IndexError:
        raise UserError(f"layers {list(layers)}: the model has hidden states 0..{len(hidden_states) - 1} (or "
                        f"-1..-{len(hidden_states)}); choose layers in that range") from None


def pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


@torch.no_grad()
def teacher_states(teacher: Any, encoded: Sequence[Encoded], positions: Sequence[Sequence[int]] | None,
                   layers: Sequence[int], pad: int, pooling: str | None = None, device: Any = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
    """One teacher pass: its states at ``positions`` of each sequence (``[P, D]`` each) and, with ``pooling``,
    its pooled sentence vectors (``[D]`` each); None for what was not asked."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))  # similar lengths per batch
    at: dict[int, torch.Tensor] = {}
    pooled: dict[int, torch.Tensor] = {}
    for chunk in batched(order, TEACHER_BATCH):
        ids, mask = pad_batch([encoded[i].input_ids for i in chunk], pad)
        hidden = layer_states(teacher(input_ids=ids.to(device), attention_mask=mask.to(device),
                                      output_hidden_states=True).hidden_states, layers).float()
        if pooling is not None:
            masks = torch.stack([pool_mask(encoded[i], hidden.shape[1]) for i in chunk]).to(hidden.device)
            for row, vector in zip(chunk, pool(hidden, masks, pooling)):
                pooled[row] = vector.to("cpu", dtype)
        if positions is not None:
            for row, index in enumerate(chunk):
                at[index] = hidden[row, positions[index]].to("cpu", dtype)
    return ([at[i] for i in range(len(encoded))] if positions is not None else None,
            [pooled[i] for i in range(len(encoded))] if pooling is not None else None)


def word_links(alignment: Any, teacher: Sequence[Encoded], student: Sequence[Encoded]
               ) -> list[tuple[list[int], list[int]]]:
    """Per pair, (teacher positions, student positions) of linked words: the last piece of each word, where a
    token of each side ends exactly at the word's end (one link per student position)."""
    out = []
    for source_spans, target_spans, links, t, s in zip(alignment.source_spans, alignment.target_spans,
                                                        alignment.links, teacher, student):
        teacher_at, student_at = last_token_at(t.ends), last_token_at(s.ends)
        kept: dict[int, int] = {}
        for i, j in links:
            source_end, target_end = source_spans[i][1], target_spans[j][1]
            if source_end in teacher_at and target_end in student_at:
                kept.setdefault(student_at[target_end], teacher_at[source_end])
        out.append(([kept[p] for p in sorted(kept)], sorted(kept)))
    return out


def pool_mask(item: Encoded, width: int) -> torch.Tensor:
    """1 for the tokens a sentence vector averages (non-special, non-empty), 0 elsewhere, padded to ``width``."""
    mask = torch.zeros(width)
    mask[:len(item.ends)] = torch.tensor([1.0 if end >= 0 else 0.0 for end in item.ends])
    if not mask.any():
        mask[:len(item.ends)] = 1.0
    return mask


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence vectors ``[batch, D]`` from ``[batch, tokens, D]`` states: masked mean, or the first token."""
    if pooling == "first":
        return hidden[:, 0]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def same_text_items(teacher_tok: Any, student_tok: Any, texts: Sequence[str], max_length: int
                    ) -> tuple[list[Encoded], list[dict[str, Any]]]:
    """Teacher encodings and one training item per text with aligned positions (texts without any are dropped)."""
    teacher, student = fit_both(teacher_tok, student_tok, texts, max_length)
    kept_teacher, items = [], []
    for t, s in zip(teacher, student):
        t_pos, s_pos = aligned_positions(t, s)
        if not s_pos:
            continue
        kept_teacher.append(t)
        items.append({"input_ids": s.input_ids, "positions": s_pos, "teacher_ids": t.input_ids,
                      "teacher_positions": t_pos})
    return kept_teacher, items


class DistillDataset(torch.utils.data.Dataset):
    """Items (dicts) built once; a map-style dataset, so Trainer's seeded sampler shuffles and resumes it."""

    def __init__(self, items: list[dict[str, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


class DistillCollator:
    """Pads a batch; ``labels`` carries one entry per loss item (aligned position or sentence) for Trainer's count."""

    def __init__(self, pad: int, teacher_pad: int, with_teacher_ids: bool):
        self.pad, self.teacher_pad, self.with_teacher_ids = pad, teacher_pad, with_teacher_ids

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, mask = pad_batch([item["input_ids"] for item in items], self.pad)
        batch = {"input_ids": ids, "attention_mask": mask}
        if "positions" in items[0]:  # same text: aligned positions and the teacher's states there
            width = max(len(item["positions"]) for item in items)
            dim = items[0]["targets"].shape[-1]
            positions = torch.full((len(items), width), -100, dtype=torch.long)
            targets = torch.zeros((len(items), width, dim), dtype=items[0]["targets"].dtype)
            for i, item in enumerate(items):
                positions[i, :len(item["positions"])] = torch.tensor(item["positions"])
                targets[i, :len(item["positions"])] = item["targets"]
            batch.update(labels=positions, shift_labels=positions, distill_targets=targets)
            if self.with_teacher_ids:
                teacher_ids, teacher_mask = pad_batch([item["teacher_ids"] for item in items], self.teacher_pad)
                teacher_positions = torch.full((len(items), width), 0, dtype=torch.long)
                for i, item in enumerate(items):
                    teacher_positions[i, :len(item["teacher_positions"])] = torch.tensor(item["teacher_positions"])
                batch.update(distill_teacher_ids=teacher_ids, distill_teacher_mask=teacher_mask,
                             distill_teacher_positions=teacher_positions)
        else:  # parallel text: one pooled vector per item
            pool_masks = torch.stack([torch.nn.functional.pad(item["pool_mask"], (0, ids.shape[1] - len(item["pool_mask"])))
                                      for item in items])
            counted = torch.zeros((len(items), 1), dtype=torch.long)
            batch.update(labels=counted, shift_labels=counted, distill_pool_mask=pool_masks,
                         distill_targets=torch.stack([item["targets"] for item in items])[:, None],
                         distill_weights=torch.tensor([item["weight"] for item in items], dtype=torch.float32))
            if any("word_positions" in item for item in items):  # word-aligned positions (target sides only)
                width = max(1, max(len(item.get("word_positions", ())) for item in items))
                dim = batch["distill_targets"].shape[-1]
                positions = torch.full((len(items), width), -100, dtype=torch.long)
                targets = torch.zeros((len(items), width, dim), dtype=batch["distill_targets"].dtype)
                for i, item in enumerate(items):
                    count = len(item.get("word_positions", ()))
                    if count:
                        positions[i, :count] = torch.tensor(item["word_positions"])
                        targets[i, :count] = item["word_targets"]
                batch.update(distill_word_positions=positions, distill_word_targets=targets)
        return batch
