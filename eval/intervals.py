"""Bootstrap 95% intervals over examples, and mean ± sd over training seeds.

Every score langgraft reports is a statistic of per-example numbers (correct or not, true
positives per sentence, bits per document). Resampling the examples with replacement ``B`` times
and taking the 2.5th and 97.5th percentiles of the recomputed score gives a percentile bootstrap
interval (Efron & Tibshirani 1993): how much the score would move on another test set of the same
size drawn from the same distribution. The draws come from ``numpy.random.default_rng(seed)``, so
an interval is reproducible, and are vectorised: one ``(B, n)`` index matrix per block of
resamples, memory ``block x n``.

Three shapes of statistic cover the evaluators:

- :func:`mean_interval`: a mean of per-example values (accuracy, retrieval top-k hits, lm-eval's
  per-sample scores);
- :func:`ratio_interval`: ``sum(numerator) / sum(denominator)`` over resampled units (bits per
  character over documents, entity F1 = 2 TP / (predicted + gold) over sentences);
- :func:`macro_f1_interval`: macro-F1 recomputed from a confusion matrix per resample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from langgraft.options import Validated, option

_BLOCK_CELLS = 1 << 24  # resample indices held at once (block x n), ~128 MiB of int64


@dataclass
class IntervalOptions(Validated):
    """How score intervals are drawn (``langgraft eval`` options and evaluator keywords)."""

    bootstrap: int = option(1000, help="bootstrap resamples per score for its 95%% interval (0: no intervals)",
                            ge=0, le=1 << 20)
    bootstrap_seed: int = option(0, help="seed of the bootstrap resamples", ge=0, le=2**32 - 1)


def _resampled(n: int, resamples: int, seed: int, statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``statistic(indices)`` for ``resamples`` index rows of length ``n``, drawn in memory-bounded blocks."""
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // max(n, 1))
    values = [statistic(rng.integers(0, n, size=(min(block, resamples - start), n)))
              for start in range(0, resamples, block)]
    return np.concatenate(values)


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def mean_interval(values: Sequence[float] | np.ndarray, resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (None for fewer than 2 values or no resamples)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < 2 or resamples < 1:
        return None
    return _percentiles(_resampled(values.size, resamples, seed, lambda idx: values[idx].mean(axis=1)), level)


def ratio_interval(numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray,
                   resamples: int = 1000, seed: int = 0, level: float = 0.95) -> list[float] | None:
    """Interval of ``sum(numerator) / sum(denominator)`` when whole units (documents, sentences) are resampled.

    A resample whose denominator sums to 0 has no value and is left out of the percentiles.
    """
    numerator = np.asarray(numerator, dtype=np.float64).ravel()
    denominator = np.asarray(denominator, dtype=np.float64).ravel()
    if numerator.shape != denominator.shape:
        raise ValueError(f"numerator and denominator differ in length: {numerator.shape} vs {denominator.shape}")
    if numerator.size < 2 or resamples < 1:
        return None

    def statistic(idx: np.ndarray) -> np.ndarray:
        top, bottom = numerator[idx].sum(axis=1), denominator[idx].sum(axis=1)
        return np.divide(top, bottom, out=np.full_like(top, np.nan), where=bottom > 0)

    values = _resampled(numerator.size, resamples, seed, statistic)
    return _percentiles(values, level) if np.isfinite(values).any() else None


def macro_f1_interval(gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray, resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> list[float] | None:
    """Interval of macro-F1 (classes seen in gold or predictions *of each resample*, as the point estimate)."""
    gold = np.asarray(gold, dtype=np.int64).ravel()
    pred = np.asarray(pred, dtype=np.int64).ravel()
    if gold.size < 2 or resamples < 1:
        return None
    classes = np.union1d(gold, pred)
    size = len(classes)
    cell = np.searchsorted(classes, gold) * size + np.searchsorted(classes, pred)

    def statistic(idx: np.ndarray) -> np.ndarray:
        rows = idx.shape[0]
        offsets = np.arange(rows, dtype=np.int64)[:, None] * size * size
        confusion = np.bincount((cell[idx] + offsets).ravel(), minlength=rows * size * size)
        confusion = confusion.reshape(rows, size, size).astype(np.float64)
        true_pos = np.diagonal(confusion, axis1=1, axis2=2)
        denominator = confusion.sum(axis=1) + confusion.sum(axis=2)
        f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
        present = denominator > 0  # a class absent from a resample's gold and predictions is not averaged
        return f1.sum(axis=1) / present.sum(axis=1)

    return _percentiles(_resampled(gold.size, resamples, seed, statistic), level)


def seed_summary(per_seed: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (ddof=1) of every numeric metric all seeds' results share.

    Counts equal in every seed (``examples``) stay integers and get no sd.
    """
    mean: dict[str, float] = {}
    sd: dict[str, float] = {}
    for key, first in per_seed[0].items():
        values = [m.get(key) for m in per_seed]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        if all(isinstance(v, int) for v in values) and len(set(values)) == 1:
            mean[key] = first
            continue
        array = np.asarray(values, dtype=np.float64)
        mean[key] = float(array.mean())
        sd[key] = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return mean, sd
