"""random: every new row drawn from N(mean, std) of the source embeddings, per dimension.

The baseline every other method must beat, and the fallback they all share.
"""
from __future__ import annotations

from dataclasses import dataclass

from langgraft.vocab.init.base import MethodConfig, TokenMapping, TransferContext, register_method


@dataclass
class RandomConfig(MethodConfig):
    """No options: the seed comes from ``--seed``."""


@register_method("random", RandomConfig, description="rows ~ N(mean, std) of the source embeddings per dimension")
def random_init(config: RandomConfig, ctx: TransferContext) -> TokenMapping:
    return TokenMapping.fallback_only(ctx.new_token_ids, fallback="random")
