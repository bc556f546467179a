"""Deterministic train/dev/test splits of whole groups (books, documents), optionally stratified.

A group's place in the split depends only on its key, the seed and (with labels) the other groups
of its label, never on file order, so re-running gives the same split and every document of a
group lands in one split: held-out text is never seen in training.
"""
from __future__ import annotations

import functools
import hashlib
import math
from collections import defaultdict
from typing import Hashable, Iterable, Mapping, Sequence

from langgraft.errors import UserError

SPLITS = ("train", "dev", "test")


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/dev/test ratios (non-negative, train > 0) and scale them to sum to 1."""
    if len(ratios) != 3:
        raise UserError(f"split ratios need three numbers (train dev test), got {list(ratios)}")
    if not all(isinstance(r, (int, float)) and math.isfinite(r) for r in ratios) or any(r < 0 for r in ratios) \
            or ratios[0] <= 0:
        raise UserError(f"split ratios must be finite numbers >= 0 with train > 0, got {list(ratios)}")
    total = float(sum(ratios))
    return tuple(r / total for r in ratios)  # type: ignore[return-value]


_checked_ratios = functools.lru_cache(maxsize=16)(check_ratios)  # hash_split runs once per document


def group_hash(group: Hashable, seed: int) -> int:
    """A stable 64-bit hash of ``(seed, group)`` (Python's ``hash`` is salted per process)."""
    digest = hashlib.blake2b(f"{seed}\x00{group}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hash_split(group: Hashable, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> str:
    """The split of one group from its hash alone: for streams whose groups are not known in advance.

    Split sizes match ``ratios`` only on average; :func:`assign_splits` is exact when the groups
    can be listed first.
    """
    train, dev, _ = _checked_ratios(tuple(ratios))
    position = group_hash(group, seed) / 2**64
    return "train" if position < train else "dev" if position < train + dev else "test"


def _counts(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Groups per split for one label: rounded ratios, then >=1 train and held-out groups when possible."""
    _, dev_ratio, test_ratio = ratios
    n_test, n_dev = round(n * test_ratio), round(n * dev_ratio)
    while n_test + n_dev > max(n - 1, 0):  # keep at least one training group
        if n_dev >= n_test and n_dev:
            n_dev -= 1
        else:
            n_test -= 1
    if test_ratio and not n_test and n - n_dev >= 2:
        n_test = 1
    if dev_ratio and not n_dev and n - n_test >= 2:
        n_dev = 1
    return n - n_dev - n_test, n_dev, n_test


def assign_splits(
    groups: Iterable[Hashable],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    labels: Mapping[Hashable, Hashable] | None = None,
) -> dict[Hashable, str]:
    """Map each distinct group to ``"train"``, ``"dev"`` or ``"test"``.

    Groups are ordered by their seeded hash and dealt out in exact proportions. With ``labels``
    (group -> label, e.g. book -> genre) this is done per label, so every label with at least two
    groups keeps a training group and also gets a test group (then a dev group) even where its
    share would round to zero; a label with a single group goes to train.
    """
    ratios = check_ratios(ratios)
    by_label: dict[Hashable, list[Hashable]] = defaultdict(list)
    for group in dict.fromkeys(groups):
        if labels is not None and group not in labels:
            raise UserError(f"group {group!r} has no label; give every group a label to stratify")
        by_label[None if labels is None else labels[group]].append(group)
    assignment: dict[Hashable, str] = {}
    for members in by_label.values():
        members.sort(key=lambda group: (group_hash(group, seed), str(group)))
        n_train, n_dev, _ = _counts(len(members), ratios)
        for index, group in enumerate(members):
            assignment[group] = "train" if index < n_train else "dev" if index < n_train + n_dev else "test"
    return assignment
