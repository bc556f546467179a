"""Streaming corpus readers: every format yields one document at a time, never a whole file.

Formats (``fmt``), auto-detected from the file name when ``fmt="auto"``:

- ``text``: one document per line (``.txt``, anything unknown), or blank-line separated
  paragraphs with ``paragraphs=True``.
- ``jsonl``: one JSON object per line, the document in ``field`` (``.jsonl``, ``.ndjson``).
- ``tsv``: tab-separated columns, the document in ``column`` (an index, or a header name when the
  first line is a header); by default the last column, so ``id<TAB>text`` files just work.
- ``conllu``: one sentence per document, from ``# text =`` or the joined FORM column.
- ``datasets``: a directory written by ``Dataset.save_to_disk`` or local data files that
  ``datasets.load_dataset`` reads (``.parquet``, ``.arrow``, ``.csv``, ``.json``), streamed.

A ``.gz`` suffix is read through gzip and detected by the suffix before it. Invalid UTF-8 is a
:class:`~langgraft.errors.UserError` naming file and line unless ``on_decode_error`` is
``"skip"`` (drop that line) or ``"replace"`` (U+FFFD for the bad bytes).

Uncompressed one-document-per-line files (``text`` without ``paragraphs``, ``jsonl``, ``tsv``
without a header) can also be read a :class:`LineSpan` at a time (:func:`line_spans`, the
``span`` option): what lets training read a large file in a shuffled order of chunks.
"""
from __future__ import annotations

import gzip
import itertools
import json
import os
import re
from pathlib import Path
from typing import IO, Iterable, Iterator, NamedTuple, TypeVar

from langgraft.corpora.clean import HashSet, text_hash
from langgraft.errors import UserError

FORMATS = ("auto", "text", "jsonl", "tsv", "conllu", "datasets")
DECODE_ERROR_POLICIES = ("fail", "skip", "replace")

_SUFFIX_FORMATS = {
    ".txt": "text", ".text": "text",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".tsv": "tsv", ".tab": "tsv",
    ".conllu": "conllu", ".conll": "conllu",
    ".parquet": "datasets", ".arrow": "datasets", ".csv": "datasets", ".json": "datasets",
}
# load_dataset builder name for local data files, by suffix.
_DATASETS_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json",
                      ".jsonl": "json", ".ndjson": "json", ".txt": "text"}


class Record(NamedTuple):
    """One document and its id (``None`` where the format has no ids)."""

    id: str | None
    text: str


class LineSpan(NamedTuple):
    """Bytes ``[start, end)`` of a file, cut at line starts; ``first_line`` is the 1-based number of its first line."""

    start: int
    end: int
    first_line: int


class ConlluToken(NamedTuple):
    """One syntactic word of a CoNLL-U sentence (multiword ranges and empty nodes excluded)."""

    form: str
    upos: str
    lemma: str
    xpos: str
    feats: str
    head: str
    deprel: str
    misc: str


Item = TypeVar("Item")


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive lists of ``size`` items (the last may be shorter), holding one list at a time."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def detect_format(path: str | os.PathLike) -> str:
    """The reader format for ``path``: a directory is ``datasets``; else by suffix, default ``text``."""
    path = Path(path)
    if path.is_dir():
        return "datasets"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return _SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "", "text")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"input file {path} not found; check the path")
    if path.is_dir():
        raise UserError(f"input {path} is a directory, not a file; pass a file or use format 'datasets'")


def _check_policy(on_decode_error: str) -> None:
    if on_decode_error not in DECODE_ERROR_POLICIES:
        raise UserError(
            f"on_decode_error={on_decode_error!r} is not one of {', '.join(DECODE_ERROR_POLICIES)}"
        )


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def splittable(path: str | os.PathLike, fmt: str = "auto", *, paragraphs: bool = False,
               column: int | str | None = None, id_column: int | str | None = None) -> bool:
    """True when ``path`` can be read in :class:`LineSpan` pieces: an uncompressed file with one
    document per line (a gzip stream cannot seek; paragraphs, CoNLL-U sentences and ``datasets``
    are not lines; a TSV header names columns for the whole file)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() == ".gz":
        return False
    fmt = detect_format(path) if fmt == "auto" else fmt
    header = isinstance(column, str) or isinstance(id_column, str)
    return (fmt == "text" and not paragraphs) or fmt == "jsonl" or (fmt == "tsv" and not header)


def line_spans(path: str | os.PathLike, span_bytes: int) -> list[LineSpan]:
    """Cut an uncompressed file into spans of about ``span_bytes`` bytes, each starting at a line start.

    One sequential pass over the raw bytes (no decoding; memory: one block and the spans): the
    spans start after the first newline of every ``span_bytes`` block, and counting newlines on
    the way numbers their first lines, so errors inside a span still name the file's line.
    """
    path = Path(path)
    _check_file(path)
    if span_bytes <= 0:
        raise ValueError(f"span_bytes must be positive, got {span_bytes}")
    starts = [(0, 1)]
    offset, newlines = 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(span_bytes):
            cut = block.find(b"\n") + 1  # 0: the block is inside one long line, no cut in it
            if offset and cut:
                starts.append((offset + cut, newlines + block.count(b"\n", 0, cut) + 1))
            newlines += block.count(b"\n")
            offset += len(block)
    ends = [start for start, _ in starts[1:]] + [offset]
    return [LineSpan(start, end, first) for (start, first), end in zip(starts, ends) if end > start]


def iter_lines(path: str | os.PathLike, on_decode_error: str = "fail",
               span: LineSpan | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, newline and a leading BOM removed), decoding per line.

    Decoding line by line is what lets a bad byte be reported with its line number while memory
    stays bounded by the longest line. ``span`` (from :func:`line_spans`) reads only its lines.
    """
    path = Path(path)
    _check_policy(on_decode_error)
    _check_file(path)
    try:
        with _open_binary(path) as handle:
            remaining = None
            if span is not None:
                handle.seek(span.start)
                remaining = span.end - span.start
            for number, raw in enumerate(handle, start=1 if span is None else span.first_line):
                if remaining is not None:
                    if remaining <= 0:
                        break
                    remaining -= len(raw)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if on_decode_error == "fail":
                        utf16 = " (it starts with a UTF-16 byte-order mark)" if number == 1 and raw[:2] in (
                            b"\xff\xfe", b"\xfe\xff") else ""
                        raise UserError(
                            f"{path}:{number}: invalid UTF-8{utf16} (byte {exc.start} of the line); re-encode "
                            "the file as UTF-8 or use on_decode_error 'skip' or 'replace' "
                            "(CLI: --on-decode-error)"
                        ) from None
                    if on_decode_error == "skip":
                        continue
                    line = raw.decode("utf-8", errors="replace")
                if number == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                yield number, line.rstrip("\r\n")
    except (gzip.BadGzipFile, EOFError) as exc:
        raise UserError(f"{path}: not a readable gzip file ({exc}); check the file") from None


def iter_text(paths: Iterable[str | os.PathLike], on_decode_error: str = "fail", *, skip_blank: bool = False,
              strip: bool = False) -> Iterator[str]:
    """The lines of every file in ``paths``, in order: the one reader of plain text lines.

    :func:`iter_lines` without the numbers. ``skip_blank`` drops whitespace-only lines; ``strip``
    also strips the surrounding whitespace of the others.
    """
    for path in paths:
        for _, line in iter_lines(path, on_decode_error):
            if (skip_blank or strip) and not line.strip():
                continue
            yield line.strip() if strip else line


def _read_text(path: Path, paragraphs: bool, on_decode_error: str, span: LineSpan | None) -> Iterator[Record]:
    if not paragraphs:
        for _, line in iter_lines(path, on_decode_error, span):
            if line.strip():
                yield Record(None, line)
        return
    paragraph: list[str] = []
    for _, line in iter_lines(path, on_decode_error):
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            yield Record(None, " ".join(paragraph))
            paragraph = []
    if paragraph:
        yield Record(None, " ".join(paragraph))


def _read_jsonl(path: Path, field: str, id_field: str | None, on_decode_error: str,
                span: LineSpan | None) -> Iterator[Record]:
    for number, line in iter_lines(path, on_decode_error, span):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: invalid JSON ({exc.msg}); fix the line") from None
        if not isinstance(record, dict) or field not in record:
            raise UserError(
                f"{path}:{number}: no field {field!r} in this JSON line; choose the text field with "
                "field=... (CLI: --field)"
            )
        value = record[field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise UserError(f"{path}:{number}: field {field!r} is {type(value).__name__}, not a string")
        key = None
        if id_field is not None:
            if record.get(id_field) is None:
                raise UserError(f"{path}:{number}: no id field {id_field!r} in this JSON line (CLI: --id-field)")
            key = str(record[id_field])
        yield Record(key, value)


def _column_index(path: Path, number: int, cells: list[str], column: int | str, what: str) -> int:
    if isinstance(column, int):
        return column
    if column not in cells:
        raise UserError(
            f"{path}:{number}: no {what} {column!r} in the header ({', '.join(cells)}); "
            "pass a header name or a 0-based index"
        )
    return cells.index(column)


def _cell(path: Path, number: int, cells: list[str], index: int) -> str:
    if -len(cells) <= index < len(cells):
        return cells[index]
    raise UserError(f"{path}:{number}: line has {len(cells)} columns, column {index} is missing")


def _read_tsv(
    path: Path, column: int | str | None, id_column: int | str | None, on_decode_error: str, span: LineSpan | None
) -> Iterator[Record]:
    needs_header = isinstance(column, str) or isinstance(id_column, str)
    text_index = -1 if column is None else column
    id_index = id_column
    for number, line in iter_lines(path, on_decode_error, span):
        if not line.strip():
            continue
        cells = line.split("\t")
        if needs_header:
            text_index = _column_index(path, number, cells, text_index, "column")
            if id_index is not None:
                id_index = _column_index(path, number, cells, id_index, "id column")
            needs_header = False
            continue
        key = None if id_index is None else _cell(path, number, cells, id_index)
        yield Record(key, _cell(path, number, cells, text_index))


def _conllu_blocks(path: Path, on_decode_error: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first_line_number, lines)`` for each blank-line separated sentence block."""
    block: list[str] = []
    start = 0
    for number, line in iter_lines(path, on_decode_error):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


# a word (1), a multiword token's range (1-2) or an empty node (0.1, 3.1)
CONLLU_ID = re.compile(r"[1-9][0-9]*(-[1-9][0-9]*)?|(0|[1-9][0-9]*)\.[1-9][0-9]*")


def _token_cells(path: Path, number: int, line: str) -> list[str]:
    cells = line.split("\t")
    if len(cells) != 10:
        raise UserError(
            f"{path}:{number}: CoNLL-U token lines need 10 tab-separated columns, found {len(cells)}"
        )
    if not CONLLU_ID.fullmatch(cells[0]):
        raise UserError(f"{path}:{number}: CoNLL-U token id {cells[0]!r} is not a word id (1), a range (1-2) "
                        "or an empty node (1.1)")
    return cells


def _conllu_text(path: Path, start: int, block: list[str]) -> str:
    """The sentence text: ``# text =`` when present, else surface forms honoring SpaceAfter=No."""
    for line in block:
        if line.startswith("# text ="):
            return line[len("# text ="):].strip()
    pieces: list[str] = []
    covered_until = 0  # last word id covered by a multiword token's surface form
    for offset, line in enumerate(block):
        if line.startswith("#"):
            continue
        cells = _token_cells(path, start + offset, line)
        token_id, form, misc = cells[0], cells[1], cells[9]
        if "." in token_id:
            continue
        if "-" in token_id:
            covered_until = int(token_id.split("-")[1])
        elif int(token_id) <= covered_until:
            continue
        pieces.append(form)
        if "SpaceAfter=No" not in misc.split("|"):
            pieces.append(" ")
    return "".join(pieces).strip()


def read_conllu(path: str | os.PathLike, on_decode_error: str = "fail") -> Iterator[list[ConlluToken]]:
    """Yield each sentence of a CoNLL-U file as its syntactic words (for tagging tasks)."""
    path = Path(path)
    for start, block in _conllu_blocks(path, on_decode_error):
        tokens = []
        for offset, line in enumerate(block):
            if line.startswith("#"):
                continue
            cells = _token_cells(path, start + offset, line)
            if "-" in cells[0] or "." in cells[0]:
                continue
            tokens.append(ConlluToken(cells[1], cells[3], cells[2], cells[4], cells[5], cells[6],
                                      cells[7], cells[9]))
        if tokens:
            yield tokens


def read_iob(path: str | os.PathLike, on_decode_error: str = "fail") -> Iterator[list[tuple[str, str]]]:
    """Yield each sentence of a CoNLL-2003 style IOB file as ``(token, tag)`` pairs.

    One token per line, whitespace-separated columns, the token first and the tag last; blank lines
    end sentences and ``-DOCSTART-`` lines are skipped.
    """
    path = Path(path)
    sentence: list[tuple[str, str]] = []
    for number, line in iter_lines(path, on_decode_error):
        cells = line.split()
        if not cells or cells[0] == "-DOCSTART-":
            if sentence:
                yield sentence
                sentence = []
            continue
        if len(cells) < 2:
            raise UserError(f"{path}:{number}: expected 'token ... TAG' (at least two columns)")
        sentence.append((cells[0], cells[-1]))
    if sentence:
        yield sentence


def _read_conllu_text(path: Path, on_decode_error: str) -> Iterator[Record]:
    for start, block in _conllu_blocks(path, on_decode_error):
        text = _conllu_text(path, start, block)
        if text:
            key = next((line.split("=", 1)[1].strip() for line in block if line.startswith("# sent_id")), None)
            yield Record(key, text)


def _read_datasets(path: Path, field: str, id_field: str | None, split: str | None) -> Iterator[Record]:
    # deferred: keeps datasets, huggingface_hub and pandas off `langgraft --help`
    import datasets

    try:
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                names = list(loaded)
                chosen = split or ("train" if "train" in loaded else names[0] if len(names) == 1 else None)
                if chosen not in loaded:
                    raise UserError(
                        f"{path} holds splits {', '.join(names)}; choose one with split=... "
                        "(CLI: --split)"
                    )
                loaded = loaded[chosen]
        else:
            suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
            builder = _DATASETS_BUILDERS.get(suffixes[-1] if suffixes else "")
            if builder is None:
                raise UserError(
                    f"{path}: format 'datasets' reads a save_to_disk directory or "
                    f"{', '.join(sorted(_DATASETS_BUILDERS))} files"
                )
            loaded = datasets.load_dataset(builder, data_files=str(path), split=split or "train",
                                           streaming=True)
        wanted = [field] if id_field is None else [id_field, field]
        columns = loaded.column_names
        for name in wanted:
            if columns is not None and name not in columns:
                raise UserError(
                    f"{path}: no column {name!r} (columns: {', '.join(columns)}); choose it with "
                    "field=... / id_field=... (CLI: --field / --id-field)"
                )
        for batch in loaded.select_columns(wanted).iter(batch_size=1000):
            keys = batch[id_field] if id_field is not None else [None] * len(batch[field])
            for key, value in zip(keys, batch[field]):
                if isinstance(value, str) and value.strip():
                    yield Record(None if key is None else str(key), value)
    except UserError:
        raise
    except (OSError, ValueError, KeyError, datasets.exceptions.DatasetsError) as exc:
        raise UserError(f"{path}: cannot read as a datasets corpus ({exc})") from None


def read_records(
    path: str | os.PathLike,
    fmt: str = "auto",
    *,
    field: str = "text",
    column: int | str | None = None,
    id_field: str | None = None,
    id_column: int | str | None = None,
    paragraphs: bool = False,
    on_decode_error: str = "fail",
    split: str | None = None,
    span: LineSpan | None = None,
) -> Iterator[Record]:
    """Stream ``Record(id, text)`` for each non-blank document of a corpus file or directory.

    ``field``/``id_field`` name the JSON or ``datasets`` columns of text and id; ``column``/
    ``id_column`` the TSV columns (0-based index, or a header name, which makes the first line a
    header; text defaults to the last column); ``split`` picks a split of a saved ``DatasetDict``.
    CoNLL-U ids come from ``# sent_id``; plain text has no ids. ``span`` (from :func:`line_spans`)
    reads only those lines, for files where :func:`splittable` is true.
    """
    path = Path(path)
    _check_policy(on_decode_error)
    if fmt not in FORMATS:
        raise UserError(f"unknown corpus format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise UserError(f"input file {path} not found; check the path")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt != "datasets":
        _check_file(path)
    if span is not None and not splittable(path, fmt, paragraphs=paragraphs, column=column, id_column=id_column):
        raise ValueError(f"{path} ({fmt}) cannot be read by line spans; check splittable() first")
    if fmt == "text":
        return _read_text(path, paragraphs, on_decode_error, span)
    if fmt == "jsonl":
        return _read_jsonl(path, field, id_field, on_decode_error, span)
    if fmt == "tsv":
        return _read_tsv(path, column, id_column, on_decode_error, span)
    if fmt == "conllu":
        return _read_conllu_text(path, on_decode_error)
    return _read_datasets(path, field, id_field, split)


def read_documents(
    path: str | os.PathLike,
    fmt: str = "auto",
    *,
    field: str = "text",
    column: int | str | None = None,
    paragraphs: bool = False,
    on_decode_error: str = "fail",
    split: str | None = None,
    span: LineSpan | None = None,
) -> Iterator[str]:
    """Stream the text of each non-blank document (see :func:`read_records` for the options)."""
    records = read_records(path, fmt, field=field, column=column, paragraphs=paragraphs,
                           on_decode_error=on_decode_error, split=split, span=span)
    return (record.text for record in records)


def read_id_text(path: str | os.PathLike, on_decode_error: str = "fail") -> Iterator[tuple[str, str]]:
    """Stream ``(id, text)`` from a file of ``id<TAB>text`` or ``id<TAB>...<TAB>text`` lines (blank
    lines skipped): the first column is the id, the last the text, and a first line whose id is
    ``id`` is a header — so the ``id, group, label, text`` tables of ``langgraft corpus prepare``
    read as they are."""
    path = Path(path)
    for number, line in iter_lines(path, on_decode_error):
        if not line.strip():
            continue
        key, tab, rest = line.partition("\t")
        if not tab or not key.strip():
            raise UserError(
                f"{path}:{number}: expected 'id<TAB>text'; give every line an id or use "
                "line-aligned files (fmt='lines')"
            )
        if number == 1 and key.strip() == "id":
            continue
        yield key.strip(), rest.rpartition("\t")[2]


def join_on_id(
    src: Iterable[tuple[str, str]],
    tgt: Iterable[tuple[str, str]],
    src_name: str = "source",
    tgt_name: str = "target",
) -> Iterator[tuple[str, str, str]]:
    """Join two ``(id, text)`` streams on id, yielding ``(id, src_text, tgt_text)``.

    Both sides are read in lockstep and only ids not matched yet are buffered, so files in the same
    order (the usual case) need constant memory; ids present on one side only are dropped.
    Duplicate ids are an error because the pairing would be ambiguous.
    """
    pending = ({}, {})
    seen = (HashSet(), HashSet())
    names = (src_name, tgt_name)
    iterators = [iter(src), iter(tgt)]
    active = [True, True]
    while any(active):
        for side in (0, 1):
            if not active[side]:
                continue
            item = next(iterators[side], None)
            if item is None:
                active[side] = False
                continue
            key, text = item
            if not seen[side].add(text_hash(key)):
                raise UserError(f"{names[side]}: id {key!r} appears twice; ids must be unique to align")
            other = pending[1 - side]
            if key in other:
                other_text = other.pop(key)
                yield (key, text, other_text) if side == 0 else (key, other_text, text)
            else:
                pending[side][key] = text


def _has_ids(path: Path, on_decode_error: str) -> bool:
    for _, line in iter_lines(path, on_decode_error):
        if line.strip():
            return "\t" in line
    return False


def parallel_format(src_path: str | os.PathLike, tgt_path: str | os.PathLike, on_decode_error: str = "fail") -> str:
    """``"ids"`` when the first non-blank line of both files contains a tab, else ``"lines"``."""
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    for path in (src_path, tgt_path):
        _check_file(path)
    return "ids" if _has_ids(src_path, on_decode_error) and _has_ids(tgt_path, on_decode_error) else "lines"


def read_parallel(
    src_path: str | os.PathLike,
    tgt_path: str | os.PathLike,
    fmt: str = "auto",
    *,
    on_decode_error: str = "fail",
) -> Iterator[tuple[str, str, str]]:
    """Stream aligned ``(id, src, tgt)`` pairs from two files.

    ``fmt="ids"``: both files hold ``id<TAB>text`` lines (see :func:`read_id_text`), joined on id
    (see :func:`join_on_id`).
    ``fmt="lines"``: line *i* of one file translates line *i* of the other; the id is the line
    number and the files must have the same number of lines. ``"auto"`` picks ``ids`` when the
    first non-blank line of both files contains a tab.
    """
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    if fmt not in ("auto", "ids", "lines"):
        raise UserError(f"unknown parallel format {fmt!r}; choose auto, ids or lines")
    for path in (src_path, tgt_path):
        _check_file(path)
    if fmt == "auto":
        fmt = parallel_format(src_path, tgt_path, on_decode_error)
    if fmt == "ids":
        return join_on_id(read_id_text(src_path, on_decode_error), read_id_text(tgt_path, on_decode_error),
                          str(src_path), str(tgt_path))
    if on_decode_error == "skip":
        raise UserError("on_decode_error='skip' would misalign line-aligned files; use 'fail' or 'replace'")
    return _read_line_aligned(src_path, tgt_path, on_decode_error)


def _read_line_aligned(src_path: Path, tgt_path: Path, on_decode_error: str) -> Iterator[tuple[str, str, str]]:
    sentinel = (0, None)
    src_lines, tgt_lines = iter_lines(src_path, on_decode_error), iter_lines(tgt_path, on_decode_error)
    while True:
        (number, src), (_, tgt) = next(src_lines, sentinel), next(tgt_lines, sentinel)
        if src is None and tgt is None:
            return
        if src is None or tgt is None:
            shorter = src_path if src is None else tgt_path
            raise UserError(
                f"parallel files are not aligned: {shorter} has fewer lines than the other file; "
                "give one sentence per line on both sides (the same number of lines), or id<TAB>text lines"
            )
        yield str(number), src, tgt
