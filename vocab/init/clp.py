"""CLP-Transfer (Ostendorff & Rehm, 2023): neighbours found in a helper model's embedding space.

A small helper model already uses the target tokenizer. Tokens that also exist in the source
vocabulary are copied; every other token is a weighted average of the source rows of the
overlapping tokens, weighted by cosine similarity in the helper's input-embedding space.
Unlike the published code, negative similarities are dropped (so the normalizer cannot blow up),
only the ``top_k`` most similar overlapping tokens are kept (memory and provenance stay bounded),
and the weights are float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from langgraft.errors import UserError
from langgraft.vocab.checkpoint import read_input_embeddings
from langgraft.vocab.init.base import (MethodConfig, TokenMapping, TransferContext, TransferResources,
                                       register_method, topk_similarities)


@dataclass
class CLPConfig(MethodConfig):
    """``top_k``: overlapping tokens kept per new token (0 = all, as in the paper);
    ``block_size``: query rows per similarity block."""

    top_k: int = 100
    block_size: int = 4096

    def validate(self, resources: TransferResources) -> None:
        if not resources.helper:
            raise UserError("clp needs --helper MODEL: a small model that already uses the target tokenizer")


def helper_embeddings(ctx: TransferContext) -> tuple[torch.Tensor, bool]:
    """The helper's input embeddings (read alone from its checkpoint when the stored names allow;
    ``True`` second when the whole helper had to be loaded); must cover the target vocabulary."""
    table, whole = read_input_embeddings(ctx.resources.helper)
    table = table.float()
    if table.shape[0] < ctx.target_vocab_size:
        raise UserError(f"--helper {ctx.resources.helper} has {table.shape[0]} embedding rows but the target "
                        f"tokenizer has {ctx.target_vocab_size} tokens; the helper must use the target tokenizer")
    return table, whole


@register_method("clp", CLPConfig, description="similarity-weighted overlap rows, similarities from a helper model")
def clp(config: CLPConfig, ctx: TransferContext) -> TokenMapping:
    helper, whole_helper_loaded = helper_embeddings(ctx)
    overlap = ctx.overlap.clone()
    overlap[list(ctx.target_special_ids)] = -1
    anchors = torch.nonzero(overlap >= 0).squeeze(1)  # target ids with an exact source match
    if len(anchors) == 0:
        raise UserError("clp: the source and target tokenizers share no token; use fvt, wechsel or focus instead")
    k = len(anchors) if config.top_k <= 0 else config.top_k
    sims, idx = topk_similarities(helper[ctx.new_token_ids], helper[anchors], k, block_size=config.block_size,
                                  device=ctx.device)
    sims = sims.clamp_min(0.0)
    weights = sims / sims.sum(dim=1, keepdim=True).clamp_min(1e-12)
    mapping = TokenMapping.from_neighbours(ctx.new_token_ids, overlap[anchors][idx], weights)
    mapping.notes["overlapping_tokens"] = len(anchors)
    mapping.notes["helper_read"] = "whole model loaded" if whole_helper_loaded else "input embeddings only"
    return mapping.copy_overlap(ctx)
