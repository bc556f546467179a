"""Embedding initializers for vocabulary transfer, one module per method, found by name.

``langgraft.vocab.init.get_method("fvt")`` returns the method's spec; the engine that applies a
method to a model is :func:`langgraft.vocab.transfer.initialize_embeddings`. The contract for
writing a method is in :mod:`langgraft.vocab.init.base`.
"""
from __future__ import annotations

import importlib
import importlib.util

from langgraft.vocab.init.base import (COPIED, FALLBACK, KIND_NAMES, NEIGHBOURS, MethodConfig, TokenMapping,
                                       TransferContext, TransferResources, config_from_options, get_method,
                                       list_methods, register_method, softmax_topk_weights, topk_similarities)

METHOD_MODULES = ("random", "mean", "fvt", "wechsel", "focus", "ofa", "clp", "transtok")

for _name in METHOD_MODULES:
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}")

__all__ = [
    "COPIED", "FALLBACK", "KIND_NAMES", "NEIGHBOURS", "MethodConfig", "TokenMapping", "TransferContext",
    "TransferResources", "config_from_options", "get_method", "list_methods", "register_method",
    "softmax_topk_weights", "topk_similarities",
]
