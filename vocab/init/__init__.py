"""Embedding initializers for vocabulary transfer, one module per method, found by name.

``langgraft.vocab.init.get_method("fvt")`` returns the method's spec; the engine that applies a
method to a model is :func:`langgraft.vocab.transfer.initialize_embeddings`. The contract for
writing a method is in :mod:`langgraft.vocab.init.base`. Adding a method: one new module in this
folder that calls :func:`register_method`, and its name in the import line below.
"""
from __future__ import annotations

from langgraft.vocab.init.base import (COPIED, FALLBACK, KIND_NAMES, NEIGHBOURS, MethodConfig, TokenMapping,
                                       TransferContext, TransferResources, config_from_options, get_method,
                                       list_methods, register_method, softmax_topk_weights, topk_similarities)

# The edge: each method module registers itself when imported; base.py never imports a method.
from langgraft.vocab.init import clp, focus, fvt, mean, ofa, random, transtok, wechsel  # noqa: F401,E402

__all__ = [
    "COPIED", "FALLBACK", "KIND_NAMES", "NEIGHBOURS", "MethodConfig", "TokenMapping", "TransferContext",
    "TransferResources", "config_from_options", "get_method", "list_methods", "register_method",
    "softmax_topk_weights", "topk_similarities",
]
