"""Word splitting shared by every resource builder, and how resource corpora are read.

One rule everywhere (fastText corpora, dictionaries induced by alignment, alignment tables,
WECHSEL's token surfaces): words are maximal runs of Unicode word characters, and every other
non-space character is a word of its own. So ``"said,"`` gives ``said`` and ``,`` in any script,
and the dictionary entries found by the aligner are the same strings the fastText model was
trained on. Word characters are Unicode's (the ``regex`` module's ``\\w``): letters, digits and
combining marks, so Devanagari ``नमस्ते`` or a decomposed ``é`` stay one word (Python's ``re``
would cut them at every vowel sign or accent).
"""
from __future__ import annotations

import os

import regex

from langgraft.corpora.readers import parallel_format, read_id_text, read_parallel
from langgraft.errors import UserError

WORD_PATTERN = regex.compile(r"\w+|[^\w\s]")
_WORD_CHARACTER = regex.compile(r"\w")
# Resource corpora (fastText, aligners) and pretraining text tolerate stray bad bytes, as they always
# did: a U+FFFD costs those models nothing, while the corpus stage refuses them by default.
RESOURCE_DECODE_ERRORS = "replace"


def split_words(line: str, lowercase: bool = True) -> list[str]:
    """Words of ``line`` (punctuation split off), lowercased unless ``lowercase=False``."""
    return WORD_PATTERN.findall(line.lower() if lowercase else line)


def is_punctuation(word: str) -> bool:
    """True for the one-character non-word "words" :func:`split_words` yields (``,`` ``«`` ``।``)."""
    return _WORD_CHARACTER.match(word) is None


def parallel_sentences(source_path: str | os.PathLike, target_path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Sentence pairs from two files, aligned by line or by id, as the aligner takes them.

    Read by :func:`langgraft.corpora.readers.read_parallel` (id-aligned ``id<TAB>...<TAB>text``
    files such as ``langgraft corpus prepare``'s ``.tsv`` tables, else line-aligned files of the
    same length; bad UTF-8 is replaced, as in every resource corpus). Id-joined pairs come in
    source order; pairs empty on either side are dropped (an aligner cannot use them); no pair at
    all is a :class:`UserError`.
    """
    pairs = list(read_parallel(source_path, target_path, on_decode_error=RESOURCE_DECODE_ERRORS))
    if pairs and parallel_format(source_path, target_path, RESOURCE_DECODE_ERRORS) == "ids":
        order = {key: position for position, (key, _) in
                 enumerate(read_id_text(source_path, on_decode_error=RESOURCE_DECODE_ERRORS))}
        pairs.sort(key=lambda pair: order[pair[0]])
    pairs = [(s, t) for _, s, t in pairs if s.strip() and t.strip()]
    if not pairs:
        raise UserError(f"parallel files {source_path} and {target_path} have no non-empty sentence pair")
    return [s for s, _ in pairs], [t for _, t in pairs]

