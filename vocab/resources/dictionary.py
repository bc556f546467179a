"""Bilingual dictionaries: read TSV, MUSE and FreeDict (dictd) files; write TSV.

A dictionary is a list of ``(source_word, target_word)`` pairs, source = the pretrained model's
language. Formats (``format="auto"`` picks by file name and content):

- ``tsv``: ``source<TAB>target`` per line (WECHSEL's format; extra columns ignored).
- ``muse``: ``source target`` separated by whitespace (MUSE/fastText ground-truth files).
- ``dictd``: a FreeDict/dictd database, ``NAME.index`` + ``NAME.dict`` or ``NAME.dict.dz`` (what
  Debian's ``dict-freedict-*`` packages install in ``/usr/share/dictd``); give either file or
  the common prefix. Each entry's first line is the headword (pronunciation and part of speech
  follow it); each following line lists translations, optionally numbered ``1.``, separated by
  ``,`` or ``;``. Parenthesized notes are removed; example lines (with quotes) are skipped.
  FreeDict databases are named ``freedict-SRC-TGT``: headword = source side.
"""
from __future__ import annotations

import gzip
import itertools
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

from langgraft.atomic import atomic_file
from langgraft.corpora.readers import iter_lines
from langgraft.errors import UserError
from langgraft.vocab.resources.text import RESOURCE_DECODE_ERRORS

Pair = tuple[str, str]
DICTD_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NUMBERING = re.compile(r"^\s*\d+\.\s*")
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>")
_PRONUNCIATION = re.compile(r"\s*/[^/]*/.*$")


def read_dictionary(path: str | os.PathLike, format: str = "auto") -> list[Pair]:
    """Pairs of a dictionary file, in file order, without exact duplicates."""
    path = Path(path)
    kind = _detect_format(path) if format == "auto" else format
    readers = {"tsv": _read_tsv, "muse": _read_muse, "dictd": _read_dictd}
    if kind not in readers:
        raise UserError(f"unknown dictionary format {format!r}; use one of auto, {', '.join(readers)}")
    pairs = list(dict.fromkeys(readers[kind](path)))
    if not pairs:
        raise UserError(f"dictionary {path} has no word pair (format {kind}); expected source<TAB>target lines")
    return pairs


def write_dictionary(pairs: Iterable[Pair], path: str | os.PathLike) -> int:
    """Write ``source<TAB>target`` lines atomically; return the number of pairs written."""
    count = 0
    with atomic_file(path) as handle:
        for source, target in pairs:
            handle.write(f"{source}\t{target}\n")
            count += 1
    return count


def _dictd_files(path: Path) -> tuple[Path, Path] | None:
    name = str(path)
    for suffix in (".index", ".dict.dz", ".dict"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    index = Path(name + ".index")
    for data in (Path(name + ".dict.dz"), Path(name + ".dict")):
        if index.is_file() and data.is_file():
            return index, data
    return None


def _detect_format(path: Path) -> str:
    if _dictd_files(path) is not None:
        return "dictd"
    if not path.is_file():
        raise UserError(f"dictionary {path} does not exist; give a TSV/MUSE file or a dictd .index/.dict(.dz) pair")
    head = [line for _, line in itertools.islice(iter_lines(path, RESOURCE_DECODE_ERRORS), 50) if line.strip()]
    return "tsv" if any("\t" in line for line in head) else "muse"


def _read_tsv(path: Path) -> Iterator[Pair]:
    for _, line in iter_lines(path, RESOURCE_DECODE_ERRORS):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) >= 2 and fields[0] and fields[1]:
            yield fields[0], fields[1]


def _read_muse(path: Path) -> Iterator[Pair]:
    for _, line in iter_lines(path, RESOURCE_DECODE_ERRORS):
        fields = line.split()
        if len(fields) == 2:
            yield fields[0], fields[1]


def decode_dictd_number(text: str) -> int:
    """dictd's base-64 numbers (offsets and lengths in ``.index`` files): big-endian digits."""
    value = 0
    for char in text:
        value = value * 64 + DICTD_BASE64.index(char)
    return value


def _read_dictd(path: Path) -> Iterator[Pair]:
    files = _dictd_files(path)
    if files is None:
        raise UserError(f"dictd dictionary {path}: need both NAME.index and NAME.dict(.dz) beside each other")
    index_path, data_path = files
    opener = gzip.open if data_path.suffix == ".dz" else open  # dictzip is gzip-compatible
    with opener(data_path, "rb") as handle:
        data = handle.read()
    for _, line in iter_lines(index_path, RESOURCE_DECODE_ERRORS):
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith("00database") or fields[0].startswith("00-database"):
            continue
        start, length = decode_dictd_number(fields[1]), decode_dictd_number(fields[2])
        entry = data[start:start + length].decode("utf-8", errors="replace")
        yield from _dictd_entry_pairs(fields[0], entry)


def _dictd_entry_pairs(headword: str, entry: str) -> Iterator[Pair]:
    lines = entry.strip("\n").split("\n")
    source = headword.strip()
    for line in lines[1:]:
        if '"' in line or not line.strip():
            continue
        line = _PARENTHESES.sub("", _NUMBERING.sub("", line))
        for candidate in re.split(r"[,;]", line):
            target = _PRONUNCIATION.sub("", candidate).strip()
            if target and source:
                yield source, target
