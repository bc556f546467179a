"""A small fixed WECHSEL case, built in-process, on which langgraft must agree with the ``wechsel`` package.

Everything is synthetic and seeded, so the same bytes come out on every machine:

- two WordPiece vocabularies (word-initial pieces, ``##`` continuations of 1 to 5 characters,
  pieces with no known n-gram);
- two fastText ``.bin`` models written directly in fastText's format (the fasttext library loads
  them, so the package runs on them unchanged): seeded word rows, and seeded rows for exactly the
  character n-grams of the model's words — every other n-gram bucket is zero, so the ``##`` and
  special-token n-grams carry nothing (:func:`build_case` checks it) — a small, readable case;
  ``tests/anchor_cases.py`` generates cases where those buckets are non-zero, as in a trained model;
- a lowercase bilingual dictionary and a seeded source embedding matrix.

``benchmarks/record_wechsel_reference.py`` runs the package on this case once and stores its
neighbours and weights in ``tests/data/wechsel_reference.json``; the test compares langgraft's
``wechsel`` with that record, so CI needs no package.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# BUCKET: the first size from 20,000 at which build_case finds no package-only n-gram in a used bucket
DIM, MINN, MAXN, BUCKET, HIDDEN = 16, 3, 6, 22_851, 12
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# concept -> (source word, target word): the dictionary, and the words both fastText models know
CONCEPTS = [("lord", "ambuye"), ("god", "mulungu"), ("king", "mfumu"), ("people", "anthu"), ("land", "dziko"),
            ("house", "nyumba"), ("water", "madzi"), ("light", "kuwala"), ("fire", "moto"), ("bread", "mkate"),
            ("sea", "nyanja"), ("city", "mzinda"), ("word", "mawu"), ("father", "atate"), ("son", "mwana"),
            ("day", "tsiku"), ("man", "munthu"), ("came", "anabwera"), ("went", "anapita"), ("said", "anati"),
            ("heaven", "kumwamba"), ("earth", "dziko lapansi"), ("name", "dzina"), ("hand", "dzanja"),
            ("voice", "mawu ake"), ("spirit", "mzimu"), ("children", "ana"), ("sword", "lupanga"),
            ("mountain", "phiri"), ("river", "mtsinje")]
SOURCE_EXTRA_WORDS = ["a", "kings", "lords", "houses", "waters", "lighting", "burned", "gods", "sons", "saying", "and", "the"]
TARGET_EXTRA_WORDS = ["a", "mafumu", "nyumbazo", "madzina", "kuwalako", "ndipo", "ndi", "anapitanso", "mizinda", "ana"]
SOURCE_PIECES = ["lo", "ki", "ho", "wat", "li", "bur", "cit", "s", "a", "e", "x",
                 "##s", "##e", "##a", "##x", "##ing", "##ed", "##ds", "##ses", "##ers", "##ght", "##ord", "##ater",
                 "##aying", "##ren", "##ain", "##qz"]
TARGET_PIECES = ["mu", "mf", "ndi", "ku", "nyu", "mad", "a", "i", "q", "zz",
                 "##a", "##i", "##o", "##z", "##ngu", "##ana", "##umu", "##zo", "##ko", "##ndi", "##nso", "##dzi",
                 "##ate", "##buye", "##anga", "##iri", "##qq", "##zina"]


@dataclass
class Case:
    """Paths of the built case and its fingerprint (sha256 of every input byte)."""

    source_model: Path  # a tiny BERT masked LM with its tokenizer
    target_tokenizer: Path
    source_embeddings: Path
    target_embeddings: Path
    dictionary: Path
    fingerprint: str


def char_ngrams(word: str) -> list[str]:
    """fastText's character n-grams of ``<word>`` (``MINN``..``MAXN`` characters)."""
    marked = f"<{word}>"
    return [marked[i:i + n] for i in range(len(marked)) for n in range(MINN, MAXN + 1) if i + n <= len(marked)]


def fasttext_hash(text: str) -> int:
    """fastText's 32-bit FNV-1a over UTF-8 bytes, each byte sign-extended as a C++ int8."""
    h = 2166136261
    for byte in text.encode("utf-8"):
        h = ((h ^ (byte - 256 if byte >= 128 else byte)) & 0xFFFFFFFF) * 16777619 & 0xFFFFFFFF
    return h


def write_fasttext_bin(path: Path, words: list[str], seed: int) -> None:
    """A skipgram fastText 0.9 ``.bin`` (format version 12) knowing ``words``.

    Word rows and the buckets of the words' own n-grams get seeded N(0, 1) rows; all other buckets
    stay zero (never trained). The output matrix is zero (word vectors never read it).
    """
    rng = np.random.default_rng(seed)
    matrix = np.zeros((len(words) + BUCKET, DIM), dtype="<f4")
    matrix[:len(words)] = rng.standard_normal((len(words), DIM))
    for gram in sorted({g for w in words for g in char_ngrams(w)}):
        matrix[len(words) + fasttext_hash(gram) % BUCKET] = rng.standard_normal(DIM)
    with open(path, "wb") as out:
        out.write(struct.pack("<ii", 793712314, 12))
        # dim ws epoch minCount neg wordNgrams loss(ns=2) model(skipgram=2) bucket minn maxn lrUpdateRate, t
        out.write(struct.pack("<12id", DIM, 5, 5, 1, 5, 1, 2, 2, BUCKET, MINN, MAXN, 100, 1e-4))
        out.write(struct.pack("<iiiqq", len(words), len(words), 0, 10 * len(words), -1))
        for word in words:
            out.write(word.encode("utf-8") + b"\0" + struct.pack("<qb", 10, 0))
        out.write(b"\0" + struct.pack("<qq", *matrix.shape) + matrix.tobytes())
        out.write(b"\0" + struct.pack("<qq", len(words), DIM) + np.zeros((len(words), DIM), "<f4").tobytes())


def package_only_grams(pieces: list[str]) -> list[str]:
    """n-grams only the package's surface rule looks up: the ``##`` marker's (``##x`` read as the
    word ``##x``) and special tokens' (never neighbours under ``surface=boundary``)."""
    grams = []
    for piece in pieces:
        if piece in SPECIALS:
            grams += char_ngrams(piece)
        elif piece.startswith("##"):
            grams += [g for g in char_ngrams(piece) if "#" in g]
    return grams


def free_of_package_only_grams(pieces: list[str], words: list[str], bucket: int) -> bool:
    """True when none of :func:`package_only_grams` shares a bucket with the n-grams of ``words``."""
    used = {fasttext_hash(g) % bucket for w in words for g in char_ngrams(w)}
    return not any(fasttext_hash(g) % bucket in used for g in package_only_grams(pieces))


def build_wordpiece(out: Path, pieces: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import BertTokenizer

    vocab = {piece: i for i, piece in enumerate(SPECIALS + pieces)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    BertTokenizer(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]").save_pretrained(out)


def source_words() -> list[str]:
    """The words the source fastText model knows."""
    return list(dict.fromkeys([s for s, _ in CONCEPTS] + SOURCE_EXTRA_WORDS))


def target_words() -> list[str]:
    """The words the target fastText model knows (multi-word translations split)."""
    return list(dict.fromkeys([w for _, t in CONCEPTS for w in t.split()] + TARGET_EXTRA_WORDS))


def source_pieces() -> list[str]:
    """The source vocabulary after the specials: most dictionary words, some inflections, pieces."""
    return list(dict.fromkeys([s for s, _ in CONCEPTS] + SOURCE_EXTRA_WORDS[:6] + SOURCE_PIECES))


def target_pieces() -> list[str]:
    """The target vocabulary after the specials: most one-word translations, some words, pieces."""
    return list(dict.fromkeys([t for _, t in CONCEPTS if " " not in t][:22] + TARGET_EXTRA_WORDS[:4] + TARGET_PIECES))


def build_case(root: Path) -> Case:
    """Write the fixed case under ``root`` (tokenizers, a tiny BERT source, fastText models, dictionary)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    root.mkdir(parents=True, exist_ok=True)
    source_bin, target_bin = root / "source.bin", root / "target.bin"
    write_fasttext_bin(source_bin, source_words(), seed=1)
    write_fasttext_bin(target_bin, target_words(), seed=2)
    if not (free_of_package_only_grams(SPECIALS + SOURCE_PIECES, source_words(), BUCKET)
            and free_of_package_only_grams(SPECIALS + TARGET_PIECES, target_words(), BUCKET)):
        raise AssertionError("a '##' or special-token n-gram shares a bucket with a word's n-gram: change BUCKET")
    dictionary = root / "dictionary.tsv"
    dictionary.write_text("".join(f"{s}\t{t}\n" for s, t in CONCEPTS), encoding="utf-8")
    build_wordpiece(root / "target-tokenizer", target_pieces())

    config = BertConfig(vocab_size=len(SPECIALS) + len(source_pieces()), hidden_size=HIDDEN, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=24, max_position_embeddings=32, pad_token_id=0)
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    embeddings = torch.randn(config.vocab_size, HIDDEN, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(embeddings)
    model.save_pretrained(root / "source-model")
    build_wordpiece(root / "source-model", source_pieces())

    digest = hashlib.sha256()
    for part in (source_bin.read_bytes(), target_bin.read_bytes(), dictionary.read_bytes(),
                 json.dumps([source_pieces(), target_pieces()]).encode(), embeddings.numpy().tobytes()):
        digest.update(part)
    return Case(root / "source-model", root / "target-tokenizer", source_bin, target_bin, dictionary,
                digest.hexdigest())
