"""mean: every new row is the mean source embedding (and mean head row / mean bias)."""
from __future__ import annotations

from dataclasses import dataclass

from langgraft.vocab.init.base import MethodConfig, TokenMapping, TransferContext, register_method


@dataclass
class MeanConfig(MethodConfig):
    """No options."""


@register_method("mean", MeanConfig, description="every new row = mean of the source rows")
def mean_init(config: MeanConfig, ctx: TransferContext) -> TokenMapping:
    return TokenMapping.fallback_only(ctx.new_token_ids, fallback="mean")
