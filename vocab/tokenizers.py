"""Train or extend a target-language tokenizer in the source tokenizer's own family.

A target tokenizer only drops into a source model if it keeps the source's text pipeline
(normalizer and casing, pre-tokenizer, post-processor, decoder) and its special tokens with the
same strings and roles. ``train_tokenizer`` therefore trains the source's own `tokenizers`
pipeline with an emptied model and avoids what ``train_new_from_iterator`` gets wrong:
SentencePiece BPE merging across words, lost ``<0xNN>`` byte-fallback pieces, stale padding ids,
post-processors nested in a sequence, and ids that change from run to run.
``extend_tokenizer`` appends target pieces to the source's own model vocabulary (never as
AddedTokens, which would bypass word-internal segmentation; for BPE by continued training, so
every new merge can fire) and keeps every existing id; given a
source-language sample it also keeps that sample's tokenization exactly (:class:`SourceGuard`).

Families (:data:`~langgraft.vocab.canonical.FAMILIES`): WordPiece (BERT, ``##`` continuation), byte-level BPE (GPT-2,
RoBERTa, ``Ġ`` word start), SentencePiece Unigram (XLM-R, T5, ``▁`` word start) and
SentencePiece BPE (Llama-style, ``▁`` word start, optional byte fallback).
"""
from __future__ import annotations

import copy
import heapq
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from langgraft.atomic import atomic_dir, atomic_file
from langgraft.corpora.readers import batched, read_documents
from langgraft.errors import UserError
from langgraft.outputs import check_output
from langgraft.models import load_tokenizer
from langgraft.options import Validated, option
from langgraft.sidecars import read_sidecar
from langgraft.vocab.canonical import BYTE_PIECE, FAMILIES, TokenizerFamily, backend_json, detect_family

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EXTENSION_FILE = "langgraft_extension.json"
BYTE_PIECES = tuple(f"<0x{value:02X}>" for value in range(256))


class _AlphabetTooLarge(UserError):
    """The requested vocabulary cannot hold the special tokens plus the corpus alphabet."""


# 4M pieces is 16x Gemma's 262k vocabulary; beyond it the trainers only exhaust memory (5e9 aborts in Rust)
MAX_VOCAB_SIZE = 1 << 22


@dataclass
class TokenizerOptions(Validated):
    """How big a trained or extended vocabulary is (``tokenizer train|extend`` and the Python API)."""

    vocab_size: int | None = option(None, help="train: size of the new vocabulary; extend: grow the vocabulary "
                                               "to this total size", ge=1, le=MAX_VOCAB_SIZE)
    new_tokens: int | None = option(None, help="extend: number of pieces to add", ge=1, le=MAX_VOCAB_SIZE)
    min_frequency: int = option(2, help="minimum pair frequency for WordPiece/BPE merges", ge=0, le=2**31 - 1)


def trainable_family(tokenizer: PreTrainedTokenizerBase) -> TokenizerFamily:
    """The tokenizer's family (:func:`~langgraft.vocab.canonical.detect_family`); a UserError if it cannot be trained."""
    family = detect_family(tokenizer)
    if family.name not in FAMILIES:
        raise UserError(
            f"tokenizer {tokenizer.name_or_path!r} is a {family.model} model this tool cannot train; "
            f"supported families: {', '.join(FAMILIES)}"
        )
    return family


def as_tokenizer(source: str | os.PathLike | PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A loaded tokenizer for a hub name, local directory, alias (``minilm``) or tokenizer object."""
    if isinstance(source, (str, os.PathLike)):
        return load_tokenizer(source)
    return source


def iter_batches(
    corpus_files: Sequence[str | os.PathLike],
    *,
    fmt: str = "auto",
    on_decode_error: str = "fail",
    batch_size: int = 1000,
    **reader_options: Any,
) -> Iterator[list[str]]:
    """Stream the documents of several corpus files in lists of ``batch_size`` (batch encoding)."""

    if not corpus_files:
        raise UserError("no corpus file given; pass at least one --corpus FILE")
    readers = [read_documents(path, fmt, on_decode_error=on_decode_error, **reader_options) for path in corpus_files]
    yield from batched(itertools.chain.from_iterable(readers), batch_size)


def nonempty_batches(corpus_files: Sequence[str | os.PathLike], **options: Any) -> Iterator[list[str]]:
    """:func:`iter_batches`, but a UserError up front when the corpus holds no text at all."""
    batches = iter_batches(corpus_files, **options)
    first = next(batches, None)
    if first is None:
        names = ", ".join(str(path) for path in corpus_files)
        raise UserError(f"corpus {names} contains no text; give a non-empty corpus file")
    return itertools.chain([first], batches)


def train_tokenizer(
    source: str | os.PathLike | PreTrainedTokenizerBase,
    corpus_files: Sequence[str | os.PathLike],
    vocab_size: int,
    out: str | os.PathLike,
    *,
    min_frequency: int = TokenizerOptions.min_frequency,
    fmt: str = "auto",
    on_decode_error: str = "fail",
    reader_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    **trainer_options: Any,
) -> PreTrainedTokenizerBase:
    """Train a ``vocab_size`` tokenizer on the corpus in the source's family; save it to ``out``.

    Special tokens keep their strings and roles and come first; the normalizer, pre-tokenizer,
    post-processor and decoder are the source's. ``fmt``, ``on_decode_error`` and
    ``reader_options`` (e.g. ``field``) go to :func:`langgraft.corpora.readers.read_documents`,
    ``trainer_options`` to the `tokenizers` trainer (e.g. ``limit_alphabet``). Returns the saved
    tokenizer, loaded back from ``out``. An existing ``out`` is refused unless ``overwrite``.
    """
    TokenizerOptions(vocab_size=vocab_size, min_frequency=min_frequency)
    inputs = [*([source] if isinstance(source, (str, os.PathLike)) else []), *corpus_files]
    check_output(out, inputs=inputs, overwrite=overwrite)
    source_tok = as_tokenizer(source)
    family = trainable_family(source_tok)
    reader = {"fmt": fmt, "on_decode_error": on_decode_error, **(reader_options or {})}
    spec = _train_backend(source_tok, family, corpus_files, vocab_size, min_frequency, reader, trainer_options)
    with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        _save(source_tok, spec, tmp)
    return _reload(out)


def extend_tokenizer(
    source: str | os.PathLike | PreTrainedTokenizerBase,
    corpus_files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    new_tokens: int | None = None,
    vocab_size: int | None = None,
    min_frequency: int = TokenizerOptions.min_frequency,
    fmt: str = "auto",
    on_decode_error: str = "fail",
    reader_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    source_sample: Sequence[str | os.PathLike] | None = None,
) -> PreTrainedTokenizerBase:
    """Append up to ``new_tokens`` target pieces (or grow to ``vocab_size``), keeping every old id.

    BPE pieces come from continuing the source's own BPE training on the corpus
    (:func:`_continue_bpe`), so that every appended merge can fire; WordPiece and Unigram pieces
    from a tokenizer of the same family trained on the corpus, most useful first (merge order,
    probability). They go into the model vocabulary (BPE with their merges after the source's,
    Unigram with their scores). ``out`` also gets :data:`EXTENSION_FILE` recording the source and
    its original size, so embedding initializers know which rows are new. An existing ``out`` is
    refused unless ``overwrite``.

    ``source_sample``: source-language text files (read like the corpus) whose tokenization must
    not change. A new BPE merge fires on source text whenever its two parts end up side by side
    after the old merges, so a few source words would otherwise get new ids; every piece that
    shows up in a changed sample word is left out (BPE: its merge is never made) and the next
    candidate taken instead, until the whole sample tokenizes exactly as before (checked on every
    document, and recorded). Source text outside the sample is not covered by that guarantee
    (docs/tokenizers.md gives the measured rate).
    """
    TokenizerOptions(vocab_size=vocab_size, new_tokens=new_tokens, min_frequency=min_frequency)
    inputs = [*([source] if isinstance(source, (str, os.PathLike)) else []), *corpus_files, *(source_sample or ())]
    check_output(out, inputs=inputs, overwrite=overwrite)
    source_tok = as_tokenizer(source)
    family = trainable_family(source_tok)
    original_size = len(source_tok)
    if (new_tokens is None) == (vocab_size is None):
        raise UserError("give exactly one of new_tokens (--new-tokens) or vocab_size (--vocab-size)")
    wanted = new_tokens if new_tokens is not None else vocab_size - original_size
    if wanted <= 0:
        raise UserError(
            f"nothing to add: the source tokenizer already has {original_size} tokens; "
            "ask for --new-tokens above 0 or a --vocab-size above that"
        )
    reader = {"fmt": fmt, "on_decode_error": on_decode_error, **(reader_options or {})}
    source_json = backend_json(source_tok)
    guard = SourceGuard(source_tok, source_sample, reader) if source_sample else None
    rejected: set[str] = set()
    if family.model == "BPE":  # continued BPE training: every appended merge can fire (_continue_bpe)
        words = _segmented_words(source_json, family, corpus_files, reader)
        while True:
            pieces, merges = _continue_bpe(words, source_json["model"], wanted, min_frequency, rejected)
            extended_json = _append_pieces(source_json, pieces, original_size, merges=merges)
            changed = guard.changed_pieces(extended_json, original_size) if guard else set()
            if not changed:
                break
            rejected |= changed
    else:
        extended_json = _extend_from_target(source_tok, family, corpus_files, wanted, min_frequency, reader, guard,
                                            rejected)
    with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        tokenizer = _save(source_tok, extended_json, tmp)
        _check_ids_kept(source_tok, tokenizer)
        info = {
            "source": str(source) if isinstance(source, (str, os.PathLike)) else source_tok.name_or_path,
            "source_name_or_path": source_tok.name_or_path,
            "family": family.name,
            "original_vocab_size": original_size,
            "new_vocab_size": len(tokenizer),
            "num_new_tokens": len(tokenizer) - original_size,
            "new_token_ids": [original_size, len(tokenizer)],
            "method": "continued-bpe" if family.model == "BPE" else "target-tokenizer",
            "new_tokens_used_on_corpus_sample": int(
                (_token_counts(plain_backend(tokenizer), corpus_files, reader, sample_documents=2000)[original_size:]
                 > 0).sum()),
            "corpus": [str(path) for path in corpus_files],
            **({"source_sample": guard.record(tokenizer, rejected)} if guard else {}),
        }
        with atomic_file(Path(tmp) / EXTENSION_FILE) as handle:
            json.dump(info, handle, indent=2, ensure_ascii=False)
    return _reload(out)


def _extend_from_target(
    source_tok: PreTrainedTokenizerBase, family: TokenizerFamily, corpus_files: Sequence[str | os.PathLike],
    wanted: int, min_frequency: int, reader: dict[str, Any], guard: SourceGuard | None, rejected: set[str],
) -> dict[str, Any]:
    """WordPiece/Unigram: the pieces of a target tokenizer of the same family, most useful first.

    Both segment greedily over the whole vocabulary (longest match, best-scoring path), so an
    appended piece is used wherever it fits; BPE is different (:func:`_continue_bpe`).
    """
    source_json = backend_json(source_tok)
    known = set(source_tok.get_vocab())
    original_size = len(source_tok)
    size = _minimum_vocab_size(source_tok, family) + 2 * wanted
    for attempt in range(4):  # many target pieces exist in the source already: train bigger until enough are new
        try:
            target_json = _train_backend(source_tok, family, corpus_files, size, min_frequency, reader, {})
        except _AlphabetTooLarge:
            if attempt == 3:
                raise
            size *= 2
            continue
        candidates = [piece for piece in _ranked_pieces(target_json, family) if piece not in known]
        scores = dict(target_json["model"]["vocab"]) if family.model == "Unigram" else None
        while True:
            pieces = [piece for piece in candidates if piece not in rejected][:wanted]
            extended_json = _append_pieces(source_json, pieces, original_size, scores=scores)
            changed = guard.changed_pieces(extended_json, original_size) if guard else set()
            if not changed:
                break
            rejected |= changed
        if len(pieces) == wanted:
            break
        size *= 2
    return extended_json


class SourceGuard:
    """The words of a source-language sample with their ids under the source tokenizer.

    A word is a pre-tokenizer chunk (after the normalizer), the unit the model segments; the
    model's segmentation of each distinct word is compared before and after extension, then the
    whole documents are encoded again as the final check.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, files: Sequence[str | os.PathLike], reader: dict[str, Any]):
        self.backend = plain_backend(tokenizer)
        self.files = [str(path) for path in files]
        self.documents = [text for batch in nonempty_batches(files, **reader) for text in batch]
        words: set[str] = set()
        for text in self.documents:
            normalized = self.backend.normalizer.normalize_str(text) if self.backend.normalizer else text
            chunks = self.backend.pre_tokenizer.pre_tokenize_str(normalized) if self.backend.pre_tokenizer else [(text, None)]
            words.update(chunk for chunk, _ in chunks)
        self.words = sorted(words)
        self.ids = [[token.id for token in self.backend.model.tokenize(word)] for word in self.words]
        self.encoded = [encoding.ids for encoding in self.backend.encode_batch(self.documents, add_special_tokens=False)]

    def changed_pieces(self, spec: dict[str, Any], first_new_id: int) -> set[str]:
        """New pieces the extended tokenizer ``spec`` uses where the sample's ids changed (empty: none changed)."""
        # deferred: keeps tokenizers off `langgraft --help`
        from tokenizers import Tokenizer

        extended = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
        changed: set[str] = set()
        for word, old in zip(self.words, self.ids):
            tokens = extended.model.tokenize(word)
            if [token.id for token in tokens] != old:
                changed.update(token.value for token in tokens if token.id >= first_new_id)
        if changed:
            return changed
        changed_documents = self.changed_documents(extended)
        for encoding in changed_documents:
            changed.update(token for token, index in zip(encoding.tokens, encoding.ids) if index >= first_new_id)
        if changed_documents and not changed:
            raise RuntimeError("extension changed the source sample's ids without using a new piece")
        return changed

    def changed_documents(self, backend: Any) -> list[Any]:
        """Encodings of the sample documents whose ids differ under ``backend`` (a `tokenizers` Tokenizer)."""
        backend.no_truncation()
        backend.no_padding()
        new = backend.encode_batch(self.documents, add_special_tokens=False)
        return [encoding for encoding, old in zip(new, self.encoded) if encoding.ids != old]

    def record(self, tokenizer: PreTrainedTokenizerBase, rejected: set[str]) -> dict[str, Any]:
        """What was checked, measured on the saved ``tokenizer``, for :data:`EXTENSION_FILE`."""
        return {"files": self.files, "documents": len(self.documents), "distinct_words": len(self.words),
                "rejected_pieces": len(rejected), "rejected_examples": sorted(rejected)[:20],
                "documents_changed": len(self.changed_documents(plain_backend(tokenizer)))}


def read_extension_info(tokenizer_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The :data:`EXTENSION_FILE` record of an extended tokenizer directory, or None."""
    path = Path(tokenizer_dir) / EXTENSION_FILE
    if not path.is_file():
        return None
    return read_sidecar(path, "the tokenizer extension record", "re-run `langgraft tokenizer extend` for this folder",
                        {"original_vocab_size": int, "new_vocab_size": int})


# ----------------------------------------------------------------------------- training


def _trainer_specials(tokenizer: PreTrainedTokenizerBase, family: TokenizerFamily) -> list[dict[str, Any]]:
    """Added-token records the trainer places first, in the source's order.

    The source's special added tokens (for Unigram all added tokens, as transformers does), then
    any special-token string the post-processor or the wrapper uses that only lived in the
    source's model vocabulary, so no role is lost.
    """
    spec = backend_json(tokenizer)
    chosen = [{key: value for key, value in added.items() if key != "id"}
              for added in spec["added_tokens"] if added["special"] or family.model == "Unigram"]
    contents = {added["content"] for added in chosen}
    for token in [*_post_processor_tokens(spec["post_processor"]), *tokenizer.all_special_tokens]:
        if token not in contents:
            contents.add(token)
            chosen.append({"content": token, "single_word": False, "lstrip": False, "rstrip": False,
                           "normalized": False, "special": True})
    return chosen


def _post_processor_tokens(processor: dict[str, Any] | None) -> list[str]:
    if not processor:
        return []
    tokens = [token for entry in (processor.get("special_tokens") or {}).values() for token in entry["tokens"]]
    tokens += [processor[key][0] for key in ("cls", "sep") if isinstance(processor.get(key), list)]
    return tokens + [token for child in processor.get("processors") or [] for token in _post_processor_tokens(child)]


def _minimum_vocab_size(tokenizer: PreTrainedTokenizerBase, family: TokenizerFamily) -> int:
    fixed_alphabet = 256 if family.byte_level or family.byte_fallback else 0
    return len(_trainer_specials(tokenizer, family)) + fixed_alphabet + 1


def _train_backend(
    source_tok: PreTrainedTokenizerBase,
    family: TokenizerFamily,
    corpus_files: Sequence[str | os.PathLike],
    vocab_size: int,
    min_frequency: int,
    reader: dict[str, Any],
    trainer_options: dict[str, Any],
) -> dict[str, Any]:
    """Train the source's own `tokenizers` pipeline on the corpus; return the new tokenizer.json.

    The trainer gets the source's special tokens first, then pieces it would otherwise drop
    (``<0xNN>`` byte fallback) or number in per-process hash-map order (``##c`` continuation
    symbols, which would make ids differ between runs); those become ordinary model pieces.
    """
    # deferred: keeps tokenizers off `langgraft --help`
    from tokenizers import AddedToken, Tokenizer, pre_tokenizers, trainers

    minimum = _minimum_vocab_size(source_tok, family)
    if vocab_size < minimum:
        raise UserError(
            f"vocab size {vocab_size} is too small for {family.name}: the special tokens"
            f"{' and 256 byte pieces' if minimum > 257 else ''} alone need {minimum - 1}; ask for at least {minimum}"
        )
    source = backend_json(source_tok)
    specials = [AddedToken(**added) for added in _trainer_specials(source_tok, family)]
    backend = Tokenizer.from_str(json.dumps(_untrained(source, family), ensure_ascii=False))
    batches = nonempty_batches(corpus_files, **reader)
    model = source["model"]
    prefix, suffix = model.get("continuing_subword_prefix") or None, model.get("end_of_word_suffix") or None
    extra = list(BYTE_PIECES) if family.byte_fallback else []
    if prefix or suffix:
        extra += _affixed_symbols(backend, corpus_files, reader, prefix, suffix)
    options: dict[str, Any] = {"show_progress": False, **trainer_options}
    if family.model == "Unigram":
        if model.get("unk_id") is not None:
            options.setdefault("unk_token", model["vocab"][model["unk_id"]][0])
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials + extra, **options)
    else:
        options.setdefault("min_frequency", min_frequency)
        options.update({key: value for key, value in (("continuing_subword_prefix", prefix),
                                                      ("end_of_word_suffix", suffix)) if value})
        if family.byte_level:
            options.setdefault("initial_alphabet", pre_tokenizers.ByteLevel.alphabet())
        trainer_class = trainers.WordPieceTrainer if family.model == "WordPiece" else trainers.BpeTrainer
        trainer = trainer_class(vocab_size=vocab_size, special_tokens=specials + extra, **options)
    try:
        backend.train_from_iterator(batches, trainer=trainer)
    except Exception as exc:  # the Unigram trainer refuses a vocabulary smaller than the alphabet
        if "not large enough to contain all chars" not in str(exc):
            raise
        raise _AlphabetTooLarge(f"vocab size {vocab_size} is smaller than {len(specials)} special tokens plus the "
                                "corpus alphabet; ask for a larger vocab size") from None
    trained = json.loads(backend.to_str())
    extra_set = set(extra)
    trained["added_tokens"] = [added for added in trained["added_tokens"] if added["content"] not in extra_set]
    trained = _canonical_order(_restore_pipeline(trained, source), family)
    if len(_model_tokens(trained)) > vocab_size:
        alphabet = len(_model_tokens(trained)) - len(extra) - len(specials)
        raise _AlphabetTooLarge(
            f"vocab size {vocab_size} is smaller than {len(specials)} special tokens plus the corpus alphabet "
            f"(about {alphabet} symbols); ask for a larger vocab size"
        )
    return trained


def _untrained(source: dict[str, Any], family: TokenizerFamily) -> dict[str, Any]:
    """The source pipeline with an empty model and no special tokens, ready for a trainer."""
    spec = copy.deepcopy(source)
    spec["added_tokens"], spec["post_processor"], spec["padding"], spec["truncation"] = [], None, None, None
    model = spec["model"]
    if family.model == "Unigram":  # a Unigram model cannot be empty; the trainer replaces this one
        model["vocab"], model["unk_id"] = [["<unk>", 0.0]], 0
    else:
        model["vocab"] = {}
        if family.model == "BPE":
            model["merges"] = []
    if family.name == "sentencepiece-bpe":  # SentencePiece never merges across words: train word by word
        spec["pre_tokenizer"] = _word_splitter(source.get("pre_tokenizer"))
    return spec


def _word_splitter(pre: dict[str, Any] | None) -> dict[str, Any]:
    """Training-only pre-tokenizer (JSON) that cuts before every ``▁``."""
    if pre is not None and pre.get("type") == "Metaspace":
        return {**pre, "split": True}
    split = {"type": "Split", "pattern": {"String": "▁"}, "behavior": "MergedWithNext", "invert": False}
    return split if pre is None else {"type": "Sequence", "pretokenizers": [pre, split]}


def _affixed_symbols(
    backend: Any, corpus_files: Sequence[str | os.PathLike], reader: dict[str, Any], prefix: str | None,
    suffix: str | None,
) -> list[str]:
    """Every ``##c`` / ``c</w>`` symbol the trainer will need, sorted, from one pass over the corpus."""
    inner: set[str] = set()
    final_of_long: set[str] = set()
    final_of_short: set[str] = set()
    for batch in iter_batches(corpus_files, **reader):
        for text in batch:
            text = backend.normalizer.normalize_str(text) if backend.normalizer else text
            words = backend.pre_tokenizer.pre_tokenize_str(text) if backend.pre_tokenizer else [(text, None)]
            for word, _offsets in words:
                if prefix and len(word) > 1:
                    inner.update(word[1:-1] if suffix else word[1:])
                if suffix and word:
                    (final_of_long if len(word) > 1 else final_of_short).add(word[-1])
    symbols = {f"{prefix}{char}" for char in inner}
    if suffix:
        symbols |= {f"{char}{suffix}" for char in final_of_short}
        symbols |= {f"{prefix or ''}{char}{suffix}" for char in final_of_long}
    return sorted(symbols)


def _restore_pipeline(trained: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """Put back the source's pre-tokenizer, model options and post-processor, padding and truncation."""
    trained = copy.deepcopy(trained)
    for part in ("pre_tokenizer", "post_processor", "padding", "truncation"):
        trained[part] = copy.deepcopy(source[part])
    for key, value in source["model"].items():
        if key not in ("vocab", "merges", "unk_id"):
            trained["model"][key] = value
    ids = {**_model_tokens(trained), **{added["content"]: added["id"] for added in trained["added_tokens"]}}
    _remap_special_ids(trained["post_processor"], ids)
    padding = trained["padding"]
    if padding and padding.get("pad_token") in ids:
        padding["pad_id"] = ids[padding["pad_token"]]
    return trained


def _remap_special_ids(processor: dict[str, Any] | None, ids: dict[str, int]) -> None:
    """Point a post-processor (template, BERT/RoBERTa style, or a sequence of them) at new ids."""
    if not processor:
        return
    for entry in (processor.get("special_tokens") or {}).values():
        entry["ids"] = [ids[token] for token in entry["tokens"]]
    for key in ("cls", "sep"):
        if isinstance(processor.get(key), list):
            processor[key] = [processor[key][0], ids[processor[key][0]]]
    for child in processor.get("processors") or []:
        _remap_special_ids(child, ids)


def _canonical_order(spec: dict[str, Any], family: TokenizerFamily) -> dict[str, Any]:
    """Make Unigram output reproducible; segmentation depends only on pieces and scores.

    Scores are rounded to 1e-6 (far above the run-to-run float noise of parallel sums) and
    pieces sorted by score, ties by string. Characters the trainer had to keep get scores
    ``min_score + k * 1e-4`` in hash-set order: the same scores are handed out again in string
    order. Special tokens and byte pieces keep their leading ids.
    """
    model = spec["model"]
    if model["type"] != "Unigram":
        return spec
    fixed = len(spec["added_tokens"]) + (len(BYTE_PIECES) if family.byte_fallback else 0)
    pieces = [[piece, round(score, 6)] for piece, score in model["vocab"][fixed:]]
    floor = min((score for piece, score in pieces if len(piece) > 1), default=float("inf"))
    kept_chars = sorted((item for item in pieces if len(item[0]) == 1 and item[1] < floor), key=lambda item: item[0])
    for item, score in zip(kept_chars, sorted((item[1] for item in kept_chars), reverse=True)):
        item[1] = score
    model["vocab"] = model["vocab"][:fixed] + sorted(pieces, key=lambda item: (-item[1], item[0]))
    return spec


def plain_backend(tokenizer: PreTrainedTokenizerBase) -> Any:
    """A copy of the Rust tokenizer without the truncation/padding some tokenizer.json files enable."""
    # deferred: keeps tokenizers off `langgraft --help`
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def _model_tokens(spec: dict[str, Any]) -> dict[str, int]:
    """Token -> id of the backend model vocabulary (added tokens included when also in the model)."""
    vocab = spec["model"]["vocab"]
    if spec["model"]["type"] == "Unigram":
        return {piece: index for index, (piece, _score) in enumerate(vocab)}
    return dict(vocab)


def _save(source_tok: PreTrainedTokenizerBase, spec: dict[str, Any], directory: Path) -> Any:
    """Save ``source_tok``'s wrapper (class, special-token roles, options) with ``spec`` as tokenizer.json.

    Vocabulary files of the source (vocab.txt, tokenizer.model, ...) would describe the old
    vocabulary, so they are removed; tokenizer.json is what transformers loads.
    """
    source_tok.save_pretrained(directory)
    for name in getattr(type(source_tok), "vocab_files_names", {}).values():
        if name != "tokenizer.json":
            (Path(directory) / name).unlink(missing_ok=True)
    with atomic_file(Path(directory) / "tokenizer.json") as handle:
        json.dump(spec, handle, ensure_ascii=False, indent=2)
    reloaded = _reload(directory)
    if type(reloaded) is not type(source_tok):
        raise RuntimeError(f"saved tokenizer reloads as {type(reloaded).__name__}, not {type(source_tok).__name__}")
    return reloaded


def _reload(directory: str | os.PathLike) -> PreTrainedTokenizerBase:
    # deferred: keeps torch, transformers and tokenizers off `langgraft --help`
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


# ----------------------------------------------------------------------------- extension


def _ranked_pieces(target: dict[str, Any], family: TokenizerFamily) -> list[str]:
    """Target model pieces, most useful first, without special tokens and byte-fallback pieces.

    Single characters lead (without them target text keeps unknown tokens), then WordPiece's
    merge order or Unigram probability.
    """
    added = {token["content"] for token in target["added_tokens"]}
    if family.model == "Unigram":
        by_use = sorted(target["model"]["vocab"], key=lambda item: (len(item[0]) > 1, -item[1]))
        ranked = [piece for piece, _score in by_use]
    else:  # WordPiece ids follow the (continuation) alphabet, then merge order
        ranked = [token for token, _index in sorted(target["model"]["vocab"].items(), key=lambda item: item[1])]
    return [piece for piece in ranked if piece not in added and not BYTE_PIECE.match(piece)]


@dataclass
class _Words:
    """The distinct pre-tokenized words of a corpus, as the source BPE model segments them, with counts.

    Characters the source model cannot spell (byte-fallback or unknown tokens) are kept as
    characters (with the model's continuation prefix / end-of-word suffix where they sit), so that
    they can become new pieces; everything else is a source piece.
    """

    symbols: list[list[str]]
    counts: list[int]


def _segmented_words(
    source: dict[str, Any], family: TokenizerFamily, corpus_files: Sequence[str | os.PathLike], reader: dict[str, Any]
) -> _Words:
    from tokenizers import Tokenizer  # deferred: keeps tokenizers off `langgraft --help`

    spec = copy.deepcopy(source)
    if family.name == "sentencepiece-bpe":  # count words as SentencePiece trains: cut before every ▁
        spec["pre_tokenizer"] = _word_splitter(source.get("pre_tokenizer"))
    backend = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    counts: dict[str, int] = {}
    for batch in nonempty_batches(corpus_files, **reader):
        for text in batch:
            normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
            chunks = (backend.pre_tokenizer.pre_tokenize_str(normalized) if backend.pre_tokenizer
                      else [(normalized, None)])
            for word, _offsets in chunks:
                counts[word] = counts.get(word, 0) + 1
    model = source["model"]
    unknown = model.get("unk_token")
    prefix, suffix = model.get("continuing_subword_prefix") or "", model.get("end_of_word_suffix") or ""

    def foreign(value: str) -> bool:
        return value == unknown or bool(model.get("byte_fallback") and BYTE_PIECE.match(value))

    words = _Words([], [])
    for word, count in counts.items():
        raw = word.encode("utf-8")
        tokens = backend.model.tokenize(word)
        symbols: list[str] = []
        index = 0
        while index < len(tokens):
            if not foreign(tokens[index].value):
                symbols.append(tokens[index].value)
                index += 1
                continue
            start, end = tokens[index].offsets  # byte offsets; a run of foreign tokens spells whole characters
            while index < len(tokens) and foreign(tokens[index].value):
                end = tokens[index].offsets[1]
                index += 1
            position = start
            for char in raw[start:end].decode("utf-8", errors="replace"):
                width = len(char.encode("utf-8"))
                symbols.append(f"{prefix if position else ''}{char}{suffix if position + width == len(raw) else ''}")
                position += width
        words.symbols.append(symbols)
        words.counts.append(count)
    return words
def _continue_bpe(
    words: _Words, model: dict[str, Any], wanted: int, min_frequency: int, banned: set[str]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Up to ``wanted`` new pieces and their merges, learned by continuing the source's BPE training.

    Training starts from the source model's final segmentation of every corpus word, so the
    appended merges (ranked after every source merge) replay on new text as learned: the source
    merges run out first, then the new ones fire in order; each new piece is the concatenation of
    two pieces that exist when its merge fires. Characters the source cannot spell come first
    (most frequent first); then the most frequent adjacent pair (ties: the smaller strings) is
    merged everywhere, until ``wanted`` pieces or no pair is seen ``min_frequency`` times. A pair
    whose result is already a piece, or is in ``banned``, is never merged, so every merge adds
    one new piece. ``words`` is left as it is (``--source-sample`` trains again with more banned).
    """
    prefix = model.get("continuing_subword_prefix") or ""
    vocab = set(model["vocab"])
    segmented = [list(symbols) for symbols in words.symbols]
    characters: dict[str, int] = {}
    for symbols, count in zip(segmented, words.counts):
        for symbol in symbols:
            if symbol not in vocab:
                characters[symbol] = characters.get(symbol, 0) + count
    pieces = [char for char, _count in sorted(characters.items(), key=lambda item: (-item[1], item[0]))
              if char not in banned][:wanted]
    vocab.update(pieces)
    pair_counts: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], set[int]] = {}

    def count_pairs(index: int, sign: int, touched: set[tuple[str, str]]) -> None:
        symbols, count = segmented[index], words.counts[index]
        for pair in zip(symbols, symbols[1:]):
            if pair[0] in vocab and pair[1] in vocab:
                pair_counts[pair] = pair_counts.get(pair, 0) + sign * count
                where.setdefault(pair, set()).add(index)
                touched.add(pair)

    for index in range(len(segmented)):
        count_pairs(index, 1, set())
    heap = [(-count, left, right) for (left, right), count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while len(pieces) < wanted and heap:
        negative, left, right = heapq.heappop(heap)
        if pair_counts.get((left, right)) != -negative:
            continue  # stale entry: the pair's count changed since it was pushed
        if -negative < max(min_frequency, 1):
            break
        piece = left + (right[len(prefix):] if prefix and right.startswith(prefix) else right)
        if piece in vocab or piece in banned:
            pair_counts[(left, right)] = 0  # never merged (a later push of this pair is stale too)
            continue
        merges.append((left, right))
        pieces.append(piece)
        vocab.add(piece)
        touched: set[tuple[str, str]] = set()
        for index in sorted(where.pop((left, right))):
            count_pairs(index, -1, touched)
            segmented[index] = _merge_pair(segmented[index], left, right, piece)
            count_pairs(index, 1, touched)
        for pair in sorted(touched):
            if pair_counts.get(pair, 0) > 0:
                heapq.heappush(heap, (-pair_counts[pair], *pair))
    return pieces, merges


def _merge_pair(symbols: list[str], left: str, right: str, piece: str) -> list[str]:
    """``symbols`` with every ``left right`` (left to right, not overlapping) replaced by ``piece``."""
    merged: list[str] = []
    index = 0
    while index < len(symbols):
        if index + 1 < len(symbols) and symbols[index] == left and symbols[index + 1] == right:
            merged.append(piece)
            index += 2
        else:
            merged.append(symbols[index])
            index += 1
    return merged


def _append_pieces(
    source: dict[str, Any], pieces: list[str], first_id: int, *, scores: dict[str, float] | None = None,
    merges: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Source backend JSON with ``pieces`` appended to the model at ids ``first_id``, ``first_id+1``...

    Unigram pieces take their ``scores``; BPE ``merges`` go after the source's, in order.
    """
    extended = copy.deepcopy(source)
    model = extended["model"]
    by_id = {token["id"]: token["content"] for token in extended["added_tokens"]}
    # ids between the model vocab and first_id belong to added tokens (Llama-3's specials follow its
    # pieces): mirror them into the model, since the loader gives an added token that is not a model
    # piece the id after the model's last, which the new pieces now hold
    if model["type"] == "Unigram":
        model["vocab"].extend([by_id[index], 0.0] for index in range(len(model["vocab"]), first_id))
        model["vocab"].extend([piece, scores[piece]] for piece in pieces)
        return extended
    used = set(model["vocab"].values())
    model["vocab"].update({content: index for index, content in by_id.items()
                           if index < first_id and index not in used and content not in model["vocab"]})
    model["vocab"].update({piece: first_id + offset for offset, piece in enumerate(pieces)})
    if model["type"] == "BPE":
        as_text = bool(model["merges"]) and isinstance(model["merges"][0], str)
        model["merges"].extend(f"{left} {right}" if as_text else [left, right] for left, right in merges)
    return extended


def _check_ids_kept(source_tok: PreTrainedTokenizerBase, extended: PreTrainedTokenizerBase) -> None:
    new_vocab = extended.get_vocab()
    moved = [token for token, index in source_tok.get_vocab().items() if new_vocab.get(token) != index]
    if moved:
        raise RuntimeError(f"extension changed the ids of {len(moved)} source tokens, e.g. {moved[:3]}")


def _token_counts(
    backend: Any, corpus_files: Sequence[str | os.PathLike], reader: dict[str, Any], sample_documents: int | None = None
) -> Any:
    """How often ``backend`` emits each id on the corpus (or its first ``sample_documents``)."""

    counts = np.zeros(backend.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    seen = 0
    for batch in iter_batches(corpus_files, **reader):
        batch = batch if sample_documents is None else batch[: sample_documents - seen]
        for encoding in backend.encode_batch(batch, add_special_tokens=False):
            counts += np.bincount(np.asarray(encoding.ids, dtype=np.int64), minlength=counts.size)
        seen += len(batch)
        if sample_documents is not None and seen >= sample_documents:
            break
    return counts
