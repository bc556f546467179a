"""langgraft: graft a new language onto a pretrained language model.

Stages live in sub-packages: ``langgraft.corpora``, ``langgraft.vocab``, ``langgraft.adapt``,
``langgraft.adapters`` and ``langgraft.eval``. Heavy imports (torch, transformers) happen only
when a stage is used, so ``import langgraft`` and ``langgraft --help`` stay fast.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Pipeline", "UserError", "__version__"]

from langgraft.errors import UserError


def __getattr__(name: str) -> Any:
    if name == "Pipeline":
        # deferred: the top layer, loaded on first use of langgraft.Pipeline; `import langgraft` stays light
        from langgraft.adapt.pipeline.runner import Pipeline

        return Pipeline
    raise AttributeError(f"module 'langgraft' has no attribute {name!r}")
