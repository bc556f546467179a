"""FVT (fast vocabulary transfer): a new token's row is the mean of its source-tokenizer pieces.

Each target token is split by the *source* tokenizer at its own boundary position (a word-initial
piece as the start of a word, a continuation piece inside one), so ``##ana`` and ``ana`` get
different decompositions. Exact canonical matches are copied; an empty decomposition falls back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from langgraft.vocab.canonical import decompose
from langgraft.vocab.init.base import (FALLBACK, NEIGHBOURS, MethodConfig, TokenMapping, TransferContext,
                                       register_method)


@dataclass
class FVTConfig(MethodConfig):
    """``weight_by_length``: weight pieces by their character length instead of uniformly."""

    weight_by_length: bool = False


def piece_table(pieces: list[list[int]], weights: list[list[float]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ragged id lists into ``(n, k)`` ids (-1) and row-normalized weights (uniform by default)."""
    width = max((len(p) for p in pieces), default=0) or 1
    ids = torch.full((len(pieces), width), -1, dtype=torch.long)
    w = torch.zeros(len(pieces), width)
    for row, piece_ids in enumerate(pieces):
        if piece_ids:
            ids[row, :len(piece_ids)] = torch.tensor(piece_ids)
            w[row, :len(piece_ids)] = torch.tensor(weights[row] if weights else [1.0] * len(piece_ids))
    total = w.sum(dim=1, keepdim=True)
    return ids, torch.where(total > 0, w / total.clamp_min(1e-12), w)


def fvt_pieces(ctx: TransferContext) -> list[list[int]]:
    """Source-tokenizer ids of every token in ``ctx.new_token_ids`` (``[]`` when none)."""
    limit = ctx.source_vocab_size
    tokens = [ctx.target_tokens[i] for i in ctx.new_token_ids.tolist()]
    return [[i for i in ids if i < limit] for ids in decompose(tokens, ctx.source_tokenizer)]


@register_method("fvt", FVTConfig, description="mean of the source rows of the token's source-tokenizer pieces")
def fvt(config: FVTConfig, ctx: TransferContext) -> TokenMapping:
    pieces = fvt_pieces(ctx)
    weights = None
    if config.weight_by_length:
        weights = [[float(max(len(ctx.source_tokens[i].raw), 1)) for i in ids] for ids in pieces]
    ids, w = piece_table(pieces, weights)
    return TokenMapping.from_neighbours(ctx.new_token_ids, ids, w).copy_overlap(ctx)


def with_fvt_fallback(mapping: TokenMapping, ctx: TransferContext) -> TokenMapping:
    """Fallback rows replaced by the FVT decomposition of the token (mean of its source pieces),
    where the source tokenizer can spell it; the others stay fallback."""
    fallback = mapping.kinds == FALLBACK
    pieces = fvt_pieces(ctx)
    piece_ids, piece_weights = piece_table([p if f else [] for p, f in zip(pieces, fallback.tolist())])
    width = max(mapping.source_ids.shape[1], piece_ids.shape[1])
    ids = torch.full((len(fallback), width), -1, dtype=torch.long)
    weights = torch.zeros(len(fallback), width)
    ids[:, :mapping.source_ids.shape[1]] = mapping.source_ids
    weights[:, :mapping.weights.shape[1]] = mapping.weights
    filled = fallback & (piece_ids[:, 0] >= 0)
    ids[filled] = -1
    weights[filled] = 0.0
    ids[filled, :piece_ids.shape[1]] = piece_ids[filled]
    weights[filled, :piece_weights.shape[1]] = piece_weights[filled]
    kinds = torch.where(filled, NEIGHBOURS, mapping.kinds.long()).to(torch.int8)
    notes = {**mapping.notes, "fvt_fallback_tokens": int(filled.sum())}
    return dataclasses.replace(mapping, source_ids=ids, weights=weights, kinds=kinds, notes=notes)
