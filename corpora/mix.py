"""Multilingual mixing with temperature sampling (XLM/mBERT style): p_i proportional to n_i ** alpha.

``alpha = 1`` samples languages in proportion to their data, ``alpha = 0`` uniformly; values in
between (0.3 to 0.7 is usual) up-sample low-resource languages without starving the large ones.
"""
from __future__ import annotations

import itertools
import random
from typing import Iterable, Iterator, Mapping

from langgraft.corpora.readers import read_documents
from langgraft.errors import UserError


def temperature_probabilities(sizes: Mapping[str, float], alpha: float = 0.3) -> dict[str, float]:
    """Sampling probability per stream, ``n_i ** alpha / sum_j n_j ** alpha`` (streams with n=0 get 0)."""
    if not sizes:
        raise UserError("temperature mixing needs at least one stream")
    if not 0 <= alpha <= 1:
        raise UserError(f"mixing alpha must be between 0 and 1, got {alpha}")
    for name, size in sizes.items():
        if size < 0:
            raise UserError(f"stream {name!r} has a negative size {size}")
    weights = {name: (size**alpha if size > 0 else 0.0) for name, size in sizes.items()}
    total = sum(weights.values())
    if total == 0:
        raise UserError("every stream to mix is empty")
    return {name: weight / total for name, weight in weights.items()}


def mix_streams(
    streams: Mapping[str, Iterable[str]],
    alpha: float = 0.3,
    seed: int = 0,
    sizes: Mapping[str, float] | None = None,
    num_samples: int | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield ``(stream_name, document)`` drawn with temperature probabilities, deterministically.

    Each stream must be re-iterable (a list, or an object whose ``__iter__`` re-opens a file, such
    as :class:`CorpusStream`): a stream that runs out is restarted, so small languages are repeated
    (up-sampled) rather than exhausted. ``sizes`` (documents per stream) defaults to counting
    each stream in one streaming pass. Draws ``num_samples`` documents, by default ``sum(sizes)``.
    """
    if sizes is None:
        sizes = {name: sum(1 for _ in stream) for name, stream in streams.items()}
    if set(sizes) != set(streams):
        raise UserError(f"sizes name streams {sorted(sizes)}, but the streams are {sorted(streams)}")
    probabilities = temperature_probabilities(sizes, alpha)
    names = [name for name in streams if probabilities[name] > 0]
    cumulative = list(itertools.accumulate(probabilities[name] for name in names))
    total = int(sum(sizes.values())) if num_samples is None else num_samples
    rng = random.Random(seed)
    iterators = {name: iter(streams[name]) for name in names}
    for _ in range(total):
        name = rng.choices(names, cum_weights=cumulative)[0]
        document = next(iterators[name], None)
        if document is None:  # exhausted: start this stream again
            iterators[name] = iter(streams[name])
            document = next(iterators[name], None)
            if document is None:
                raise UserError(f"stream {name!r} gave no document on a new pass (size {sizes[name]}); pass "
                                "a re-iterable stream (a list or CorpusStream), not a generator")
        yield name, document


class CorpusStream:
    """A re-iterable corpus: every ``iter()`` re-opens the file through :func:`read_documents`."""

    def __init__(self, path, fmt: str = "auto", **read_options) -> None:
        self.path, self.fmt, self.read_options = path, fmt, read_options

    def __iter__(self) -> Iterator[str]:
        return read_documents(self.path, self.fmt, **self.read_options)
