"""``prepare_corpus``: read, clean, dedup and split a corpus into train/dev/test files in one stream.

Output directory (written to a temp directory, then renamed into place):

- ``train.txt``, ``dev.txt``, ``test.txt``: one cleaned document per line.
- ``train.tsv``, ... (when documents have ids, always for the Bible): header ``id group label text``,
  line *i* describing line *i* of the ``.txt`` file; for the Bible ``group`` is the book code and
  ``label`` the genre. :func:`read_prepared` and :func:`prepared_pairs` read them back.
- ``summary.json``: documents, words and characters per split, drops by reason, and the options.

Dedup is exact and corpus-wide, so a text appears in at most one split.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, NamedTuple, Sequence

from langgraft.atomic import atomic_dir
from langgraft.outputs import check_output
from langgraft.corpora.bible import BIBLE_BOOKS, DEMO_SPLIT_RATIOS, DEMO_SPLIT_SEED, bible_language, bible_verses
from langgraft.corpora.clean import CleanConfig, Cleaner
from langgraft.corpora.readers import DECODE_ERROR_POLICIES, FORMATS, iter_lines, join_on_id, read_records
from langgraft.corpora.split import SPLITS, assign_splits, check_ratios, hash_split
from langgraft.errors import UserError
from langgraft.options import Validated, option

GROUP_KEYS = ("document", "file", "id-prefix")
READING, SPLITTING = "reading", "splitting"
CORPUS_SUMMARY_FILE = "summary.json"
_TSV_HEADER = "id\tgroup\tlabel\ttext"


@dataclasses.dataclass
class CorpusOptions(Validated):
    """How corpus files are read and grouped: ``langgraft corpus prepare``'s options, :func:`prepare_corpus`'s
    and the pipeline's ``corpora.target``/``corpora.source`` keys (``langgraft tokenizer`` takes the reading ones)."""

    format: Literal[FORMATS] = option("auto", help="corpus format (default: by suffix)", group=READING)
    field: str = option("text", help="JSONL/datasets text field", group=READING)
    column: int | str | None = option(None, help="TSV text column, index or header name (default: the last)",
                                      group=READING)
    id_field: str | None = option(None, help="JSONL/datasets id field", group=READING)
    id_column: int | str | None = option(None, help="TSV id column, index or header name", group=READING)
    paragraphs: bool = option(False, help="plain text: blank-line separated paragraphs are the documents",
                              group=READING)
    split: str | None = option(None, help="split of a saved DatasetDict (default: train)", group=READING)
    on_decode_error: Literal[DECODE_ERROR_POLICIES] = option(
        "fail", help="invalid UTF-8: stop, skip the line, or replace the bad bytes", group=READING)
    # None (YAML null) means document
    group_key: Literal[GROUP_KEYS] | None = option("document", help="unit kept whole in one split (the Bible: "
                                                   "always book)", group=SPLITTING)
    id_separator: str = option(".", help="id-prefix groups end at this separator", group=SPLITTING)

    def read_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`langgraft.corpora.readers.read_records`."""
        return dict(fmt=self.format, field=self.field, column=self.column, id_field=self.id_field,
                    id_column=self.id_column, paragraphs=self.paragraphs, split=self.split,
                    on_decode_error=self.on_decode_error)


class PreparedRecord(NamedTuple):
    """One line of a prepared ``<split>.tsv``: for the Bible, group = book code and label = genre."""

    id: str
    group: str
    label: str
    text: str


class _Document(NamedTuple):
    id: str | None
    group: str | None  # None: the document is its own group
    label: str
    text: str


@dataclasses.dataclass
class _SplitCounts:
    documents: int = 0
    words: int = 0
    characters: int = 0
    groups: set = dataclasses.field(default_factory=set)

    def add(self, document: _Document, text: str) -> None:
        self.documents += 1
        self.words += len(text.split())
        self.characters += len(text)
        if document.group is not None:
            self.groups.add(document.group)

    def as_dict(self) -> dict:
        counts = {"documents": self.documents, "words": self.words, "characters": self.characters}
        if self.groups:
            counts["groups"] = len(self.groups)
        return counts


def _file_documents(
    inputs: Sequence[Path], group_key: str, id_separator: str, read_options: dict
) -> Iterator[_Document]:
    for index, path in enumerate(inputs):
        for record in read_records(path, **read_options):
            if group_key == "id-prefix":
                if record.id is None:
                    raise UserError(
                        f"{path}: --group-key id-prefix needs document ids; use TSV (--id-column), "
                        "JSONL or datasets (--id-field) or CoNLL-U with sent_id"
                    )
                group = record.id.split(id_separator, 1)[0]
            else:
                group = str(index) if group_key == "file" else None
            yield _Document(record.id, group, "", record.text)


def _bible_documents(lang: str) -> Iterator[_Document]:
    for verse in bible_verses(lang):
        yield _Document(verse.id, verse.book_code, verse.genre, verse.text)


@dataclasses.dataclass
class _Plan:
    """Where the documents come from and which split each group goes to."""

    documents: Callable[[], Iterator[_Document]]  # re-iterable: called once per pass
    assignment: dict[str, str] | None  # group -> split; None: each document by its content hash
    group_key: str
    source: dict
    with_ids: bool


def _bible_plan(lang: str, ratios: tuple[float, float, float], seed: int) -> _Plan:
    assignment = assign_splits([b.code for b in BIBLE_BOOKS], ratios, seed,
                               labels={b.code: b.genre for b in BIBLE_BOOKS})
    return _Plan(lambda: _bible_documents(lang), assignment, "book", {"bible": lang}, with_ids=True)


def _files_plan(
    paths: list[Path], group_key: str, id_separator: str, read_options: dict,
    ratios: tuple[float, float, float], seed: int,
) -> _Plan:
    if group_key not in GROUP_KEYS:
        raise UserError(f"unknown group key {group_key!r}; choose one of {', '.join(GROUP_KEYS)}")
    if group_key == "id-prefix" and read_options["id_column"] is None and read_options["id_field"] is None:
        read_options = {**read_options, "id_column": 0, "id_field": "id"}
    for path in paths:  # fail on a missing file before any work
        read_records(path, **read_options)

    def documents() -> Iterator[_Document]:
        return _file_documents(paths, group_key, id_separator, read_options)

    if group_key == "file":
        assignment = assign_splits([str(index) for index in range(len(paths))], ratios, seed)
    elif group_key == "id-prefix":  # a first pass lists the groups, so the split sizes are exact
        assignment = assign_splits((document.group for document in documents()), ratios, seed)
    else:
        assignment = None
    with_ids = read_options["id_column"] is not None or read_options["id_field"] is not None
    source = {"inputs": [str(path) for path in paths], **read_options}
    return _Plan(documents, assignment, group_key, source, with_ids)


def _write_splits(
    directory: Path, plan: _Plan, cleaner: Cleaner, ratios: tuple[float, float, float], seed: int
) -> dict[str, _SplitCounts]:
    """One streaming pass: clean each document and append it to its split's files."""
    counts = {name: _SplitCounts() for name in SPLITS}
    with contextlib.ExitStack() as stack:
        texts = {name: stack.enter_context(open(directory / f"{name}.txt", "w", encoding="utf-8"))
                 for name in SPLITS}
        tables = {name: stack.enter_context(open(directory / f"{name}.tsv", "w", encoding="utf-8"))
                  for name in SPLITS} if plan.with_ids else {}
        for table in tables.values():
            table.write(_TSV_HEADER + "\n")
        for document in plan.documents():
            text = cleaner(document.text)
            if text is None:
                continue
            name = hash_split(text, ratios, seed) if plan.assignment is None else plan.assignment[document.group]
            texts[name].write(text + "\n")
            if tables:
                row = (_tsv_cell(document.id or ""), _tsv_cell(document.group or ""), document.label, text)
                tables[name].write("\t".join(row) + "\n")
            counts[name].add(document, text)
    return counts


def prepare_corpus(
    inputs: Sequence[str | os.PathLike] = (),
    out: str | os.PathLike | None = None,
    *,
    bible: str | None = None,
    options: CorpusOptions | None = None,
    clean: CleanConfig | None = None,
    ratios: Sequence[float] | None = None,
    seed: int = DEMO_SPLIT_SEED,
    overwrite: bool = False,
    **changes: Any,
) -> dict:
    """Write cleaned ``train/dev/test`` files for ``inputs`` (or the built-in ``bible`` language) to ``out``.

    ``options`` (:class:`CorpusOptions`, its fields also as keywords: ``group_key="file"``) say how
    the files are read and grouped. ``group_key``: ``document`` (the default: each document alone, split by its content hash), ``file`` (each
    input file is one group) or ``id-prefix`` (the id up to the first ``id_separator``, e.g.
    ``GEN`` of ``GEN.1.1``; ids from ``id_column``/``id_field``, default the first TSV column or
    the JSON ``id``). The Bible is always split by whole books, stratified by genre; with the
    default ratios and seed that is exactly :func:`langgraft.corpora.bible.demo_split`.
    Returns the summary also written to ``summary.json``.
    """
    if out is None:
        raise UserError("prepare_corpus needs an output directory: out=DIR (CLI: --out)")
    if bool(inputs) == bool(bible):
        raise UserError("give either input files or the built-in Bible (--bible eng|nya), not both or neither")
    out = Path(out)
    clean = clean or CleanConfig()
    ratios = check_ratios(DEMO_SPLIT_RATIOS if ratios is None else ratios)
    check_output(out, inputs=inputs, overwrite=overwrite)
    options = dataclasses.replace(options or CorpusOptions(), **changes)
    if bible:
        plan = _bible_plan(bible_language(bible), ratios, seed)
    else:
        plan = _files_plan([Path(path) for path in inputs], options.group_key or "document", options.id_separator,
                           options.read_options(), ratios, seed)
    cleaner = Cleaner(clean)
    with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        counts = _write_splits(tmp, plan, cleaner, ratios, seed)
        stats = cleaner.stats
        if stats.kept == 0:
            raise UserError(
                f"no documents left after cleaning {_describe(plan)} ({stats.documents_in} read: "
                f"{stats.empty} empty, {stats.too_long} too long, {stats.too_short} too short, "
                f"{stats.duplicates} duplicates); check the input and the length filters"
            )
        if counts["train"].documents == 0:
            raise UserError(
                f"the train split of {_describe(plan)} is empty (all {stats.kept} documents held out); "
                "give more documents or groups, or a larger train ratio"
            )
        summary = {
            "source": plan.source,
            "group_key": plan.group_key,
            "ratios": dict(zip(SPLITS, ratios)),
            "seed": seed,
            "cleaning": dataclasses.asdict(clean),
            "splits": {name: counts[name].as_dict() for name in SPLITS},
            "documents_in": stats.documents_in,
            "documents_kept": stats.kept,
            "duplicates_dropped": stats.duplicates,
            "dropped": {"empty": stats.empty, "too_long": stats.too_long, "too_short": stats.too_short,
                        "duplicates": stats.duplicates},
            "files": {name: f"{name}.txt" for name in SPLITS}
            | ({f"{name}_ids": f"{name}.tsv" for name in SPLITS} if plan.with_ids else {}),
        }
        (tmp / CORPUS_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _describe(plan: _Plan) -> str:
    return f"the {plan.source['bible']} Bible" if "bible" in plan.source else ", ".join(plan.source["inputs"])


def _tsv_cell(value: str) -> str:
    return " ".join(value.split())  # ids (from JSON, say) must not break the TSV


def read_prepared(corpus_dir: str | os.PathLike, split: str = "train") -> Iterator[PreparedRecord]:
    """Stream the ``<split>.tsv`` records (id, group, label, text) of a prepared corpus directory."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    path = Path(corpus_dir) / f"{split}.tsv"
    if not path.is_file():
        raise UserError(
            f"{path} not found; prepare the corpus with ids (--bible, --group-key id-prefix, "
            "--id-column or --id-field)"
        )
    return _read_prepared_tsv(path)


def _read_prepared_tsv(path: Path) -> Iterator[PreparedRecord]:
    for number, line in iter_lines(path):
        if number == 1:
            if line != _TSV_HEADER:
                raise UserError(f"{path}:1: not a prepared corpus table (header {line!r})")
            continue
        cells = line.split("\t", 3)
        if len(cells) != 4:
            raise UserError(f"{path}:{number}: expected 4 tab-separated columns")
        yield PreparedRecord(*cells)


def prepared_pairs(
    src_dir: str | os.PathLike, tgt_dir: str | os.PathLike, split: str = "train"
) -> Iterator[tuple[str, str, str]]:
    """``(id, src_text, tgt_text)`` for ids present in ``split`` of both prepared corpora."""
    return join_on_id(((r.id, r.text) for r in read_prepared(src_dir, split)),
                      ((r.id, r.text) for r in read_prepared(tgt_dir, split)),
                      str(src_dir), str(tgt_dir))
