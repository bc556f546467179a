"""Boundary-aware canonical token surfaces, so tokens of different tokenizers can be compared.

Every vocabulary marks word boundaries differently: WordPiece marks *continuations* (``##ing``),
byte-level BPE and SentencePiece mark *word-initial* pieces (``Ġthe``, ``▁the``), byte-level BPE
stores bytes as printable stand-in characters, and SentencePiece byte fallback stores raw bytes
as ``<0xNN>``. Comparing raw strings, or stripping the marker, confuses ``the`` at the start of a
word with ``the`` inside one (the defect of the published WECHSEL/FVT code). Here every token
becomes a :class:`CanonicalToken` ``(raw bytes, word_initial)`` whose :attr:`~CanonicalToken.key`
is equal across tokenizer families exactly when the pieces mean the same thing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from langgraft.errors import UserError

# Tokenizer families (TokenizerFamily.name); "other" is any tokenizer outside them (read, never trained).
FAMILIES = ("wordpiece", "byte-level-bpe", "sentencepiece-unigram", "sentencepiece-bpe")
OTHER = "other"
# How a family marks word boundaries (TokenizerFamily.marker): what canonical surfaces decode.
WORDPIECE = "wordpiece"  # ``##`` marks a continuation
BYTE_LEVEL = "byte-level"  # ``Ġ`` (a byte-level space) starts a word
SENTENCEPIECE = "sentencepiece"  # ``▁`` starts a word
PLAIN = "plain"  # no marker known

SPM_MARKER = "\u2581"
BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")

# Special-token roles, in the order used to map them between tokenizers.
ROLES = ("cls", "bos", "sep", "eos", "pad", "mask", "unk")
# A role missing in the source falls back to its twin (cls<->bos, sep<->eos).
ROLE_TWINS = {"cls": "bos", "bos": "cls", "sep": "eos", "eos": "sep"}


@dataclass(frozen=True)
class CanonicalToken:
    """One vocabulary entry with its boundary marker decoded.

    ``raw`` is the piece's real bytes without marker (``b"the"`` for ``Ġthe``/``▁the``/``the``),
    ``word_initial`` says whether the piece starts a word, ``is_byte`` marks a single-byte piece
    (``<0xE2>`` or a lone byte-level byte), ``is_special`` a special/control token.
    """

    raw: bytes
    word_initial: bool
    is_special: bool = False
    is_byte: bool = False

    @property
    def text(self) -> str:
        """Readable surface (invalid UTF-8 shown as U+FFFD); never used for matching."""
        return self.raw.decode("utf-8", errors="replace")

    @property
    def key(self) -> tuple[bytes, bool] | None:
        """Exact-match key across tokenizers of any family; ``None`` for specials (mapped by role)."""
        return None if self.is_special else (self.raw, self.word_initial)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table (printable stand-in character -> byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def backend_json(tokenizer: Any) -> dict[str, Any]:
    """The fast tokenizer's ``tokenizer.json`` as a mapping; a :class:`UserError` for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} has no fast (tokenizers) backend; "
            "give a model directory with a tokenizer.json"
        )
    return json.loads(backend.to_str())


def _component_types(component: dict | None) -> set[str]:
    if not component:
        return set()
    types = {component.get("type", "")}
    for key in ("pretokenizers", "normalizers", "decoders", "processors"):
        for child in component.get(key) or []:
            types |= _component_types(child)
    return types


@dataclass(frozen=True)
class TokenizerFamily:
    """A tokenizer's family: what training must respect and how its pieces mark word boundaries."""

    name: str  # one of FAMILIES, or OTHER
    model: str  # the `tokenizers` model type: WordPiece, BPE, Unigram, ...
    marker: str  # WORDPIECE, BYTE_LEVEL, SENTENCEPIECE or PLAIN
    byte_level: bool = False  # pieces are GPT-2 byte-to-unicode strings (all 256 bytes in the alphabet)
    byte_fallback: bool = False  # <0xNN> pieces spell characters outside the vocabulary


def detect_family(tokenizer: Any) -> TokenizerFamily:
    """The family of a fast tokenizer, read from its backend JSON (the one detector)."""
    spec = backend_json(tokenizer)
    model = spec.get("model") or {}
    kind = model.get("type", "")
    byte_fallback = bool(model.get("byte_fallback"))
    types = _component_types(spec.get("pre_tokenizer")) | _component_types(spec.get("decoder"))
    if kind == "WordPiece":
        return TokenizerFamily("wordpiece", kind, WORDPIECE)
    if "ByteLevel" in types:
        return TokenizerFamily("byte-level-bpe" if kind == "BPE" else OTHER, kind, BYTE_LEVEL, byte_level=True)
    spm = {"BPE": "sentencepiece-bpe", "Unigram": "sentencepiece-unigram"}.get(kind, OTHER)
    # legacy SentencePiece conversions put spaces -> ``▁`` in the normalizer, not the pre-tokenizer
    if "Metaspace" in types or SPM_MARKER in json.dumps(spec.get("normalizer") or {}, ensure_ascii=False):
        return TokenizerFamily(spm, kind, SENTENCEPIECE, byte_fallback=byte_fallback)
    if kind == "Unigram":  # trainable as SentencePiece Unigram, though no marker is known
        return TokenizerFamily(spm, kind, PLAIN, byte_fallback=byte_fallback)
    return TokenizerFamily(OTHER, kind, PLAIN, byte_fallback=byte_fallback)


def special_ids(tokenizer: Any) -> set[int]:
    """Ids of special tokens (named specials and added tokens flagged special)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return {i for i in ids if i is not None and 0 <= i < len(tokenizer)}


def special_roles(tokenizer: Any) -> dict[str, int]:
    """role -> token id for the roles in :data:`ROLES` that the tokenizer defines."""
    roles = {}
    for role in ROLES:
        token_id = getattr(tokenizer, f"{role}_token_id", None)
        if token_id is not None and 0 <= token_id < len(tokenizer):
            roles[role] = int(token_id)
    return roles


def canonicalize(piece: str, marker: str, *, special: bool = False, continuation_prefix: str = "##") -> CanonicalToken:
    """Canonical form of one vocabulary string under the boundary ``marker`` convention (:attr:`TokenizerFamily.marker`)."""
    if special:
        return CanonicalToken(piece.encode("utf-8"), word_initial=True, is_special=True)
    if marker == WORDPIECE:
        if continuation_prefix and piece.startswith(continuation_prefix) and len(piece) > len(continuation_prefix):
            return CanonicalToken(piece[len(continuation_prefix):].encode("utf-8"), word_initial=False)
        return CanonicalToken(piece.encode("utf-8"), word_initial=True)
    if marker == BYTE_LEVEL:
        table = _byte_decoder()
        if all(ch in table for ch in piece):
            raw = bytes(table[ch] for ch in piece)
        else:  # an added token stored as plain text
            raw = piece.encode("utf-8")
        word_initial = raw.startswith(b" ")
        raw = raw[1:] if word_initial else raw
        return CanonicalToken(raw, word_initial, is_byte=len(raw) == 1 and raw[0] >= 0x80)
    if marker == SENTENCEPIECE:
        match = BYTE_PIECE.match(piece)
        if match:
            return CanonicalToken(bytes([int(match.group(1), 16)]), word_initial=False, is_byte=True)
        word_initial = piece.startswith(SPM_MARKER)
        text = piece[1:] if word_initial else piece
        return CanonicalToken(text.replace(SPM_MARKER, " ").encode("utf-8"), word_initial)
    return CanonicalToken(piece.encode("utf-8"), word_initial=True)


def canonical_tokens(tokenizer: Any) -> list[CanonicalToken]:
    """Canonical form of every id ``0..len(tokenizer)-1`` (index = token id)."""
    marker = detect_family(tokenizer).marker
    prefix = (backend_json(tokenizer).get("model") or {}).get("continuing_subword_prefix") or "##"
    specials = special_ids(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [canonicalize(piece or "", marker, special=i in specials, continuation_prefix=prefix)
            for i, piece in enumerate(pieces)]


def exact_matches(target: Sequence[CanonicalToken], source: Sequence[CanonicalToken]) -> dict[int, int]:
    """target id -> source id for non-special tokens whose canonical keys are equal.

    When a key occurs twice in the source (a byte-fallback piece and a real piece with the same
    bytes, or an added duplicate), the real piece and then the lowest id wins.
    """
    index: dict[tuple[bytes, bool], int] = {}
    for source_id in sorted(range(len(source)), key=lambda i: (source[i].is_byte, i)):
        token = source[source_id]
        if token.key is not None:
            index.setdefault(token.key, source_id)
    return {t: index[tok.key] for t, tok in enumerate(target) if tok.key is not None and tok.key in index}


def _surface_for(token: CanonicalToken, marker: str) -> str:
    """The string a tokenizer's model with this boundary ``marker`` would see for this piece."""
    text = token.raw.decode("utf-8", errors="replace")
    if marker == WORDPIECE:
        return text if token.word_initial else "##" + text
    if marker == BYTE_LEVEL:
        table = {b: ch for ch, b in _byte_decoder().items()}
        raw = (b" " if token.word_initial else b"") + token.raw
        return "".join(table[b] for b in raw)
    if marker == SENTENCEPIECE:
        return (SPM_MARKER if token.word_initial else "") + text.replace(" ", SPM_MARKER)
    return text


def decompose(tokens: Sequence[CanonicalToken], tokenizer: Any) -> list[list[int]]:
    """Split each canonical token into ids of ``tokenizer`` respecting its boundary position.

    A word-initial piece is split as the start of a word, a continuation piece as the inside of a
    word (WordPiece pieces get ``##``; BPE/SentencePiece pieces get no marker). Specials and empty
    surfaces give ``[]``. Runs the tokenizer's model directly (no pre-tokenizer), after the
    WordPiece normalizer (lower-casing, accents) when the tokenizer has one. When a WordPiece
    vocabulary cannot spell a continuation with ``##`` pieces, the word-initial split is used.
    """
    marker = detect_family(tokenizer).marker
    backend = tokenizer.backend_tokenizer
    normalizer = backend.normalizer if marker == WORDPIECE else None
    unk_id = getattr(tokenizer, "unk_token_id", None)
    out: list[list[int]] = []
    for token in tokens:
        if token.is_special or not token.raw:
            out.append([])
            continue
        if normalizer is not None:
            token = CanonicalToken(normalizer.normalize_str(token.text).encode("utf-8"), token.word_initial)
        surface = _surface_for(token, marker)
        ids = [piece.id for piece in backend.model.tokenize(surface)]
        if marker == WORDPIECE and not token.word_initial and ids:
            # WordPiece may match the literal '#' characters instead of a '##' piece.
            first = backend.model.id_to_token(ids[0]) or ""
            if not first.startswith("##"):
                ids = [piece.id for piece in backend.model.tokenize(token.text)]
        out.append([i for i in ids if i != unk_id])
    return out
