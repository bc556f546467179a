"""Document cleaning: Unicode normalization, control characters, whitespace, length filters, exact dedup.

:class:`Cleaner` is stateful only through its dedup set, a :class:`HashSet` of 8-byte hashes
(never the documents), so deduplicating costs 16-32 bytes per distinct document.
Every dropped document is counted in :class:`CleanStats` by the reason it was dropped.
"""
from __future__ import annotations

import array
import dataclasses
import hashlib
import re
import unicodedata
from typing import Iterable, Iterator, Literal

from langgraft.errors import UserError
from langgraft.options import Validated, option

# Control characters (Cc; tab and newline too, since a document is one line) become spaces; invisible
# format characters (Cf: BOM, soft hyphen, bidi marks) are removed, except the zero-width
# (non-)joiners U+200C/U+200D, which several scripts need to spell words correctly.
_KEEP_FORMAT = {"\u200c", "\u200d"}
_WHITESPACE = re.compile(r"\s+")


Normalization = Literal["NFC", "NFKC", "NFD", "NFKD", "none"]


@dataclasses.dataclass
class CleanConfig(Validated):
    """What :class:`Cleaner` keeps (``corpus prepare`` options and the pipeline's ``corpora.clean``)."""

    normalization: Normalization = option("NFC", help="Unicode normalization of every document")
    max_chars: int = option(20_000, help="drop longer documents (0: no limit)", ge=0)
    min_chars: int = option(0, help="drop shorter documents (0: no limit)", ge=0)
    min_words: int = option(0, help="drop documents with fewer words (0: no limit)", ge=0)
    dedup: bool = option(True, help="drop exact duplicates (--no-dedup keeps them)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_chars and self.min_chars > self.max_chars:
            raise UserError(f"min_chars ({self.min_chars}) is larger than max_chars ({self.max_chars})")


@dataclasses.dataclass
class CleanStats:
    """How many documents came in, were kept, and were dropped for each reason."""

    documents_in: int = 0
    kept: int = 0
    empty: int = 0
    too_long: int = 0
    too_short: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _drop_invisible(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cc":
        return " "
    return "" if category == "Cf" and char not in _KEEP_FORMAT else char


def normalize_text(text: str, normalization: str = "NFC") -> str:
    """Normalize, drop control and invisible format characters, collapse whitespace to single spaces."""
    if normalization != "none":
        text = unicodedata.normalize(normalization, text)
    if text.isprintable():  # fast path: no controls, format characters or whitespace but " "
        return _WHITESPACE.sub(" ", text).strip() if "  " in text else text.strip()
    return _WHITESPACE.sub(" ", "".join(map(_drop_invisible, text))).strip()


def text_hash(text: str) -> int:
    """64-bit BLAKE2b digest used for exact dedup (a false duplicate is ~1 in 2**64 per pair)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class HashSet:
    """A set of 64-bit hashes in one flat array (open addressing, linear probing).

    It costs 16-32 bytes per entry where a Python ``set`` of 8-byte ``bytes`` costs about 75,
    which is what keeps corpus-wide dedup small next to the text it scans.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._table = array.array("Q", bytes(8 * capacity))  # capacity is a power of two; 0 = empty
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _slot(self, key: int) -> int:
        table, mask = self._table, len(self._table) - 1
        index = key & mask
        while table[index] and table[index] != key:
            index = (index + 1) & mask
        return index

    def __contains__(self, key: int) -> bool:
        key = key or 1
        return self._table[self._slot(key)] == key

    def add(self, key: int) -> bool:
        """Insert ``key``; False when it was already there."""
        key = key or 1  # 0 marks empty slots; hash 0 shares a slot with hash 1
        index = self._slot(key)
        if self._table[index] == key:
            return False
        self._table[index] = key
        self._size += 1
        if 2 * self._size > len(self._table):
            old = self._table
            self._table = array.array("Q", bytes(16 * len(old)))
            for existing in old:
                if existing:
                    self._table[self._slot(existing)] = existing
        return True


class Cleaner:
    """Cleans one document at a time, remembering hashes of kept documents for dedup."""

    def __init__(self, config: CleanConfig | None = None) -> None:
        self.config = config or CleanConfig()
        self.stats = CleanStats()
        self._seen = HashSet()

    def __call__(self, text: str) -> str | None:
        """The cleaned document, or ``None`` when it is dropped (and counted in :attr:`stats`)."""
        config, stats = self.config, self.stats
        stats.documents_in += 1
        text = normalize_text(text, config.normalization)
        if not text:
            stats.empty += 1
            return None
        if config.max_chars and len(text) > config.max_chars:
            stats.too_long += 1
            return None
        if len(text) < config.min_chars or (config.min_words and len(text.split()) < config.min_words):
            stats.too_short += 1
            return None
        if config.dedup:
            if not self._seen.add(text_hash(text)):
                stats.duplicates += 1
                return None
        stats.kept += 1
        return text


def clean_documents(
    documents: Iterable[str], config: CleanConfig | None = None, stats: CleanStats | None = None
) -> Iterator[str]:
    """Stream the cleaned documents; counts go into ``stats`` when given (read it after iterating)."""
    cleaner = Cleaner(config)
    if stats is not None:
        cleaner.stats = stats
    for document in documents:
        cleaned = cleaner(document)
        if cleaned is not None:
            yield cleaned
