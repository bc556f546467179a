"""Teacher-trained embeddings: distill the frozen source model into the new rows of an initialized model.

``distill_embeddings(model, teacher, options=DistillOptions(...), training=distill_training(...),
corpus=[...] | parallel=(src, tgt), out=...)``; ``langgraft distill`` on the command line; the
``distill:`` section of a pipeline. See docs/distillation.md.

``from langgraft.vocab.distill import DistillOptions`` does not import torch (the CLI builds its
arguments from it); the other names load their module on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from .options import DISTILL_LEARNING_RATE, TRAINING_DEFAULTS, DistillOptions

_LAZY = {name: "run" for name in ("distill_embeddings", "distill_training", "read_init_record", "DistillResult",
                                  "InitRecord", "DISTILL_FILE")}

__all__ = ["DistillOptions", "DISTILL_LEARNING_RATE", "TRAINING_DEFAULTS", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
