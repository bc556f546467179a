"""Trans-tokenization (Remy et al., 2024): token translation probabilities from aligned text.

1. Parallel text (``--parallel SRC TGT``) is word-aligned with eflomal; each link's count is
   spread over the token pieces of the two words (see
   :func:`langgraft.vocab.resources.align.token_alignment_counts`). A table built once with
   ``langgraft resources align`` can be given instead (``alignment_table``).
2. Pairs seen fewer than ``min_count`` times are dropped; each target token keeps its ``top_k``
   most frequent source tokens; weights are p(s|t) renormalized over what is kept.
3. A target token without alignments inherits the (count-weighted) distributions of the longer
   aligned target tokens that contain its surface; otherwise it falls back.
4. Numbers and punctuation that exist in both vocabularies, and identical strings that got no
   alignment, map to themselves (copied).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from langgraft.errors import UserError
from langgraft.vocab.init.base import (COPIED, FALLBACK, MethodConfig, TokenMapping, TransferContext,
                                       TransferResources, register_method)
from langgraft.vocab.init.fvt import with_fvt_fallback
from langgraft.vocab.resources import resolve
from langgraft.vocab.resources.align import align_words, read_token_table, token_alignment_counts

MAX_PARENTS = 32  # longer tokens a piece may inherit from (the most aligned ones)


@dataclass
class TranstokConfig(MethodConfig):
    """``min_count``: drop rarer (target, source) token pairs; ``top_k``: source tokens kept per
    target token; ``alignment_table``: a table from ``langgraft resources align`` instead of
    aligning ``--parallel`` now; ``symmetrization``: ``grow-diag`` or ``intersection``;
    ``fvt_fallback``: tokens left without alignments get their FVT decomposition, not a random row."""

    min_count: float = 2.0
    top_k: int = 16
    alignment_table: str | None = None
    symmetrization: str = "grow-diag"
    fvt_fallback: bool = False

    def validate(self, resources: TransferResources) -> None:
        if not resources.parallel and not self.alignment_table:
            raise UserError("transtok needs --parallel SRC TGT (aligned text) or alignment_table=FILE")


def alignment_counts(config: TranstokConfig, ctx: TransferContext) -> torch.Tensor:
    """(V_t × V_s) sparse token alignment counts, from the table or by aligning the parallel text."""
    if config.alignment_table:
        return read_token_table(config.alignment_table, ctx.target_vocab_size, len(ctx.source_tokenizer))
    source_lines, target_lines = resolve.parallel_text(ctx.resources)
    alignment = align_words(source_lines, target_lines, symmetrization=config.symmetrization)
    return token_alignment_counts(alignment, source_lines, target_lines, ctx.source_tokenizer, ctx.target_tokenizer)


def top_k_rows(counts: torch.Tensor, min_count: float, top_k: int, n_rows: int,
               limit: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: the ``top_k`` largest counts >= ``min_count`` (column < ``limit``) as padded
    ``(ids, probabilities, row_totals)``; probabilities sum to 1 over each non-empty row. The two
    sorts over every aligned pair run on ``device``; stable sorts give the same order anywhere."""
    index, values = counts.indices(), counts.values().float()
    keep = (values >= min_count) & (index[1] < limit)
    rows, cols, values = index[0][keep], index[1][keep], values[keep]
    on_device_rows, on_device_values = rows.to(device), values.to(device)
    order = torch.argsort(-on_device_values, stable=True)
    order = order[torch.argsort(on_device_rows[order], stable=True)].cpu()
    rows, cols, values = rows[order], cols[order], values[order]
    starts = torch.searchsorted(rows, torch.arange(n_rows))
    rank = torch.arange(len(rows)) - starts[rows]
    keep = rank < top_k
    ids = torch.full((n_rows, top_k), -1, dtype=torch.long)
    weights = torch.zeros(n_rows, top_k)
    ids[rows[keep], rank[keep]] = cols[keep]
    weights[rows[keep], rank[keep]] = values[keep]
    totals = weights.sum(dim=1)
    return ids, weights / totals.clamp_min(1e-12)[:, None], totals


def inherit_from_longer(ctx: TransferContext, ids: torch.Tensor, probs: torch.Tensor,
                        totals: torch.Tensor) -> int:
    """Fill empty rows of new tokens from aligned target tokens containing their surface (in place)."""
    surfaces = [t.raw for t in ctx.target_tokens]
    aligned = torch.nonzero(totals > 0).squeeze(1).tolist()
    containing: dict[bytes, list[int]] = {}
    for parent in sorted(aligned, key=lambda i: -float(totals[i])):
        raw = surfaces[parent]
        for start in range(len(raw)):
            for end in range(start + 1, len(raw) + 1):
                if end - start < len(raw):
                    holders = containing.setdefault(raw[start:end], [])
                    if len(holders) < MAX_PARENTS and (not holders or holders[-1] != parent):
                        holders.append(parent)
    filled = 0
    width = ids.shape[1]
    for token in ctx.new_token_ids.tolist():
        parents = containing.get(surfaces[token]) if totals[token] == 0 and surfaces[token] else None
        if not parents:
            continue
        mixed: dict[int, float] = {}
        for parent in parents:
            for source, p in zip(ids[parent].tolist(), probs[parent].tolist()):
                if source >= 0:
                    mixed[source] = mixed.get(source, 0.0) + p * float(totals[parent])
        best = sorted(mixed.items(), key=lambda item: (-item[1], item[0]))[:width]
        total = sum(p for _, p in best)
        ids[token, :len(best)] = torch.tensor([s for s, _ in best])
        probs[token, :len(best)] = torch.tensor([p / total for _, p in best])
        filled += 1
    return filled


def _is_number_or_symbol(raw: bytes) -> bool:
    text = raw.decode("utf-8", errors="replace")
    return bool(text) and all(ch.isdigit() or not ch.isalnum() for ch in text)


@register_method("transtok", TranstokConfig,
                 description="p(s|t) token translation probabilities from eflomal-aligned parallel text")
def transtok(config: TranstokConfig, ctx: TransferContext) -> TokenMapping:
    counts = alignment_counts(config, ctx)
    ids, probs, totals = top_k_rows(counts, config.min_count, config.top_k, ctx.target_vocab_size,
                                    ctx.source_vocab_size, device=ctx.device)
    aligned_tokens = int((totals[ctx.new_token_ids] > 0).sum())
    inherited = inherit_from_longer(ctx, ids, probs, totals)
    new = ctx.new_token_ids
    mapping = TokenMapping.from_neighbours(new, ids[new], probs[new])
    copied = mapping.copy_overlap(ctx)
    symbol = torch.tensor([_is_number_or_symbol(ctx.target_tokens[i].raw) for i in new.tolist()], dtype=torch.bool)
    use_copy = (copied.kinds == COPIED) & (symbol | (mapping.kinds == FALLBACK))
    mapping.source_ids = torch.where(use_copy[:, None], copied.source_ids, mapping.source_ids)
    mapping.weights = torch.where(use_copy[:, None], copied.weights, mapping.weights)
    mapping.kinds = torch.where(use_copy, copied.kinds, mapping.kinds)
    mapping.notes.update({"aligned_tokens": aligned_tokens, "inherited_tokens": inherited,
                          "alignment_pairs": int(counts.values().numel())})
    return with_fvt_fallback(mapping, ctx) if config.fvt_fallback else mapping
