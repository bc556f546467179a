"""Named benchmarks (SIB-200, Belebele, FLORES-200, Tatoeba, WikiANN, UD) for ``langgraft eval --benchmark``.

Each benchmark is one module that registers its :class:`Benchmark` declaration; this edge imports
them. See ``docs/evaluation.md`` (citations, licences, hub names).
"""
from langgraft.eval.benchmarks import belebele, flores200, sib200, tatoeba, ud, wikiann  # noqa: F401 (registration)
from langgraft.eval.benchmarks.base import BENCHMARKS, Benchmark, get_benchmark, prepare_benchmark, register_benchmark

__all__ = ["BENCHMARKS", "Benchmark", "get_benchmark", "prepare_benchmark", "register_benchmark"]
