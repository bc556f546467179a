"""WECHSEL (Minixhofer et al., NAACL 2022): neighbours in aligned static word-embedding spaces.

1. fastText word vectors for both languages (given ``.bin`` files, or trained offline on the
   source/target corpora).
2. Orthogonal Procrustes on bilingual dictionary pairs (given, or induced from parallel text
   with eflomal) maps the target space onto the source space.
3. Every token gets a fastText vector of its surface. ``surface="package"`` (default) is the
   package's rule: the token decoded alone by its tokenizer and stripped (``##ing`` stays
   ``##ing``, ``Ġthe`` becomes ``the``, specials keep their text), looked up as a whole word
   exactly as written (fastText's ``get_word_vector``: the word's row if known plus its
   ``<word>`` n-grams; zero only when it has neither). ``surface="boundary"`` is langgraft's
   variant: the canonical surface with its word boundary respected (continuation pieces without
   the begin-of-word marker), split into words as the fastText text was split
   (:data:`~langgraft.vocab.resources.text.WORD_PATTERN`), cased as the model was trained, the
   token's vector the mean of its words'; special tokens have none.
4. Each target token's top-``k`` source tokens by cosine, weights ``softmax(sim / temperature)``;
   a target token whose vector is zero falls back. Under ``surface="package"`` every source
   token is a candidate (specials and zero vectors too, at cosine 0), as in the package; under
   ``"boundary"`` only source tokens with a vector.

Unlike the published package, both spaces must have the same dimension (a clear error instead
of reducing the source model twice), and similarities are computed in blocks with ``torch.topk``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from langgraft.errors import UserError
from langgraft.vocab.canonical import CanonicalToken
from langgraft.vocab.init.base import (MethodConfig, TokenMapping, TransferContext, TransferResources,
                                       register_method, softmax_topk_weights, topk_similarities)
from langgraft.vocab.resources import resolve
from langgraft.vocab.resources.fasttext import FastTextOptions, WordVectors
from langgraft.vocab.resources.procrustes import align_spaces
from langgraft.vocab.resources.text import WORD_PATTERN, is_punctuation


PACKAGE, BOUNDARY = "package", "boundary"
SURFACES = (PACKAGE, BOUNDARY)


@dataclass
class WechselConfig(MethodConfig):
    """``k``/``temperature``: the paper's top-k softmax rule; ``dim``/``epochs``/``min_count``:
    fastText training when embeddings are trained from corpora (``bucket``: n-gram buckets);
    ``copy_overlap``: copy exact canonical matches (off in the paper); ``block_size``: query rows
    per similarity block; ``surface``: how a token is looked up in fastText, ``package`` (the
    published rule, default) or ``boundary`` (see the module docstring)."""

    k: int = 10
    temperature: float = 0.1
    copy_overlap: bool = False
    dim: int = 100
    epochs: int = 10
    min_count: int = 3
    bucket: int = 2_000_000
    block_size: int = 1024
    surface: str = PACKAGE

    def validate(self, resources: TransferResources) -> None:
        if self.surface not in SURFACES:
            raise UserError(f"wechsel: surface={self.surface!r} is not one of {', '.join(SURFACES)}")
        for side in ("source", "target"):
            if not getattr(resources, f"{side}_embeddings") and not getattr(resources, f"{side}_corpus"):
                raise UserError(f"wechsel needs --{side}-embeddings or --{side}-corpus")
        if not resources.dictionary and not resources.parallel:
            raise UserError("wechsel needs --dictionary or --parallel SRC TGT (to induce one with eflomal)")

    def fasttext_options(self) -> FastTextOptions:
        return FastTextOptions(dim=self.dim, epochs=self.epochs, min_count=self.min_count, bucket=self.bucket)


def token_words(token: CanonicalToken) -> list[tuple[str, bool]]:
    """The words of a token's surface as the fastText text was split, each with whether it starts a word.

    A run of word characters keeps the token's boundary when it comes first, and starts a word
    after punctuation or a space; a punctuation character is always a word of its own. Specials,
    byte pieces and partial UTF-8 have no words.
    """
    text = token.raw.decode("utf-8", errors="replace")
    if token.is_special or token.is_byte or "\ufffd" in text:
        return []
    return [(part, index > 0 or token.word_initial or is_punctuation(part))
            for index, part in enumerate(WORD_PATTERN.findall(text))]


def token_vectors(tokens: Sequence[CanonicalToken], vectors: WordVectors) -> torch.Tensor:
    """fastText vector of each token (the mean of its words' vectors); zero rows for tokens without words."""
    words = [token_words(t) for t in tokens]
    owner = torch.tensor([i for i, parts in enumerate(words) for _ in parts], dtype=torch.long)
    flat = [part for parts in words for part in parts]
    if not flat:
        return torch.zeros(len(tokens), vectors.dim)
    part_vectors = vectors.vectors([text for text, _ in flat], [initial for _, initial in flat])
    out = torch.zeros(len(tokens), part_vectors.shape[1]).index_add_(0, owner, part_vectors)
    counts = torch.bincount(owner, minlength=len(tokens)).clamp_min(1)
    return out / counts[:, None]


def decoded_surfaces(tokenizer: Any, count: int) -> list[str]:
    """The package's surface of ids ``0..count-1``: each token decoded alone, stripped."""
    return [tokenizer.decode([i]).strip() for i in range(count)]


def surface_vectors(tokenizer: Any, count: int, tokens: Sequence[CanonicalToken], vectors: WordVectors,
                    surface: str) -> torch.Tensor:
    """fastText vectors of the first ``count`` tokens under the ``surface`` rule (zero rows: none)."""
    if surface == PACKAGE:
        return vectors.vectors(decoded_surfaces(tokenizer, count), lowercase=False)
    return token_vectors(tokens[:count], vectors)


def aligned_token_vectors(ctx: TransferContext, config: WechselConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(source token vectors, target token vectors rotated into the source space, notes)."""
    options = config.fasttext_options()
    source_wv = resolve.word_vectors(ctx.resources, "source", options)
    target_wv = resolve.word_vectors(ctx.resources, "target", options)
    rotation, used = align_spaces(resolve.dictionary(ctx.resources), source_wv, target_wv,
                                  exact_case=config.surface == PACKAGE)
    source = surface_vectors(ctx.source_tokenizer, ctx.source_vocab_size, ctx.source_tokens, source_wv,
                             config.surface)
    target = surface_vectors(ctx.target_tokenizer, ctx.target_vocab_size, ctx.target_tokens, target_wv,
                             config.surface) @ rotation
    return source, target, {"dictionary_pairs_used": used, "fasttext_dim": source_wv.dim}


def neighbour_mapping(target_ids: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor, k: int,
                      temperature: float, block_size: int, device: str = "cpu",
                      zero_keys: bool = False) -> TokenMapping:
    """Top-k softmax neighbours of ``queries[target_ids]`` among the ``keys`` rows (similarities on
    ``device``); zero key rows are candidates (at cosine 0) only with ``zero_keys``."""
    key_ids = torch.arange(len(keys)) if zero_keys else torch.nonzero(keys.abs().sum(dim=1) > 0).squeeze(1)
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
                                ctx.device, zero_keys=config.surface == PACKAGE)
    mapping.notes.update(notes)
    return mapping.copy_overlap(ctx) if config.copy_overlap else mapping
