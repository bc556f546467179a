"""WECHSEL (Minixhofer et al., NAACL 2022): neighbours in aligned static word-embedding spaces.

1. fastText word vectors for both languages (given ``.bin`` files, or trained offline on the
   source/target corpora).
2. Orthogonal Procrustes on bilingual dictionary pairs (given, or induced from parallel text
   with eflomal) maps the target space onto the source space.
3. Every token gets the fastText vector of its canonical surface, composed from character
   n-grams with its word boundary respected (word-initial pieces as words, continuation pieces
   without the begin-of-word marker); a token with no known n-gram has no vector -> fallback.
4. Each target token's top-``k`` source tokens by cosine, weights ``softmax(sim / temperature)``.

Unlike the published package, both spaces must have the same dimension (a clear error instead
of reducing the source model twice), token surfaces keep their boundary, and similarities are
computed in blocks with ``torch.topk``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from langgraft.errors import UserError
from langgraft.vocab.canonical import CanonicalToken
from langgraft.vocab.init.base import (MethodConfig, TokenMapping, TransferContext, TransferResources,
                                       register_method, softmax_topk_weights, topk_similarities)
from langgraft.vocab.resources import resolve
from langgraft.vocab.resources.fasttext import FastTextOptions, WordVectors
from langgraft.vocab.resources.procrustes import align_spaces


@dataclass
class WechselConfig(MethodConfig):
    """``k``/``temperature``: the paper's top-k softmax rule; ``dim``/``epochs``/``min_count``:
    fastText training when embeddings are trained from corpora (``bucket``: n-gram buckets);
    ``copy_overlap``: copy exact canonical matches (off in the paper); ``block_size``: query rows
    per similarity block."""

    k: int = 10
    temperature: float = 0.1
    copy_overlap: bool = False
    dim: int = 100
    epochs: int = 10
    min_count: int = 3
    bucket: int = 2_000_000
    block_size: int = 1024

    def validate(self, resources: TransferResources) -> None:
        for side in ("source", "target"):
            if not getattr(resources, f"{side}_embeddings") and not getattr(resources, f"{side}_corpus"):
                raise UserError(f"wechsel needs --{side}-embeddings or --{side}-corpus")
        if not resources.dictionary and not resources.parallel:
            raise UserError("wechsel needs --dictionary or --parallel SRC TGT (to induce one with eflomal)")

    def fasttext_options(self) -> FastTextOptions:
        return FastTextOptions(dim=self.dim, epochs=self.epochs, min_count=self.min_count, bucket=self.bucket)


def token_vectors(tokens: Sequence[CanonicalToken], vectors: WordVectors) -> torch.Tensor:
    """fastText vector of each token's canonical surface; zero rows for specials and byte pieces."""
    usable = [not (t.is_special or t.is_byte) and bool(t.raw) for t in tokens]
    surfaces = [t.raw.decode("utf-8", errors="replace") if ok else "" for t, ok in zip(tokens, usable)]
    surfaces = ["" if "\ufffd" in s else s for s in surfaces]  # partial UTF-8: no meaningful n-grams
    return vectors.vectors(surfaces, [t.word_initial for t in tokens])


def aligned_token_vectors(ctx: TransferContext, config: WechselConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(source token vectors, target token vectors rotated into the source space, notes)."""
    options = config.fasttext_options()
    source_wv = resolve.word_vectors(ctx.resources, "source", options)
    target_wv = resolve.word_vectors(ctx.resources, "target", options)
    rotation, used = align_spaces(resolve.dictionary(ctx.resources), source_wv, target_wv)
    limit = ctx.source_vocab_size
    source = token_vectors(ctx.source_tokens[:limit], source_wv)
    target = token_vectors(ctx.target_tokens, target_wv) @ rotation
    return source, target, {"dictionary_pairs_used": used, "fasttext_dim": source_wv.dim}


def neighbour_mapping(target_ids: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor, k: int,
                      temperature: float, block_size: int, device: str = "cpu") -> TokenMapping:
    """Top-k softmax neighbours of ``queries[target_ids]`` among the non-zero ``keys`` rows (similarities on ``device``)."""
    key_ids = torch.nonzero(keys.abs().sum(dim=1) > 0).squeeze(1)
    query = queries[target_ids]
    sims, idx = topk_similarities(query, keys[key_ids], k, block_size=block_size, device=device)
    weights = softmax_topk_weights(sims, temperature)
    has_vector = query.abs().sum(dim=1) > 0
    weights = torch.where(has_vector[:, None], weights, 0.0)
    return TokenMapping.from_neighbours(target_ids, key_ids[idx], weights)


@register_method("wechsel", WechselConfig,
                 description="top-k softmax neighbours in Procrustes-aligned fastText spaces (WECHSEL)")
def wechsel(config: WechselConfig, ctx: TransferContext) -> TokenMapping:
    source, target, notes = aligned_token_vectors(ctx, config)
    mapping = neighbour_mapping(ctx.new_token_ids, target, source, config.k, config.temperature, config.block_size,
                                ctx.device)
    mapping.notes.update(notes)
    return mapping.copy_overlap(ctx) if config.copy_overlap else mapping
