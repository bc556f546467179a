"""Corpora: streaming readers, cleaning, group splits, multilingual mixing, the offline Bible source."""
from __future__ import annotations

from langgraft.corpora.bible import (
    BIBLE_GENRES,
    BibleBook,
    Verse,
    bible_book,
    bible_books,
    bible_parallel,
    bible_verses,
    demo_split,
    demo_splits,
)
from langgraft.corpora.clean import CleanConfig, Cleaner, CleanStats, clean_documents, normalize_text
from langgraft.corpora.mix import CorpusStream, mix_streams, temperature_probabilities
from langgraft.corpora.prepare import PreparedRecord, prepare_corpus, prepared_pairs, read_prepared
from langgraft.corpora.readers import (
    ConlluToken,
    Record,
    detect_format,
    iter_lines,
    iter_text,
    join_on_id,
    parallel_format,
    read_conllu,
    read_documents,
    read_id_text,
    read_iob,
    read_parallel,
    read_records,
)
from langgraft.corpora.split import SPLITS, assign_splits, hash_split

__all__ = [
    "BIBLE_GENRES",
    "SPLITS",
    "BibleBook",
    "CleanConfig",
    "CleanStats",
    "Cleaner",
    "ConlluToken",
    "CorpusStream",
    "PreparedRecord",
    "Record",
    "Verse",
    "assign_splits",
    "bible_book",
    "bible_books",
    "bible_parallel",
    "bible_verses",
    "clean_documents",
    "demo_split",
    "demo_splits",
    "detect_format",
    "hash_split",
    "iter_lines",
    "iter_text",
    "join_on_id",
    "mix_streams",
    "normalize_text",
    "parallel_format",
    "prepare_corpus",
    "prepared_pairs",
    "read_conllu",
    "read_documents",
    "read_id_text",
    "read_iob",
    "read_parallel",
    "read_prepared",
    "read_records",
    "temperature_probabilities",
]
