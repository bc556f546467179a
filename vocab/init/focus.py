"""FOCUS (Dobler & de Melo, EMNLP 2023): sparse combinations of overlapping tokens.

1. Target tokens whose canonical form exactly matches a source token are copied.
2. A token-level fastText model is trained on the target corpus tokenized with the target
   tokenizer (CBOW, dim 100, 3 epochs, minCount 10, 10 negatives as published; one thread, so
   the model is reproducible; ``relax_min_count`` lowers minCount to ``max(1, tokens // 100k)``
   on corpora under 1M tokens, see :class:`FastTextOptions`).
3. Every other token with a fastText vector gets ``sparsemax(cosine similarities)`` over the
   overlapping tokens that have one (the "non-rare" overlap) as weights on their source rows.
   Tokens outside the fastText vocabulary fall back.

The rare-token test is one hash lookup per token (the package scans the whole fastText word
list for each token, O(V²)); similarities and sparsemax run in blocks of ``block_size`` rows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from langgraft.errors import UserError
from langgraft.vocab.init.base import (NEIGHBOURS, MethodConfig, TokenMapping, TransferContext,
                                       TransferResources, register_method)
from langgraft.vocab.init.fvt import with_fvt_fallback
from langgraft.vocab.init.transtok import TranstokConfig, transtok
from langgraft.vocab.resources import resolve
from langgraft.vocab.resources.fasttext import FastTextOptions, load_fasttext


@dataclass
class FocusConfig(MethodConfig):
    """fastText options of the token-level model (FOCUS's defaults), the block size,
    ``token_embeddings``: an existing token-level fastText ``.bin`` (trained on target text
    tokenized with the target tokenizer) instead of training one on ``--target-corpus``, and
    ``fvt_fallback``: tokens FOCUS cannot place (no fastText vector) get their FVT decomposition
    instead of a random row (off in the paper); ``transtok_share``: for tokens that both FOCUS and
    trans-tokenization place by neighbours, mix that share of the trans-tokenization weights
    (p(s|t) from ``--parallel`` or ``alignment_table``) into the FOCUS weights — two independent
    signals, distributional and translational (0 = FOCUS as published); ``relax_min_count``: lower
    minCount on small corpora (off in the package)."""

    token_embeddings: str | None = None
    fvt_fallback: bool = False
    transtok_share: float = 0.0
    alignment_table: str | None = None
    dim: int = 100
    epochs: int = 3
    min_count: int = 10
    relax_min_count: bool = False
    neg: int = 10
    model: str = "cbow"
    bucket: int = 2_000_000
    block_size: int = 4096

    def validate(self, resources: TransferResources) -> None:
        if not 0.0 <= self.transtok_share <= 1.0:
            raise UserError(f"focus: transtok_share={self.transtok_share} must be between 0 and 1")
        if self.transtok_share > 0 and not resources.parallel and not self.alignment_table:
            raise UserError("focus with transtok_share needs --parallel SRC TGT or --option alignment_table=FILE")
        if not resources.target_corpus and not self.token_embeddings:
            raise UserError("focus needs --target-corpus (or --option token_embeddings=FILE: "
                            "a token-level fastText .bin)")


def sparsemax(scores: torch.Tensor) -> torch.Tensor:
    """Sparsemax over the last dimension (Martins & Astudillo, 2016): the Euclidean projection
    onto the probability simplex; most entries are exactly zero."""
    z, _ = torch.sort(scores, dim=-1, descending=True)
    cumulative = z.cumsum(dim=-1)
    ranks = torch.arange(1, scores.shape[-1] + 1, dtype=scores.dtype, device=scores.device)
    support = (1 + ranks * z) > cumulative
    support_size = support.sum(dim=-1, keepdim=True)
    threshold = (cumulative.gather(-1, support_size - 1) - 1) / support_size.to(scores.dtype)
    return (scores - threshold).clamp_min(0)


def sparsemax_neighbours(queries: torch.Tensor, keys: torch.Tensor, block_size: int = 4096,
                         device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the key columns with non-zero sparsemax(cosine) weight, padded with -1.

    Memory is bounded by ``block_size × len(keys)`` on ``device`` (keys moved there once, each
    block of queries in turn, its support back to the CPU); returns CPU ``(indices, weights)`` of
    width equal to the largest support found.
    """
    queries = queries / queries.norm(dim=1, keepdim=True).clamp_min(1e-12)
    keys = keys.to(device)
    keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(1e-12)
    blocks = []
    for start in range(0, queries.shape[0], block_size):
        weights = sparsemax(queries[start:start + block_size].to(device) @ keys.T)
        width = max(int((weights > 0).sum(dim=1).max()), 1) if len(weights) else 1
        top = torch.topk(weights, width, dim=1)
        blocks.append((torch.where(top.values > 0, top.indices, -1).cpu(), top.values.cpu()))
    width = max((b[0].shape[1] for b in blocks), default=1)
    indices = torch.full((queries.shape[0], width), -1, dtype=torch.long)
    weights = torch.zeros(queries.shape[0], width)
    row = 0
    for block_indices, block_weights in blocks:
        indices[row:row + len(block_indices), :block_indices.shape[1]] = block_indices
        weights[row:row + len(block_indices), :block_weights.shape[1]] = block_weights
        row += len(block_indices)
    return indices, weights


def special_anchors(ctx: TransferContext, native: list[str]) -> torch.Tensor:
    """Source id of each target token's exact match (``ctx.overlap``), and for special tokens the
    source token of the same string, as the package matches them: a special the fastText model
    knows (``</s>`` is fastText's own end-of-line word) is then an anchor like any overlap."""
    anchors = ctx.overlap.clone()
    source_vocab = ctx.source_tokenizer.get_vocab()
    for token_id in ctx.target_special_ids:
        source_id = source_vocab.get(native[token_id], -1)
        anchors[token_id] = source_id if source_id < ctx.source_vocab_size else -1
    return anchors


@register_method("focus", FocusConfig,
                 description="copy overlap; sparsemax over overlapping tokens in token-level fastText (FOCUS)")
def focus(config: FocusConfig, ctx: TransferContext) -> TokenMapping:
    if config.token_embeddings:
        vectors = load_fasttext(config.token_embeddings, lowercase=False)
    else:
        options = FastTextOptions(dim=config.dim, epochs=config.epochs, min_count=config.min_count, neg=config.neg,
                                  model=config.model, bucket=config.bucket, relax_min_count=config.relax_min_count)
        vectors = resolve.token_vectors(ctx.resources, ctx.target_tokenizer, options)
    native = ctx.target_tokenizer.convert_ids_to_tokens(list(range(ctx.target_vocab_size)))
    known = torch.tensor(vectors.word_ids(native)) >= 0  # O(V): one hash lookup per token
    anchors = special_anchors(ctx, native)

    keys = torch.nonzero((anchors >= 0) & known).squeeze(1)
    queries = ctx.new_token_ids[(ctx.overlap[ctx.new_token_ids] < 0) & known[ctx.new_token_ids]]
    if len(keys) == 0:
        raise UserError("focus: no target token both overlaps the source vocabulary and has a fastText vector; "
                        "use more target text (--target-corpus) or another method")
    token_vectors = vectors.vectors([native[i] for i in torch.cat([keys, queries]).tolist()])
    columns, weights = sparsemax_neighbours(token_vectors[len(keys):], token_vectors[:len(keys)], config.block_size,
                                            device=ctx.device)
    source_of_key = anchors[keys]
    position = torch.full((ctx.target_vocab_size,), -1, dtype=torch.long)
    position[queries] = torch.arange(len(queries))
    rows = position[ctx.new_token_ids]
    has_row = rows >= 0
    ids = torch.full((len(rows), columns.shape[1]), -1, dtype=torch.long)
    w = torch.zeros(len(rows), columns.shape[1])
    picked = columns[rows[has_row]]
    ids[has_row] = torch.where(picked >= 0, source_of_key[picked.clamp_min(0)], -1)
    w[has_row] = weights[rows[has_row]]
    mapping = TokenMapping.from_neighbours(ctx.new_token_ids, ids, w).copy_overlap(ctx)
    mapping.notes.update({"overlap_used_as_anchors": int(len(keys)), "fasttext_tokens": int(known.sum())})
    if config.fvt_fallback:
        mapping = with_fvt_fallback(mapping, ctx)
    if config.transtok_share > 0:
        translated = transtok(TranstokConfig(alignment_table=config.alignment_table, fvt_fallback=True), ctx)
        mapping = mix_neighbours(mapping, translated, config.transtok_share)
    return mapping


def mix_neighbours(first: TokenMapping, second: TokenMapping, share: float) -> TokenMapping:
    """Rows that are NEIGHBOURS in both: ``(1 - share)·first + share·second`` (weights side by
    side, so rows, head and bias mix alike); every other row stays as in ``first``."""
    both = (first.kinds == NEIGHBOURS) & (second.kinds == NEIGHBOURS)
    ids = torch.cat([first.source_ids, torch.where(both[:, None], second.source_ids, -1)], dim=1)
    weights = torch.cat([torch.where(both[:, None], first.weights * (1 - share), first.weights),
                         torch.where(both[:, None], second.weights * share, 0.0)], dim=1)
    notes = {**first.notes, "mixed_rows": int(both.sum()), "transtok_notes": second.notes}
    return dataclasses.replace(first, source_ids=ids, weights=weights, notes=notes)
