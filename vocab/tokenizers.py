"""Train or extend a target-language tokenizer in the source tokenizer's own family.

A target tokenizer only drops into a source model if it keeps the source's text pipeline
(normalizer and casing, pre-tokenizer, post-processor, decoder) and its special tokens with the
same strings and roles. ``train_tokenizer`` therefore starts from the source's fast tokenizer
(``train_new_from_iterator``) and repairs what transformers gets wrong for some families:
SentencePiece BPE merging across words, lost ``<0xNN>`` byte-fallback pieces, stale padding ids.
``extend_tokenizer`` appends target pieces to the source's own model vocabulary (never as
AddedTokens, which would bypass word-internal segmentation) and keeps every existing id.

Families (:data:`FAMILIES`): WordPiece (BERT, ``##`` continuation), byte-level BPE (GPT-2,
RoBERTa, ``Ġ`` word start), SentencePiece Unigram (XLM-R, T5, ``▁`` word start) and
SentencePiece BPE (Llama-style, ``▁`` word start, optional byte fallback).
"""
from __future__ import annotations

import copy
import functools
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from langgraft.atomic import atomic_dir, atomic_file
from langgraft.errors import UserError
from langgraft.models import load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EXTENSION_FILE = "langgraft_extension.json"
BYTE_PIECES = tuple(f"<0x{value:02X}>" for value in range(256))
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclass(frozen=True)
class TokenizerFamily:
    """How a tokenizer family marks word boundaries; decides training fixes and canonical forms."""

    name: str
    model: str  # the `tokenizers` model type: WordPiece, BPE or Unigram
    continuation_prefix: str | None = None  # WordPiece: "##x" continues a word
    word_prefix: str | None = None  # byte-level "Ġx" / SentencePiece "▁x" starts a word
    byte_level: bool = False  # pieces are GPT-2 byte-to-unicode strings
    byte_fallback: bool = False  # <0xNN> pieces spell characters outside the vocabulary


FAMILIES = ("wordpiece", "byte-level-bpe", "sentencepiece-unigram", "sentencepiece-bpe")


def detect_family(tokenizer: PreTrainedTokenizerBase) -> TokenizerFamily:
    """Read the family from the fast tokenizer's backend JSON; a UserError for anything else."""
    spec = _backend_json(tokenizer)
    model = spec["model"]
    pipeline = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer")])
    byte_fallback = bool(model.get("byte_fallback"))
    if model["type"] == "WordPiece":
        return TokenizerFamily("wordpiece", "WordPiece", continuation_prefix=model.get("continuing_subword_prefix", "##"))
    if model["type"] == "BPE" and '"ByteLevel"' in json.dumps(spec.get("pre_tokenizer")):
        return TokenizerFamily("byte-level-bpe", "BPE", word_prefix="Ġ", byte_level=True)
    if model["type"] == "BPE" and ("Metaspace" in pipeline or _replaces_spaces(spec.get("normalizer"))):
        return TokenizerFamily("sentencepiece-bpe", "BPE", word_prefix="▁", byte_fallback=byte_fallback)
    if model["type"] == "Unigram":
        return TokenizerFamily("sentencepiece-unigram", "Unigram", word_prefix="▁", byte_fallback=byte_fallback)
    raise UserError(
        f"tokenizer {tokenizer.name_or_path!r} is a {model['type']} model this tool cannot train; "
        f"supported families: {', '.join(FAMILIES)}"
    )


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
    from langgraft.corpora.readers import read_documents

    if not corpus_files:
        raise UserError("no corpus file given; pass at least one --corpus FILE")
    readers = [read_documents(path, fmt, on_decode_error=on_decode_error, **reader_options) for path in corpus_files]
    documents = itertools.chain.from_iterable(readers)
    while batch := list(itertools.islice(documents, batch_size)):
        yield batch


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
    min_frequency: int = 2,
    fmt: str = "auto",
    on_decode_error: str = "fail",
    reader_options: dict[str, Any] | None = None,
    **trainer_options: Any,
) -> PreTrainedTokenizerBase:
    """Train a ``vocab_size`` tokenizer on the corpus in the source's family; save it to ``out``.

    Special tokens keep their strings and roles and come first; the normalizer, pre-tokenizer,
    post-processor and decoder are the source's. ``fmt``, ``on_decode_error`` and
    ``reader_options`` (e.g. ``field``) go to :func:`langgraft.corpora.readers.read_documents`,
    ``trainer_options`` to the `tokenizers` trainer (e.g. ``limit_alphabet``). Returns the saved
    tokenizer, loaded back from ``out``.
    """
    source_tok = as_tokenizer(source)
    family = detect_family(source_tok)
    reader = {"fmt": fmt, "on_decode_error": on_decode_error, **(reader_options or {})}
    trained, spec = _train_backend(source_tok, family, corpus_files, vocab_size, min_frequency, reader,
                                   trainer_options)
    with atomic_dir(out) as tmp:
        _save(trained, spec, tmp, type(source_tok))
    return _reload(out)


def extend_tokenizer(
    source: str | os.PathLike | PreTrainedTokenizerBase,
    corpus_files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    new_tokens: int | None = None,
    vocab_size: int | None = None,
    min_frequency: int = 2,
    fmt: str = "auto",
    on_decode_error: str = "fail",
    reader_options: dict[str, Any] | None = None,
) -> PreTrainedTokenizerBase:
    """Append up to ``new_tokens`` target pieces (or grow to ``vocab_size``), keeping every old id.

    Pieces come from a tokenizer of the same family trained on the corpus, most useful first
    (merge order for WordPiece/BPE, probability for Unigram), and go into the model vocabulary
    (BPE with their merges, Unigram with their scores). ``out`` also gets
    :data:`EXTENSION_FILE` recording the source and its original size, so embedding
    initializers know which rows are new.
    """
    source_tok = as_tokenizer(source)
    family = detect_family(source_tok)
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
    source_json = _backend_json(source_tok)
    known = set(source_tok.get_vocab())
    base = _minimum_vocab_size(source_tok, family)
    pieces: list[str] = []
    for factor in (2, 4, 8):  # target pieces often exist in the source already: train bigger until enough are new
        _target, target_json = _train_backend(source_tok, family, corpus_files, base + factor * wanted,
                                              min_frequency, reader, {})
        pieces = [piece for piece in _ranked_pieces(target_json, family) if piece not in known][:wanted]
        if len(pieces) == wanted:
            break
    extended_json = _append_pieces(source_json, target_json, pieces, original_size)
    with atomic_dir(out) as tmp:
        tokenizer = _save(source_tok, extended_json, tmp, type(source_tok))
        _check_ids_kept(source_tok, tokenizer)
        info = {
            "source": str(getattr(source_tok, "name_or_path", "")),
            "family": family.name,
            "original_vocab_size": original_size,
            "new_vocab_size": len(tokenizer),
            "num_new_tokens": len(tokenizer) - original_size,
            "new_token_ids": [original_size, len(tokenizer)],
            "new_tokens_used_on_corpus_sample": int(
                (_token_counts(plain_backend(tokenizer), corpus_files, reader, sample_documents=2000)[original_size:]
                 > 0).sum()),
            "corpus": [str(path) for path in corpus_files],
        }
        with atomic_file(Path(tmp) / EXTENSION_FILE) as handle:
            json.dump(info, handle, indent=2, ensure_ascii=False)
    return _reload(out)


def read_extension_info(tokenizer_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The :data:`EXTENSION_FILE` record of an extended tokenizer directory, or None."""
    path = Path(tokenizer_dir) / EXTENSION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ----------------------------------------------------------------------------- canonical forms


def canonical_token(token: str, family: TokenizerFamily) -> tuple[bool, bytes]:
    """``(starts_a_word, surface bytes)``: the same text piece compares equal across families.

    WordPiece ``##x`` is a continuation and bare ``x`` a word start; ``Ġx``/``▁x`` start a word
    and bare pieces continue one; byte-level strings are decoded to their bytes; ``<0xNN>``
    byte-fallback pieces are that single byte (a continuation).
    """
    if family.byte_fallback and (match := _BYTE_PIECE.match(token)):
        return False, bytes([int(match.group(1), 16)])
    if family.continuation_prefix:
        prefix = family.continuation_prefix
        if token.startswith(prefix) and len(token) > len(prefix):
            return False, token[len(prefix):].encode("utf-8")
        return True, token.encode("utf-8")
    if family.byte_level:
        raw = bytes(_byte_decoder().get(char, 0) for char in token)
        return (True, raw[1:]) if raw.startswith(b" ") else (False, raw)
    if family.word_prefix and token.startswith(family.word_prefix):
        return True, token[len(family.word_prefix):].encode("utf-8")
    return False, token.encode("utf-8")


def canonical_vocab(tokenizer: PreTrainedTokenizerBase) -> dict[int, tuple[bool, bytes]]:
    """Canonical form (:func:`canonical_token`) of every non-special token id of ``tokenizer``."""
    family = detect_family(tokenizer)
    special = set(tokenizer.all_special_ids) | {
        index for index, added in tokenizer.added_tokens_decoder.items() if added.special
    }
    return {
        index: canonical_token(token, family)
        for token, index in tokenizer.get_vocab().items()
        if index not in special
    }


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes-to-unicode table (printable stand-ins for all 256 bytes)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for value in range(256):
        if value not in printable:
            printable.append(value)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): value for value, code in zip(printable, codes)}


# ----------------------------------------------------------------------------- training


def _backend_json(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} has no fast (tokenizers) backend; "
            "give a model directory with a tokenizer.json"
        )
    return json.loads(backend.to_str())


def _replaces_spaces(normalizer: dict | None) -> bool:
    """Legacy SentencePiece conversions put spaces -> ``▁`` in the normalizer, not the pre-tokenizer."""
    text = json.dumps(normalizer, ensure_ascii=False)
    return '"Replace"' in text and '"content": "▁"' in text


def _special_contents(tokenizer: PreTrainedTokenizerBase, family: TokenizerFamily) -> list[str]:
    """The added tokens ``train_new_from_iterator`` hands to the trainer (Unigram: all of them)."""
    spec = _backend_json(tokenizer)
    return [added["content"] for added in spec["added_tokens"] if added["special"] or family.model == "Unigram"]


def _minimum_vocab_size(tokenizer: PreTrainedTokenizerBase, family: TokenizerFamily) -> int:
    fixed_alphabet = 256 if family.byte_level or family.byte_fallback else 0
    return len(_special_contents(tokenizer, family)) + fixed_alphabet + 1


def _train_backend(
    source_tok: PreTrainedTokenizerBase,
    family: TokenizerFamily,
    corpus_files: Sequence[str | os.PathLike],
    vocab_size: int,
    min_frequency: int,
    reader: dict[str, Any],
    trainer_options: dict[str, Any],
) -> tuple[PreTrainedTokenizerBase, dict[str, Any]]:
    """``train_new_from_iterator`` plus the repairs: the trained wrapper and its repaired backend JSON."""
    minimum = _minimum_vocab_size(source_tok, family)
    if vocab_size < minimum:
        raise UserError(
            f"vocab size {vocab_size} is too small for {family.name}: the special tokens"
            f"{' and 256 byte pieces' if minimum > 257 else ''} alone need {minimum - 1}; ask for at least {minimum}"
        )
    batches = nonempty_batches(corpus_files, **reader)
    options: dict[str, Any] = {"show_progress": False, **trainer_options}
    if family.model in ("WordPiece", "BPE"):
        options.setdefault("min_frequency", min_frequency)
    if family.model == "WordPiece":
        options.setdefault("continuing_subword_prefix", family.continuation_prefix)
    trainer_source = copy.deepcopy(source_tok)
    source_json = _backend_json(source_tok)
    if family.name == "sentencepiece-bpe":  # SentencePiece never merges across words; train on words
        trainer_source.backend_tokenizer.pre_tokenizer = _word_splitter(source_json)
    byte_pieces = 256 if family.byte_fallback else 0
    specials = len(_special_contents(source_tok, family))
    try:
        trained = trainer_source.train_new_from_iterator(batches, vocab_size - byte_pieces, **options)
    except Exception as exc:  # the Unigram trainer refuses a vocabulary smaller than the alphabet
        if "not large enough to contain all chars" not in str(exc):
            raise
        raise UserError(f"vocab size {vocab_size} is smaller than {specials} special tokens plus the corpus "
                        "alphabet; ask for a larger vocab size") from None
    trained_json = _canonical_order(_repair(_backend_json(trained), source_json, family), family, corpus_files,
                                    reader)
    if len(_model_tokens(trained_json)) > vocab_size:
        raise UserError(
            f"vocab size {vocab_size} is smaller than {specials} special tokens plus the corpus alphabet "
            f"({len(_model_tokens(trained_json)) - specials - byte_pieces} characters); ask for a larger vocab size"
        )
    return trained, trained_json


def _word_splitter(source_json: dict[str, Any]) -> Any:
    """A pre-tokenizer that cuts before every ``▁``, used only while training SentencePiece BPE."""
    from tokenizers import pre_tokenizers

    pre = source_json.get("pre_tokenizer")
    if pre is not None and pre.get("type") == "Metaspace":
        return pre_tokenizers.Metaspace(replacement=pre["replacement"], prepend_scheme=pre["prepend_scheme"],
                                        split=True)
    splitter = pre_tokenizers.Split("▁", behavior="merged_with_next")
    if pre is None:
        return splitter
    from tokenizers import Tokenizer

    current = Tokenizer.from_str(json.dumps({**source_json, "added_tokens": []})).pre_tokenizer
    return pre_tokenizers.Sequence([current, splitter])


def _repair(trained: dict[str, Any], source: dict[str, Any], family: TokenizerFamily) -> dict[str, Any]:
    """Put back what training changed: pre-tokenizer, model options, byte pieces, padding id."""
    trained = copy.deepcopy(trained)
    trained["pre_tokenizer"] = source["pre_tokenizer"]
    model = trained["model"]
    for key, value in source["model"].items():
        if key not in ("vocab", "merges", "unk_id"):
            model[key] = value
    if family.byte_fallback:
        _insert_byte_pieces(model, len(trained["added_tokens"]))
    vocab = _model_tokens(trained)
    padding = trained.get("padding")
    if padding and padding.get("pad_token") in vocab:
        padding["pad_id"] = vocab[padding["pad_token"]]
    return trained


def _canonical_order(
    spec: dict[str, Any], family: TokenizerFamily, corpus_files: Sequence[str | os.PathLike], reader: dict[str, Any]
) -> dict[str, Any]:
    """Make ids reproducible: the Rust trainers break ties in hash-map order, which varies per run.

    WordPiece segmentation depends only on the set of pieces, Unigram on pieces and scores, so
    re-sorting their ids is safe: WordPiece by frequency on the corpus, Unigram by score (rounded
    to 1e-6, far above the run-to-run float noise of summation order), ties by string. Special
    tokens and byte pieces keep their leading ids. The BPE trainer is already deterministic.
    """
    fixed = len(spec["added_tokens"]) + (len(BYTE_PIECES) if family.byte_fallback else 0)
    model = spec["model"]
    if model["type"] == "Unigram":
        pieces = [[piece, round(score, 6)] for piece, score in model["vocab"][fixed:]]
        # characters the trainer had to keep get scores min_score + k * 1e-4 in hash-set order:
        # hand the same scores out again in a fixed (string) order
        floor = min((score for piece, score in pieces if len(piece) > 1), default=float("inf"))
        kept_chars = sorted((item for item in pieces if len(item[0]) == 1 and item[1] < floor), key=lambda item: item[0])
        for item, score in zip(kept_chars, sorted((item[1] for item in kept_chars), reverse=True)):
            item[1] = score
        model["vocab"] = model["vocab"][:fixed] + sorted(pieces, key=lambda item: (-item[1], item[0]))
    elif model["type"] == "WordPiece":
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
        counts = _token_counts(_without_length_limits(backend), corpus_files, reader)
        vocab = model["vocab"]
        ranked = sorted((token for token, index in vocab.items() if index >= fixed),
                        key=lambda token: (-counts[vocab[token]], token))
        head = {token: index for token, index in vocab.items() if index < fixed}
        model["vocab"] = {**head, **{token: fixed + rank for rank, token in enumerate(ranked)}}
    return spec


def plain_backend(tokenizer: PreTrainedTokenizerBase) -> Any:
    """A copy of the Rust tokenizer without the truncation/padding some tokenizer.json files enable."""
    from tokenizers import Tokenizer

    return _without_length_limits(Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()))


def _without_length_limits(backend: Any) -> Any:
    backend.no_truncation()
    backend.no_padding()
    return backend


def _insert_byte_pieces(model: dict[str, Any], position: int) -> None:
    """SentencePiece's layout: the 256 ``<0xNN>`` pieces right after the special tokens."""
    if model["type"] == "Unigram":
        model["vocab"][position:position] = [[piece, 0.0] for piece in BYTE_PIECES]
        if model.get("unk_id") is not None and model["unk_id"] >= position:
            model["unk_id"] += len(BYTE_PIECES)
        return
    shifted = {token: index + len(BYTE_PIECES) if index >= position else index
               for token, index in model["vocab"].items()}
    shifted.update({piece: position + offset for offset, piece in enumerate(BYTE_PIECES)})
    model["vocab"] = dict(sorted(shifted.items(), key=lambda item: item[1]))


def _model_tokens(spec: dict[str, Any]) -> dict[str, int]:
    """Token -> id of the backend model vocabulary (added tokens included when also in the model)."""
    vocab = spec["model"]["vocab"]
    if spec["model"]["type"] == "Unigram":
        return {piece: index for index, (piece, _score) in enumerate(vocab)}
    return dict(vocab)


def _save(tokenizer: PreTrainedTokenizerBase, spec: dict[str, Any], directory: Path, expected_class: type) -> Any:
    """``save_pretrained`` with ``spec`` as tokenizer.json, then check it reloads as ``expected_class``."""
    tokenizer.save_pretrained(directory)
    with atomic_file(Path(directory) / "tokenizer.json") as handle:
        json.dump(spec, handle, ensure_ascii=False, indent=2)
    reloaded = _reload(directory)
    if type(reloaded) is not expected_class:
        raise RuntimeError(f"saved tokenizer reloads as {type(reloaded).__name__}, not {expected_class.__name__}")
    return reloaded


def _reload(directory: str | os.PathLike) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


# ----------------------------------------------------------------------------- extension


def _ranked_pieces(target: dict[str, Any], family: TokenizerFamily) -> list[str]:
    """Target model pieces, most useful first, without special tokens and byte-fallback pieces."""
    added = {token["content"] for token in target["added_tokens"]}
    if family.model == "Unigram":
        ranked = [piece for piece, _score in sorted(target["model"]["vocab"], key=lambda item: -item[1])]
    else:  # WordPiece/BPE ids follow the alphabet, then merge order
        ranked = [token for token, _index in sorted(target["model"]["vocab"].items(), key=lambda item: item[1])]
    return [piece for piece in ranked if piece not in added and not _BYTE_PIECE.match(piece)]


def _append_pieces(source: dict[str, Any], target: dict[str, Any], pieces: list[str], first_id: int) -> dict[str, Any]:
    """Source backend JSON with ``pieces`` appended to the model at ids ``first_id``, ``first_id+1``..."""
    extended = copy.deepcopy(source)
    model = extended["model"]
    if model["type"] == "Unigram":
        scores = dict((piece, score) for piece, score in target["model"]["vocab"])
        by_id = {token["id"]: token["content"] for token in extended["added_tokens"]}
        # ids between the model vocab and first_id belong to added tokens: mirror them so ids stay aligned
        model["vocab"].extend([by_id[index], 0.0] for index in range(len(model["vocab"]), first_id))
        model["vocab"].extend([piece, scores[piece]] for piece in pieces)
        return extended
    model["vocab"].update({piece: first_id + offset for offset, piece in enumerate(pieces)})
    if model["type"] == "BPE":
        new = set(pieces)
        as_text = bool(model["merges"]) and isinstance(model["merges"][0], str)
        for merge in target["model"]["merges"]:
            left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
            if left + right in new and left in model["vocab"] and right in model["vocab"]:
                model["merges"].append(f"{left} {right}" if as_text else [left, right])
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
    import numpy as np

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
