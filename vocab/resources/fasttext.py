"""Train and load fastText word vectors offline (WECHSEL's static embeddings, FOCUS's token space).

fastText is deterministic only with one thread: ``threads=1`` (the default) plus ``seed`` gives
a bit-identical ``.bin`` (training runs in a fresh process, see ``_TRAIN_SCRIPT``); more
threads are faster but Hogwild updates make every run differ.

Next to each trained ``X.bin`` a ``X.bin.json`` records how it was trained (corpus files, options,
``lowercase``). :func:`load_fasttext` reads it so token surfaces are looked up the way the
training text was written (lowercased or not); a ``.bin`` from elsewhere is read as cased.
"""
from __future__ import annotations

import json
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from langgraft.atomic import atomic_file
from langgraft.errors import UserError
from langgraft.options import Validated, option
from langgraft.sidecars import read_sidecar
from langgraft.corpora.readers import iter_text
from langgraft.vocab.resources.text import RESOURCE_DECODE_ERRORS, split_words

# Below this many running words fastText's vectors are noise; the error says how to fix it.
MIN_CORPUS_WORDS = 200


@dataclass
class FastTextOptions(Validated):
    """fastText hyper-parameters (fastText's own defaults except ``epochs`` and ``min_count``,
    which suit Bible-sized corpora of about a million words); ``resources fasttext`` options."""

    dim: int = option(100, help="vector dimension", ge=1, le=10_000)
    epochs: int = option(10, help="training epochs", ge=1, le=10_000)
    min_count: int = option(3, help="minimum word count", ge=1)
    model: Literal["skipgram", "cbow"] = option("skipgram", help="fastText model")
    minn: int = option(3, help="shortest character n-gram (0: none)", ge=0, le=32)
    maxn: int = option(6, help="longest character n-gram (0: none)", ge=0, le=32)
    neg: int = option(5, help="negatives sampled per word", ge=1, le=1000)
    bucket: int = option(2_000_000, help="n-gram hash buckets; the .bin holds bucket x dim floats", ge=0,
                         le=100_000_000)
    threads: int = option(1, help="threads; more than 1 is faster but not reproducible", ge=1, le=1024)
    seed: int = option(0, help="training seed", ge=0, le=2**31 - 2)
    lowercase: bool = option(True, help="lowercase the text (--no-lowercase keeps case)")
    split: bool = option(True, help="split punctuation off words; off for pre-tokenized text (token-level models)",
                         cli=False)
    # Small corpora: lower min_count to max(1, words // RELAX_WORDS_PER_COUNT) so that a corpus under
    # min_count × 100k words still gives most of its vocabulary a vector (FOCUS's minCount 10
    # assumes corpora of millions of words).
    relax_min_count: bool = option(False, help="lower min_count on small corpora", cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.maxn and self.minn > self.maxn:
            raise UserError(f"minn ({self.minn}) is larger than maxn ({self.maxn}); give minn <= maxn")


RELAX_WORDS_PER_COUNT = 100_000


def effective_min_count(options: FastTextOptions, running_words: int) -> int:
    if not options.relax_min_count:
        return options.min_count
    return min(options.min_count, max(1, running_words // RELAX_WORDS_PER_COUNT))


def _require_fasttext() -> Any:
    try:  # deferred: keeps fasttext off `langgraft --help`
        import fasttext
    except ImportError as exc:  # pragma: no cover - fasttext is a core dependency
        raise UserError("the fasttext package is missing; install it with: pip install fasttext") from exc
    fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the predict() deprecation banner
    return fasttext


def write_training_text(lines: Iterable[str], out_path: Path, options: FastTextOptions) -> tuple[int, dict[str, int]]:
    """Write one normalized line per input line; return (running words, word counts)."""
    counts: dict[str, int] = {}
    total = 0
    with open(out_path, "w", encoding="utf-8") as handle:
        for line in lines:
            words = split_words(line, options.lowercase) if options.split else line.split()
            if not words:
                continue
            total += len(words)
            for word in words:
                counts[word] = counts.get(word, 0) + 1
            handle.write(" ".join(words) + "\n")
    return total, counts


def train_fasttext_on_lines(lines: Iterable[str], out_bin: str | os.PathLike, options: FastTextOptions,
                            description: dict[str, Any] | None = None) -> "WordVectors":
    """Train on streamed ``lines`` and write ``out_bin`` (+ ``.json`` sidecar) atomically."""
    fasttext = _require_fasttext()
    out_bin = Path(out_bin)
    out_bin.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fasttext-", dir=out_bin.parent) as tmp:
        text_path = Path(tmp) / "train.txt"
        total, counts = write_training_text(lines, text_path, options)
        min_count = effective_min_count(options, total)
        frequent = sum(1 for count in counts.values() if count >= min_count)
        if total < MIN_CORPUS_WORDS or frequent == 0:
            raise UserError(
                f"corpus too small to train fastText: {total} words, {frequent} of them seen at least "
                f"min_count={min_count} times (need >= {MIN_CORPUS_WORDS} words and one frequent "
                "word); give more text or a lower --min-count"
            )
        arguments = dict(input=str(text_path), model=options.model, dim=options.dim, epoch=options.epochs,
                         minCount=min_count, minn=options.minn, maxn=options.maxn, neg=options.neg, bucket=options.bucket,
                         thread=options.threads, verbose=0, seed=options.seed)
        tmp_bin = Path(tmp) / "model.bin"
        _train_to_file(arguments, tmp_bin)
        model = fasttext.load_model(str(tmp_bin))
        with atomic_file(_sidecar(out_bin)) as handle:
            json.dump({"options": asdict(options), "min_count_used": min_count, "words": total,
                       "vocabulary": len(model.get_words()), **(description or {})},
                      handle, indent=2, ensure_ascii=False)
        os.replace(tmp_bin, out_bin)
    return WordVectors(model, lowercase=options.lowercase, path=out_bin)


# Trains in a fresh Python process: fastText's single-threaded trainer gives bit-identical models
# only from a clean process (in a long-lived one, state left by earlier work changes low-order
# bits, and on tiny corpora those grow into different vectors or a rare "Encountered NaN"). The
# seed goes in as ``seed + 1`` because fastText seeds std::minstd_rand, for which 0 and 1 coincide.
_TRAIN_SCRIPT = """
import json, sys
import fasttext
from fasttext import FastText as wrapper
arguments, out = json.loads(sys.argv[1]), sys.argv[2]
seed = arguments.pop("seed")
args, manual = wrapper.read_args((), arguments, list(arguments), wrapper.unsupervised_default)
built = wrapper._build_args(args, manual)
built.seed = seed + 1
model = wrapper._FastText(args=built)
wrapper.fasttext.train(model.f, built)
model.save_model(out)
"""
NAN_RETRIES = 3  # "Encountered NaN" on tiny corpora is fastText diverging; a new process retries


def _train_to_file(arguments: dict[str, Any], out: Path) -> None:
    for attempt in range(NAN_RETRIES):
        result = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(arguments), str(out)],
                                capture_output=True, text=True)
        if result.returncode == 0:
            return
        message = (result.stderr.strip().splitlines() or ["fastText exited with status %d" % result.returncode])[-1]
        if "NaN" not in message or attempt == NAN_RETRIES - 1:
            raise UserError(f"fastText training failed for {out.name}: {message}")


def train_fasttext(corpus_files: Sequence[str | os.PathLike], out_bin: str | os.PathLike,
                   options: FastTextOptions | None = None, **fields: Any) -> "WordVectors":
    """Train word-level fastText on text files (streamed, punctuation split off) and save ``out_bin``.

    ``options`` (or its fields as keywords: ``dim=300``). Deterministic with ``threads=1`` (default).
    Too little text raises :class:`UserError`.
    """
    options = dataclasses.replace(options or FastTextOptions(), **fields)
    return train_fasttext_on_lines(iter_text(corpus_files, RESOURCE_DECODE_ERRORS), out_bin, options,
                                   {"corpus": [str(Path(p)) for p in corpus_files]})


def tokenized_lines(lines: Iterable[str], tokenizer: Any, batch: int = 1000) -> Iterable[str]:
    """Each line as space-joined token strings (the tokenizer's own pieces), streamed in batches."""
    backend = tokenizer.backend_tokenizer
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == batch:
            yield from (" ".join(e.tokens) for e in backend.encode_batch(chunk, add_special_tokens=False))
            chunk = []
    if chunk:
        yield from (" ".join(e.tokens) for e in backend.encode_batch(chunk, add_special_tokens=False))


# FOCUS's settings (deepfocus's train_fasttext): CBOW, dim 100, 3 epochs, minCount 10, 10 negatives
FOCUS_TOKEN_OPTIONS = FastTextOptions(epochs=3, min_count=10, model="cbow", neg=10, lowercase=False, split=False)


def train_token_fasttext(corpus_files: Sequence[str | os.PathLike], tokenizer: Any, out_bin: str | os.PathLike,
                         options: FastTextOptions | None = None, **fields: Any) -> "WordVectors":
    """Token-level fastText (FOCUS): the corpus tokenized by ``tokenizer``, its token strings as
    fastText's words (case kept). Defaults are FOCUS's (:data:`FOCUS_TOKEN_OPTIONS`)."""
    options = dataclasses.replace(options or FOCUS_TOKEN_OPTIONS, **fields, lowercase=False, split=False)
    return train_fasttext_on_lines(tokenized_lines(iter_text(corpus_files, RESOURCE_DECODE_ERRORS), tokenizer), out_bin, options,
                                   {"corpus": [str(p) for p in corpus_files],
                                    "tokenized_with": getattr(tokenizer, "name_or_path", "")})


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def load_fasttext(path: str | os.PathLike, lowercase: bool | None = None) -> "WordVectors":
    """Open a fastText ``.bin``; ``lowercase`` defaults to what its ``.json`` sidecar recorded.

    Only the header and word list are parsed; the input matrix is memory-mapped (see
    :func:`read_fasttext_bin`), so opening costs no load of the whole file and only the rows a
    lookup touches are read.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"fastText model {path} does not exist; train one with `langgraft resources fasttext`")
    if lowercase is None:
        sidecar = _sidecar(path)
        lowercase = _sidecar_lowercase(sidecar) if sidecar.is_file() else False
    try:
        stored = read_fasttext_bin(path)
    except (ValueError, IndexError, struct.error) as exc:  # IndexError, struct.error: truncated file
        raise UserError(f"{path} is not a fastText .bin model: {exc}") from exc
    return WordVectors(lowercase=lowercase, path=path, stored=stored)


def _sidecar_lowercase(sidecar: Path) -> bool:
    """Whether the model in the sidecar's ``.bin`` was trained on lower-cased text."""
    fix = "re-train the model with `langgraft resources fasttext` or delete the sidecar"
    options = read_sidecar(sidecar, "the fastText training record", fix, {"options": dict})["options"]
    if not isinstance(options.get("lowercase"), bool):
        raise UserError(f"{sidecar}: the fastText training record: 'options.lowercase' must be true/false; {fix}")
    return options["lowercase"]


FASTTEXT_MAGIC, FASTTEXT_VERSION = 793712314, 12
EOS = "</s>"  # fastText's end-of-line word
# Args::save: dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate (int32), t (double)
_ARGS = struct.Struct("<12id")
_DICTIONARY = struct.Struct("<iiiqq")  # size, nwords, nlabels, ntokens, pruneidx size
_ENTRY_TAIL = 9  # after each NUL-terminated word: int64 count, int8 type


@dataclass
class StoredModel:
    """What a fastText ``.bin`` holds that word vectors need: n-gram settings, words, input matrix."""

    dim: int
    minn: int
    maxn: int
    bucket: int
    words: list[str]
    input_matrix: Any  # (words + buckets) × dim float32 numpy memmap, copy-on-write


def read_fasttext_bin(path: str | os.PathLike) -> StoredModel:
    """Parse a fastText ``.bin`` (format version 12, fastText 0.9) without the fasttext library.

    Raises ``ValueError`` for anything else and for quantized models (``.ftz``); a truncated
    file may raise ``IndexError`` or ``struct.error``.
    """

    with open(path, "rb") as handle:
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # empty file
            raise ValueError("empty file") from exc
    with data:
        if len(data) < 8 + _ARGS.size + _DICTIONARY.size:
            raise ValueError("file too short")
        magic, version = struct.unpack_from("<ii", data, 0)
        if magic != FASTTEXT_MAGIC or version > FASTTEXT_VERSION:
            raise ValueError(f"magic {magic} / version {version} is not a fastText 0.9 model")
        dim, *_, bucket, minn, maxn, _, _ = _ARGS.unpack_from(data, 8)
        position = 8 + _ARGS.size
        size, nwords, _, _, pruned = _DICTIONARY.unpack_from(data, position)
        position += _DICTIONARY.size
        words = []
        for _ in range(size):  # words come before labels in fastText's dictionary
            end = data.find(b"\0", position)
            if end < 0:
                raise ValueError("truncated dictionary")
            words.append(data[position:end].decode("utf-8", errors="replace"))
            position = end + 1 + _ENTRY_TAIL
        position += 8 * max(pruned, 0)
        if data[position]:
            raise ValueError("quantized fastText models (.ftz) are not supported; use a .bin")
        rows, columns = struct.unpack_from("<qq", data, position + 1)
        position += 17
    if columns != dim or position + rows * columns * 4 > os.path.getsize(path):
        raise ValueError("input matrix does not match the header")
    matrix = np.memmap(path, dtype="<f4", mode="c", offset=position, shape=(rows, columns))
    return StoredModel(dim=dim, minn=minn, maxn=maxn, bucket=bucket, words=words[:nwords], input_matrix=matrix)


class WordVectors:
    """A fastText model seen as: known ``words``, their ``matrix``, and a vector for any string.

    ``vectors(surfaces, word_initial)`` composes a vector from character n-grams: word-initial
    strings are looked up as whole words (exactly fastText's ``get_word_vector``: the word's row
    if known, its ``<word>`` n-grams, none for ``</s>``; the empty string is ``<>``), continuation pieces (WordPiece ``##x``, BPE pieces without a space marker) from the n-grams
    of ``x>`` — without the begin-of-word marker they never had. A continuation too short for
    any such n-gram (``##a`` when n-grams start at 3 characters) gets the zero vector, never the
    vector of the word ``a``.

    Built from a loaded fasttext ``model`` (after training) or from a :class:`StoredModel` read
    from ``path``; ``model`` (the fasttext library's object) is then loaded only if asked for.
    """

    def __init__(self, model: Any = None, lowercase: bool = False, path: Path | None = None,
                 stored: StoredModel | None = None) -> None:
        if model is None and stored is None:
            raise ValueError("WordVectors needs a fasttext model or a StoredModel")
        self._model = model
        self.lowercase = lowercase
        self.path = path
        self._stored = stored
        self._index: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"WordVectors(path={self.path!r}, lowercase={self.lowercase})"

    @property
    def model(self) -> Any:
        """The fasttext library's model (loaded on first use when opened from a path)."""
        if self._model is None:
            self._model = _require_fasttext().load_model(str(self.path))
        return self._model

    @property
    def stored(self) -> StoredModel:
        """Settings, words and input matrix, read from the library's model when built from one."""
        if self._stored is None:
            f = self._model.f
            if f.isQuant():
                raise UserError(f"{self.path}: quantized fastText models (.ftz) are not supported; use a .bin")
            args = f.getArgs()
            self._stored = StoredModel(dim=int(self._model.get_dimension()), minn=args.minn, maxn=args.maxn,
                                       bucket=args.bucket,
                                       words=list(self._model.get_words(on_unicode_error="replace")),
                                       input_matrix=np.asarray(f.getInputMatrix()))
        return self._stored

    @property
    def dim(self) -> int:
        return self.stored.dim

    @property
    def words(self) -> list[str]:
        return self.stored.words

    def word_ids(self, words: Iterable[str]) -> list[int]:
        """fastText vocabulary id of each word (after this model's casing rule), -1 if unknown."""
        index = self._word_index()
        return [index.get(self._case(w), -1) for w in words]

    def matrix(self) -> "Any":
        """Vectors of all known words (V × dim, float32 torch tensor), in ``words`` order."""
        return self.vectors(self.words, lowercase=False)

    def _case(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def vectors(self, surfaces: Sequence[str], word_initial: Sequence[bool] | None = None,
                lowercase: bool | None = None) -> "Any":
        """One vector per surface (len × dim float32 tensor); zero rows where nothing is known.

        Vectorized: n-gram ids come from :func:`ngram_hashes` (fastText's hash, in numpy) and the
        rows are averaged by one ``embedding_bag`` over a zero-copy view of the input matrix, so
        a 50k-token vocabulary takes a fraction of a second (no per-n-gram calls into fastText).
        """
        # deferred: keeps torch off `langgraft --help`
        import torch

        apply_case = self.lowercase if lowercase is None else lowercase
        args = self.stored
        word_index = self._word_index()
        texts = [surface.lower() if apply_case else surface for surface in surfaces]
        initial = np.ones(len(texts), dtype=bool) if word_initial is None else np.asarray(word_initial, dtype=bool)
        marked = [f"<{t}>" if first else f"{t}>" for t, first in zip(texts, initial.tolist())]
        if args.maxn:
            rows, hashes = ngram_hashes(marked, initial, args.minn, args.maxn)
        else:  # a model trained without subwords: whole words only
            rows, hashes = np.zeros(0, np.int64), np.zeros(0, np.int64)
        ids = hashes % max(args.bucket, 1) + len(word_index)
        lookups = (word_index.get(t, -1) if first and t else -1 for t, first in zip(texts, initial.tolist()))
        word_ids = np.fromiter(lookups, dtype=np.int64, count=len(texts))
        # fastText keeps no n-grams for its end-of-sentence word; the empty string has the n-gram
        # "<>" when minn <= 2, and an empty continuation none
        no_grams = np.fromiter(((t == EOS and first and EOS in word_index) or (not t and not first)
                                for t, first in zip(texts, initial.tolist())), dtype=bool, count=len(texts))
        keep_grams = ~no_grams[rows]
        has_word = np.nonzero(word_ids >= 0)[0]
        rows = np.concatenate([has_word, rows[keep_grams]])
        ids = np.concatenate([word_ids[has_word], ids[keep_grams]])
        order = np.argsort(rows, kind="stable")
        sizes = np.bincount(rows, minlength=len(texts))
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        matrix = torch.from_numpy(self.stored.input_matrix)
        out = torch.nn.functional.embedding_bag(torch.from_numpy(ids[order]), matrix, torch.from_numpy(offsets),
                                                mode="mean")
        out[torch.from_numpy(sizes == 0)] = 0.0
        return out

    @property
    def vocabulary(self) -> dict[str, int]:
        """Known word -> fastText id, exactly as stored (no casing rule; fastText's ``get_word_id``)."""
        return self._word_index()

    def _word_index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {word: i for i, word in enumerate(self.words)}
        return self._index


FNV_OFFSET, FNV_PRIME, UINT32 = 2166136261, 16777619, 0xFFFFFFFF


def ngram_hashes(strings: Sequence[str], begins_with_marker: "Any", minn: int, maxn: int) -> tuple["Any", "Any"]:
    """fastText's hash of every character n-gram (``minn <= n <= maxn``) of every string.

    fastText hashes the UTF-8 bytes of each n-gram with 32-bit FNV-1a, bytes sign-extended as
    C++ ``int8_t``. Here all strings are padded into one byte matrix and every start position is
    extended one byte at a time in numpy, emitting a hash whenever an n-gram ends on a character
    boundary. Single-character n-grams that are a boundary marker are skipped, as fastText does.
    Returns ``(string index, hash)`` arrays, one entry per n-gram.
    """

    encoded = [s.encode("utf-8") for s in strings]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    width = int(lengths.max(initial=0))
    # twice as wide (zero bytes beyond each string), so "the byte `step` after each start" is a slice
    padded = np.zeros((len(encoded), 2 * width + 1), dtype=np.uint8)
    flat = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    row_of_byte = np.repeat(np.arange(len(encoded)), lengths)
    col_of_byte = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[row_of_byte, col_of_byte] = flat
    signed = padded.astype(np.int8).astype(np.int64) & UINT32
    inside = np.arange(padded.shape[1])[None, :] < lengths[:, None]
    char_start = inside & ((padded & 0xC0) != 0x80)
    char_index = np.cumsum(char_start, axis=1) - 1
    ends_string = np.zeros(padded.shape, dtype=bool)
    ends_string[np.arange(len(encoded)), np.maximum(lengths - 1, 0)] = lengths > 0
    hashes = np.full((len(encoded), width), FNV_OFFSET, dtype=np.int64)
    alive = char_start[:, :width].copy()  # (string, start byte) pairs still extending
    start_index = char_index[:, :width]
    lone_begin = np.zeros((len(encoded), width), dtype=bool)
    lone_begin[:, 0] = np.asarray(begins_with_marker, dtype=bool)
    out_rows, out_hashes = [], []
    for step in range(width):
        alive &= inside[:, step:step + width]
        if not alive.any():
            break
        hashes = np.where(alive, ((hashes ^ signed[:, step:step + width]) * FNV_PRIME) & UINT32, hashes)
        at_end = ends_string[:, step:step + width]
        complete = alive & (at_end | char_start[:, step + 1:step + 1 + width])
        n = char_index[:, step:step + width] - start_index + 1
        emit = complete & (n >= minn) & (n <= maxn)
        if minn <= 1:  # fastText skips the lone "<" and ">" markers
            emit &= ~((n == 1) & (lone_begin | at_end))
        r, c = np.nonzero(emit)
        out_rows.append(r)
        out_hashes.append(hashes[r, c])
        alive &= ~(complete & (n >= maxn))
    if not out_rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(out_rows), np.concatenate(out_hashes)
