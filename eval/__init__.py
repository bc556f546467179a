"""Evaluation: bits per character, tokenizer fertility, zero-shot tasks and named benchmarks, sentence retrieval,
reports, bootstrap intervals, seed sets, and the lm-eval / MTEB harnesses.

    from langgraft.eval import evaluate, write_report
    run = evaluate("adapted-model", ["genre=seq-cls:genre.tsv", "retrieval:en.txt,ny.txt", "bpc:dev.txt"],
                   modules=["ny-lang", "genre-task"], source_model="english-model")
    write_report([run], "report/")

See ``docs/evaluation.md``.
"""
from __future__ import annotations

from langgraft.lazy import lazy_exports

_API = {
    "evaluate": "harness", "TaskSpec": "harness", "TASKS": "harness", "ModelSource": "harness",
    "evaluate_sequence_classification": "tasks", "evaluate_token_classification": "tasks",
    "classification_metrics": "tasks", "entity_metrics": "tasks",
    "evaluate_multiple_choice": "tasks", "evaluate_choice_likelihood": "tasks",
    "BENCHMARKS": "benchmarks", "prepare_benchmark": "benchmarks",
    "evaluate_retrieval": "retrieval", "mean_pooled_embeddings": "retrieval", "retrieval_accuracy": "retrieval",
    "compute_bpc": "bpc", "BpcResult": "bpc",
    "write_report": "report", "load_runs": "report", "to_rows": "report",
    "mean_interval": "intervals", "ratio_interval": "intervals", "macro_f1_interval": "intervals",
    "run_harness": "external", "HarnessOptions": "external",
}

__all__ = sorted(_API)
__getattr__ = lazy_exports(__name__, _API)  # so ``import langgraft.eval`` stays free of torch until used
