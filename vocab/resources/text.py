"""Word splitting and corpus streaming shared by every resource builder.

One rule everywhere (fastText corpora, dictionaries induced by alignment, alignment tables,
WECHSEL's token surfaces): words are maximal runs of Unicode word characters, and every other
non-space character is a word of its own. So ``"said,"`` gives ``said`` and ``,`` in any script,
and the dictionary entries found by the aligner are the same strings the fastText model was
trained on. Word characters are Unicode's (the ``regex`` module's ``\w``): letters, digits and
combining marks, so Devanagari ``नमस्ते`` or a decomposed ``é`` stay one word (Python's ``re``
would cut them at every vowel sign or accent).
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Iterable, Iterator

import regex

from langgraft.errors import UserError

WORD_PATTERN = regex.compile(r"\w+|[^\w\s]")
_WORD_CHARACTER = regex.compile(r"\w")


def split_words(line: str, lowercase: bool = True) -> list[str]:
    """Words of ``line`` (punctuation split off), lowercased unless ``lowercase=False``."""
    return WORD_PATTERN.findall(line.lower() if lowercase else line)


def is_punctuation(word: str) -> bool:
    """True for the one-character non-word "words" :func:`split_words` yields (``,`` ``«`` ``।``)."""
    return _WORD_CHARACTER.match(word) is None


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def iter_lines(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Stream the lines of every file in order (``.gz`` read transparently), newline stripped."""
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise UserError(f"corpus file {path} does not exist; pass an existing text file")
        with _open_text(path) as handle:
            for line in handle:
                yield line.rstrip("\n")


def read_parallel(source_path: str | os.PathLike, target_path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Sentence pairs from two files, aligned by line or by id.

    Id-aligned files have ``id<TAB>...<TAB>text`` on every line (first column the id, last the
    text; a first line whose id is ``id`` is a header), as ``langgraft corpus prepare`` writes
    its ``.tsv`` files; pairs are the ids present on both sides, in source order. Otherwise the
    files must have the same number of lines. Pairs empty on either side are dropped (an aligner
    cannot use them); no pair at all is a :class:`UserError`.
    """
    source = list(iter_lines([source_path]))
    target = list(iter_lines([target_path]))
    if _is_id_aligned(source) and _is_id_aligned(target):
        by_id = dict(_id_and_text(line) for line in target)
        pairs = [(text, by_id[key]) for key, text in map(_id_and_text, source) if key in by_id and key != "id"]
    elif len(source) != len(target):
        raise UserError(
            f"parallel files are not aligned: {source_path} has {len(source)} lines, {target_path} "
            f"has {len(target)}; give one sentence per line on both sides, or id<TAB>text lines"
        )
    else:
        pairs = list(zip(source, target))
    pairs = [(s, t) for s, t in pairs if s.strip() and t.strip()]
    if not pairs:
        raise UserError(f"parallel files {source_path} and {target_path} have no non-empty sentence pair")
    return [s for s, _ in pairs], [t for _, t in pairs]


def _id_and_text(line: str) -> tuple[str, str]:
    fields = line.split("\t")
    return fields[0], fields[-1]


def _is_id_aligned(lines: list[str]) -> bool:
    return bool(lines) and all("\t" in line for line in lines if line)
