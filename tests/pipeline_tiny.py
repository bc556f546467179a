"""A tiny per-language pipeline config over the test fixtures (shared by the pipeline/publish tests)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_pipeline(model: Path, source_corpus: Path, target_corpus: Path, out: Path, **sections: Any) -> dict:
    """Tiny BERT -> synthetic target language: every stage with budgets of a few steps."""
    config = {
        "language": "xx",
        "source_model": str(model),
        "output": str(out / "runs"),
        "corpora": {"target": {"files": [str(target_corpus)]}, "source": {"files": [str(source_corpus)]}},
        "tokenizer": {"mode": "train", "vocab_size": 200},
        "init": {"method": "auto", "candidates": ["random", "mean", "fvt"], "dev_documents": 30},
        "pretrain": {"max_steps": 6, "embedding_steps": 4, "per_device_train_batch_size": 4, "max_seq_length": 32,
                     "save_steps": 2, "eval_steps": 3, "logging_steps": 1, "eval_documents": 20},
        "evaluation": {"max_documents": 30},
        "publish": {"out": str(out / "published")},
    }
    config.update(sections)
    return config
