"""Generated input sets on which langgraft's ``wechsel`` and ``focus`` must agree with their packages.

Each :class:`CaseSpec` fixes a seed, the source and target tokenizer families and sizes, and the
fastText settings (dim, minn, maxn, minCount, buckets, casing); :func:`build_case` writes, from
those alone and on any machine the same bytes:

- two invented languages (seeded syllables), sentences with capitals, digits, single letters and
  punctuation (``,`` ``.`` ``!`` ``?`` ``'`` ``;`` ``:`` ``“`` ``”``);
- a source tokenizer + tiny source model and a target tokenizer of the spec's families, trained on them;
- word-level fastText ``.bin`` models for both languages and a token-level one for the target
  (words: the text split as fastText text is split, or tokenized by the target tokenizer, kept
  when seen ``min_count`` times, most frequent first, ``</s>`` first), written directly in
  fastText's format: rows of known words and of the buckets of their n-grams are seeded N(0, 1)
  ("trained"), every other bucket seeded U(-1/dim, 1/dim) as fastText initializes buckets it
  never updates, so the package's lookups of ``##`` pieces, specials and unseen n-grams all
  land on non-zero rows, as they do on a real model;
- a bilingual dictionary with capitalized entries, punctuation and single-letter pairs and words
  neither model knows.

``benchmarks/record_anchor_reference.py`` runs the packages on every case and stores what they
computed in ``tests/data/anchor_reference.json``; ``tests/vocab/test_anchor_parity.py`` rebuilds the
cases and holds langgraft to that record.
"""
from __future__ import annotations

import hashlib
import json
import random
import struct
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from langgraft.vocab.resources.text import split_words


@dataclass(frozen=True)
class CaseSpec:
    """One generated input set. WordPiece and ``▁`` vocabularies are large enough (over 100
    marked pieces) for deepfocus to recognize their family, as on any real vocabulary."""

    name: str
    seed: int
    # bert (WordPiece), gpt2 / llama3 (byte-level BPE), xlmr (Unigram ▁), llama (SentencePiece BPE, byte
    # fallback); source and target of one boundary family, as langgraft init requires
    source_family: str
    target_family: str
    source_vocab: int
    target_vocab: int
    dim: int
    minn: int
    maxn: int
    min_count: int
    bucket: int
    lowercase: bool  # whether the word-level fastText text was lowercased


CASES = (
    CaseSpec("wordpiece", 11, "bert", "bert", 500, 450, 16, 3, 6, 2, 4_000, True),
    CaseSpec("byte-bpe", 12, "gpt2", "gpt2", 420, 330, 12, 2, 4, 1, 3_001, False),
    CaseSpec("unigram", 13, "xlmr", "xlmr", 450, 280, 20, 1, 3, 3, 5_003, True),
    CaseSpec("byte-bpe-to-llama3-split", 14, "gpt2", "llama3", 380, 450, 8, 4, 5, 2, 2_500, False),
    CaseSpec("unigram-to-spm-bpe-byte-fallback", 15, "xlmr", "llama", 300, 700, 10, 3, 3, 1, 3_500, False),
    # no subwords (fastText sets bucket 0 when maxn is 0): only known words have vectors
    CaseSpec("wordpiece-no-subwords", 16, "bert", "bert", 450, 420, 12, 0, 0, 2, 0, True),
)

PUNCTUATION = [",", ".", "!", "?", "'", ";", ":", "“", "”"]


@dataclass
class BuiltCase:
    spec: CaseSpec
    source_model: Path
    target_tokenizer: Path
    source_embeddings: Path
    target_embeddings: Path
    token_embeddings: Path  # target text tokenized by the target tokenizer (FOCUS)
    dictionary: Path
    fingerprint: str


def _language(rng: random.Random, syllables: list[str], size: int) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def _sentences(rng: random.Random, words: list[str], n: int) -> list[str]:
    """Zipf-like word choice, a capital at the start, punctuation glued or spaced, digits, single letters."""
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    out = []
    for _ in range(n):
        tokens = rng.choices(words, weights, k=rng.randint(4, 12))
        if rng.random() < 0.3:
            tokens.insert(rng.randrange(len(tokens)), rng.choice("abcdefghijklmnopqrstuvwxyz"))
        if rng.random() < 0.15:
            tokens.insert(rng.randrange(len(tokens)), str(rng.randint(1, 150)))
        text = tokens[0].capitalize()
        for token in tokens[1:]:
            mark = rng.random()
            if mark < 0.12:
                text += rng.choice(",;:") + " " + token
            elif mark < 0.17:
                text += " “" + token + "”"
            elif mark < 0.2:
                text += "'" + token
            else:
                text += " " + token
        out.append(text + rng.choice(".!?."))
    return out


def languages(spec: CaseSpec) -> tuple[list[str], list[str], list[str], list[str]]:
    """(source sentences, target sentences, source words, target words) of the spec's seed."""
    rng = random.Random(spec.seed)
    source_words = _language(rng, "the an re in on er st ing ed or al it is ar ou le".split(), 160)
    target_words = _language(rng, "ku mu ba nd ka li ta pa wa ma chi zi ye lo ne nthu dza gwe".split(), 170)
    return (_sentences(rng, source_words, 500), _sentences(rng, target_words, 500), source_words, target_words)


def _char_ngrams(word: str, minn: int, maxn: int) -> list[str]:
    """fastText's character n-grams of ``<word>`` (on characters; lone markers skipped)."""
    marked = f"<{word}>"
    grams = []
    for i in range(len(marked)):
        for n in range(max(minn, 1), maxn + 1):
            if i + n > len(marked) or (n == 1 and (i == 0 or i + n == len(marked))):
                continue
            grams.append(marked[i:i + n])
    return grams


def _fasttext_hash(text: str) -> int:
    h = 2166136261
    for byte in text.encode("utf-8"):
        h = ((h ^ (byte - 256 if byte >= 128 else byte)) & 0xFFFFFFFF) * 16777619 & 0xFFFFFFFF
    return h


def vocabulary(lines: list[str], min_count: int) -> list[str]:
    """fastText's dictionary of space-split ``lines``: ``</s>`` per line, words seen ``min_count``
    times, most frequent first (ties in first-seen order)."""
    counts = Counter()
    for line in lines:
        counts.update(line.split())
        counts["</s>"] += 1
    kept = [w for w, c in counts.items() if c >= min_count]
    return sorted(kept, key=lambda w: -counts[w])


def write_fasttext_bin(path: Path, words: list[str], spec: CaseSpec, seed: int) -> None:
    """A skipgram fastText 0.9 ``.bin`` (format version 12) knowing ``words`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    dim = spec.dim
    matrix = rng.uniform(-1.0 / dim, 1.0 / dim, (len(words) + spec.bucket, dim)).astype("<f4")
    matrix[:len(words)] = rng.standard_normal((len(words), dim))
    if spec.maxn:
        for gram in sorted({g for w in words if w != "</s>" for g in _char_ngrams(w, spec.minn, spec.maxn)}):
            matrix[len(words) + _fasttext_hash(gram) % spec.bucket] = rng.standard_normal(dim)
    with open(path, "wb") as out:
        out.write(struct.pack("<ii", 793712314, 12))
        # dim ws epoch minCount neg wordNgrams loss(ns=2) model(skipgram=2) bucket minn maxn lrUpdateRate, t
        out.write(struct.pack("<12id", dim, 5, 5, spec.min_count, 5, 1, 2, 2, spec.bucket, spec.minn, spec.maxn,
                              100, 1e-4))
        out.write(struct.pack("<iiiqq", len(words), len(words), 0, 10 * len(words), -1))
        for word in words:
            out.write(word.encode("utf-8") + b"\0" + struct.pack("<qb", 10, 0))
        out.write(b"\0" + struct.pack("<qq", *matrix.shape) + matrix.tobytes())
        out.write(b"\0" + struct.pack("<qq", len(words), dim) + np.zeros((len(words), dim), "<f4").tobytes())


def _dictionary(spec: CaseSpec, source_words: list[str], target_words: list[str]) -> list[tuple[str, str]]:
    """Seeded word pairs, some capitalized, punctuation and single letters, some unknown to both models."""
    rng = random.Random(spec.seed + 1000)
    pairs = list(zip(rng.sample(source_words, 120), rng.sample(target_words, 120)))
    pairs = [(s.capitalize(), t) if i % 7 == 0 else (s, t.capitalize()) if i % 11 == 0 else (s, t)
             for i, (s, t) in enumerate(pairs)]
    pairs += [(p, p) for p in PUNCTUATION] + [(c, c) for c in "aeiostn"] + [("zzyzx", "qwqwq"), ("1", "1")]
    return pairs


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_wordpiece_tokenizer(out: Path, texts: list[str], vocab_size: int) -> None:
    """An uncased BERT WordPiece tokenizer whose vocabulary is chosen by counts with ties broken by
    the string (the tokenizers library's WordPiece trainer orders ties differently run to run):
    specials, every character and its ``##`` form, then the most frequent words, word-initial
    prefixes and ``##`` suffixes."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizer

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in texts for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    pieces = Counter()
    for word, count in words.items():
        pieces[word] += count
        for n in range(2, len(word)):
            pieces[word[:n]] += count
            pieces["##" + word[-n:]] += count
    vocab = list(dict.fromkeys(SPECIALS + chars + ["##" + c for c in chars]
                               + sorted(pieces, key=lambda p: (-pieces[p], p))))[:vocab_size]
    backend = Tokenizer(models.WordPiece({p: i for i, p in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer, backend.pre_tokenizer, backend.decoder = normalizer, splitter, decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    BertTokenizer(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                  sep_token="[SEP]", mask_token="[MASK]", do_lower_case=True).save_pretrained(out)


def build_unigram_tokenizer(out: Path, texts: list[str], vocab_size: int) -> None:
    """An XLM-R-style Unigram ``▁`` tokenizer whose pieces and scores come from counts, ties broken by
    the string (the Unigram trainer's result varies run to run): specials, every character, the
    most frequent ``▁`` pieces (half the rest), then the most frequent substrings, scored by log
    frequency."""
    import math

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    words = Counter("\u2581" + w for text in texts for w in text.split())
    pieces = Counter()
    for word, count in words.items():
        for start in range(len(word)):
            for end in range(start + 1, len(word) + 1):
                pieces[word[start:end]] += count
    chars = sorted(p for p in pieces if len(p) == 1)
    ranked = sorted(pieces, key=lambda p: (-pieces[p], p))
    initial = [p for p in ranked if p.startswith("\u2581")][:(vocab_size - len(specials) - len(chars)) // 2]
    chosen = list(dict.fromkeys(chars + initial + ranked))[:vocab_size - len(specials)]
    total = sum(pieces[p] for p in chosen)
    vocab = [(p, 0.0) for p in specials] + [(p, math.log(pieces[p] / total)) for p in chosen]
    backend = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    XLMRobertaTokenizer(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>").save_pretrained(out)


def build_case(spec: CaseSpec, root: Path) -> BuiltCase:
    """Write the spec's inputs under ``root``; deterministic from the spec alone."""
    from transformers import AutoTokenizer

    from tiny import TOKENIZER_BUILDERS, build_llama3_tokenizer, build_model

    builders = {**TOKENIZER_BUILDERS, "bert": build_wordpiece_tokenizer, "xlmr": build_unigram_tokenizer,
                "llama3": build_llama3_tokenizer}
    root.mkdir(parents=True, exist_ok=True)
    source_lines, target_lines, source_words, target_words = languages(spec)
    source_model, target_tokenizer = root / "source-model", root / "target-tokenizer"
    builders[spec.source_family](source_model, source_lines, vocab_size=spec.source_vocab)
    build_model(spec.source_family, source_model, source_model, seed=spec.seed)
    builders[spec.target_family](target_tokenizer, target_lines, vocab_size=spec.target_vocab)

    def split(lines: list[str]) -> list[str]:
        return [" ".join(split_words(line, spec.lowercase)) for line in lines]

    tokenizer = AutoTokenizer.from_pretrained(target_tokenizer)
    tokenized = [" ".join(tokenizer.tokenize(line)) for line in target_lines]
    files = {"source.bin": (split(source_lines), 1), "target.bin": (split(target_lines), 2),
             "tokens.bin": (tokenized, 3)}
    for name, (lines, seed) in files.items():
        write_fasttext_bin(root / name, vocabulary(lines, spec.min_count), spec, spec.seed * 10 + seed)
    dictionary = root / "dictionary.tsv"
    dictionary.write_text("".join(f"{s}\t{t}\n" for s, t in _dictionary(spec, source_words, target_words)),
                          encoding="utf-8")

    digest = hashlib.sha256(json.dumps(asdict(spec)).encode())
    for name in ("source.bin", "target.bin", "tokens.bin", "dictionary.tsv"):
        digest.update((root / name).read_bytes())
    for folder in (source_model, target_tokenizer):
        vocab = AutoTokenizer.from_pretrained(folder).get_vocab()
        digest.update(json.dumps(sorted(vocab.items())).encode())
    return BuiltCase(spec, source_model, target_tokenizer, root / "source.bin", root / "target.bin",
                     root / "tokens.bin", dictionary, digest.hexdigest())
