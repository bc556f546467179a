"""Offline resources for vocabulary transfer, each usable on its own.

- :mod:`~langgraft.vocab.resources.fasttext`: train/load fastText (word- or token-level).
- :mod:`~langgraft.vocab.resources.dictionary`: read TSV/MUSE/FreeDict dictionaries, write TSV.
- :mod:`~langgraft.vocab.resources.align`: eflomal word alignment, induced dictionaries, token
  alignment tables (trans-tokenization).
- :mod:`~langgraft.vocab.resources.procrustes`: orthogonal Procrustes on dictionary pairs.
- :mod:`~langgraft.vocab.resources.resolve`: what ``langgraft init`` uses to load or build them.

Everything heavy (torch, fasttext, eflomal) is imported on first use.
"""
from __future__ import annotations

from langgraft.lazy import lazy_exports

_EXPORTS = {
    "train_fasttext": "fasttext", "train_token_fasttext": "fasttext", "load_fasttext": "fasttext",
    "WordVectors": "fasttext", "FastTextOptions": "fasttext",
    "read_dictionary": "dictionary", "write_dictionary": "dictionary",
    "align_words": "align", "induce_dictionary": "align", "token_alignment_counts": "align",
    "write_token_table": "align", "read_token_table": "align", "WordAlignment": "align",
    "align_spaces": "procrustes", "fit_procrustes": "procrustes",
    "parallel_sentences": "text", "split_words": "text",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
