"""Offline transfer resources: fastText, dictionaries (TSV/MUSE/dictd), eflomal alignment, Procrustes, CLI."""
from __future__ import annotations

import gzip
import sys

import pytest
import torch

from langgraft.adapt.cli import main as cli
from langgraft.errors import UserError
from langgraft.vocab.resources import align, dictionary, fasttext, procrustes, text

SMALL_FASTTEXT = dict(dim=12, epochs=3, bucket=20_000)


@pytest.fixture(scope="session")
def source_vectors(tmp_path_factory, parallel_corpus):
    return fasttext.train_fasttext([parallel_corpus[0]], tmp_path_factory.mktemp("ft") / "src.bin", **SMALL_FASTTEXT)


@pytest.fixture(scope="session")
def target_vectors(tmp_path_factory, parallel_corpus):
    return fasttext.train_fasttext([parallel_corpus[1]], tmp_path_factory.mktemp("ft") / "tgt.bin", **SMALL_FASTTEXT)


@pytest.fixture(scope="session")
def word_alignment(parallel_corpus):
    return align.align_words(*text.parallel_sentences(parallel_corpus[0], parallel_corpus[1]))


# ------------------------------------------------------------------------------------------ text
def test_split_words_separates_punctuation_in_any_script():
    assert text.split_words("Said, the LORD: «Mwana»!") == ["said", ",", "the", "lord", ":", "«", "mwana", "»", "!"]
    assert text.split_words("Ωμέγα, δύο", lowercase=False) == ["Ωμέγα", ",", "δύο"]
    # combining marks are word characters: vowel signs and viramas, decomposed accents
    assert text.split_words("नमस्ते दुनिया। ಕನ್ನಡ") == ["नमस्ते", "दुनिया", "।", "ಕನ್ನಡ"]
    assert text.split_words("e\u0301te\u0301!") == ["e\u0301te\u0301", "!"]
    assert [text.is_punctuation(w) for w in ("।", "«", "_", "ಕ", "7")] == [True, True, False, False, False]


def test_parallel_sentences_by_line_and_by_id(tmp_path):
    (tmp_path / "a").write_text("one\n\nthree\n")
    (tmp_path / "b").write_text("uno\ndos\ntres\n")
    assert text.parallel_sentences(tmp_path / "a", tmp_path / "b") == (["one", "three"], ["uno", "tres"])
    (tmp_path / "c").write_text("GEN.1.1\tin the beginning\nGEN.1.2\tand the earth\n")
    (tmp_path / "d").write_text("GEN.1.2\tndi dziko\nGEN.1.1\tpachiyambi\nGEN.1.3\textra\n")
    assert text.parallel_sentences(tmp_path / "c", tmp_path / "d") == (
        ["in the beginning", "and the earth"], ["pachiyambi", "ndi dziko"])
    (tmp_path / "e").write_text("uno\n")
    with pytest.raises(UserError, match="not aligned"):
        text.parallel_sentences(tmp_path / "a", tmp_path / "e")
    (tmp_path / "f").write_text("id\tgroup\tlabel\ttext\nGEN.1.2\tGEN\tlaw\tndi dziko\nGEN.1.1\tGEN\tlaw\tpachiyambi\n")
    assert text.parallel_sentences(tmp_path / "c", tmp_path / "f") == (
        ["in the beginning", "and the earth"], ["pachiyambi", "ndi dziko"])  # corpus prepare's tables
    (tmp_path / "g").write_bytes(b"un\xff\n\ntres\n")
    assert text.parallel_sentences(tmp_path / "g", tmp_path / "b") == (["un\ufffd", "tres"], ["uno", "tres"])


# -------------------------------------------------------------------------------------- fastText
def test_fasttext_trains_deterministically_with_sidecar(tmp_path, parallel_corpus, source_vectors):
    again = fasttext.train_fasttext([parallel_corpus[0]], tmp_path / "again.bin", **SMALL_FASTTEXT)
    assert (tmp_path / "again.bin").read_bytes() == source_vectors.path.read_bytes()
    assert torch.equal(again.matrix(), source_vectors.matrix())
    probes = (["lord", "##ord", "xyz", "the"], [True, False, True, False])
    assert torch.equal(again.vectors(*probes), source_vectors.vectors(*probes))
    assert '"seed": 0' in (tmp_path / "again.bin.json").read_text()
    other_seed = fasttext.train_fasttext([parallel_corpus[0]], tmp_path / "seed1.bin", seed=1, **SMALL_FASTTEXT)
    assert not torch.equal(other_seed.matrix(), again.matrix())
    loaded = fasttext.load_fasttext(tmp_path / "again.bin")
    assert loaded.lowercase is True and loaded.dim == 12
    assert set(loaded.words) >= {"the", "lord", "."}
    assert torch.equal(loaded.matrix(), again.matrix())


def test_fasttext_vectors_respect_word_boundaries(source_vectors):
    initial, inside = source_vectors.vectors(["lord", "lord"], [True, False])
    assert initial.abs().sum() > 0 and inside.abs().sum() > 0
    assert not torch.allclose(initial, inside)  # "##lord" has no begin-of-word n-grams
    short, word = source_vectors.vectors(["the", "the"], [False, True])
    assert word.abs().sum() > 0
    assert short.abs().sum() > 0 and not torch.allclose(short, word)  # "##the": only the n-grams of "the>"
    # a one-character continuation ("##." in WordPiece) has no n-gram of ".>" (minn 3): no vector,
    # never the vector of the word "." that the model knows
    piece, known_word = source_vectors.vectors([".", "."], [False, True])
    assert known_word.abs().sum() > 0 and piece.abs().sum() == 0
    assert source_vectors.vectors([""])[0].abs().sum() == 0
    assert torch.equal(source_vectors.vectors(["LORD"])[0], source_vectors.vectors(["lord"])[0])  # lowercased model


def test_vectorized_ngram_vectors_match_fasttext(source_vectors):
    """Our numpy n-gram hashing + embedding_bag equals fastText's own get_word_vector, any script."""
    import numpy as np

    words = ["lord", "the", "wrocław", "日本語の", "naïve", "x", "", "ŋombe", "lordship"]
    ours = source_vectors.vectors(words, [True] * len(words))
    reference = torch.tensor(np.stack([source_vectors.model.get_word_vector(w) for w in words]))
    assert torch.allclose(ours, reference, atol=1e-6)
    rows, hashes = fasttext.ngram_hashes(["<wrocław>"], np.array([True]), 3, 6)
    _, ids = source_vectors.model.get_subwords("wrocław")  # OOV: n-gram ids only
    assert sorted((hashes % 20_000 + len(source_vectors.words)).tolist()) == sorted(ids.tolist())


def test_fasttext_corpus_too_small_is_a_user_error(tmp_path):
    (tmp_path / "tiny.txt").write_text("just a few words here\n")
    with pytest.raises(UserError, match="corpus too small"):
        fasttext.train_fasttext([tmp_path / "tiny.txt"], tmp_path / "out.bin", **SMALL_FASTTEXT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.txt"]  # nothing half-written
    with pytest.raises(UserError, match="does not exist"):
        fasttext.load_fasttext(tmp_path / "missing.bin")


# ------------------------------------------------------------------------------------ dictionary
def encode_dictd_number(value: int) -> str:
    digits = ""
    while True:
        digits = dictionary.DICTD_BASE64[value % 64] + digits
        value //= 64
        if value == 0:
            return digits


def write_dictd_fixture(stem) -> None:
    """A FreeDict-style dictd database (index + dictzip data) built by hand."""
    entries = [
        ("00databaseshort", "freedict test database\n"),
        ("house", "house /haʊs/ <n>\n1. nyumba, kanyumba (small)\n2. banja\n"),
        ("water", "water /ˈwɔːtə/\nmadzi\n\"the water is cold\" - madzi ndi ozizira\n"),
        ("king", "king /kɪŋ/\nmfumu; mwini\n"),
    ]
    data, index_lines, offset = b"", [], 0
    for head, body in entries:
        raw = body.encode("utf-8")
        index_lines.append(f"{head}\t{encode_dictd_number(offset)}\t{encode_dictd_number(len(raw))}\n")
        data += raw
        offset += len(raw)
    (stem.parent / (stem.name + ".index")).write_text("".join(index_lines), encoding="utf-8")
    with gzip.open(stem.parent / (stem.name + ".dict.dz"), "wb") as handle:
        handle.write(data)


def test_dictionary_formats(tmp_path):
    (tmp_path / "d.tsv").write_text("house\tnyumba\nhouse\tnyumba\nwater\tmadzi\textra\n\nbad line\n")
    assert dictionary.read_dictionary(tmp_path / "d.tsv") == [("house", "nyumba"), ("water", "madzi")]
    (tmp_path / "muse.txt").write_text("house nyumba\nwater madzi\n")
    assert dictionary.read_dictionary(tmp_path / "muse.txt") == [("house", "nyumba"), ("water", "madzi")]
    write_dictd_fixture(tmp_path / "freedict-eng-nya")
    pairs = dictionary.read_dictionary(tmp_path / "freedict-eng-nya.index")
    assert pairs == [("house", "nyumba"), ("house", "kanyumba"), ("house", "banja"), ("water", "madzi"),
                     ("king", "mfumu"), ("king", "mwini")]
    assert dictionary.read_dictionary(tmp_path / "freedict-eng-nya") == pairs  # prefix works too
    assert dictionary.write_dictionary(pairs, tmp_path / "out" / "d.tsv") == len(pairs)
    assert dictionary.read_dictionary(tmp_path / "out" / "d.tsv") == pairs
    assert dictionary.decode_dictd_number(encode_dictd_number(123456)) == 123456


def test_dictionary_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        dictionary.read_dictionary(tmp_path / "missing.tsv")
    (tmp_path / "empty.tsv").write_text("\n\n")
    with pytest.raises(UserError, match="no word pair"):
        dictionary.read_dictionary(tmp_path / "empty.tsv")
    with pytest.raises(UserError, match="unknown dictionary format"):
        dictionary.read_dictionary(tmp_path / "empty.tsv", format="xml")


# ---------------------------------------------------------------------------------- Procrustes
def test_procrustes_recovers_a_rotation():
    gen = torch.Generator().manual_seed(0)
    source = torch.randn(50, 8, generator=gen)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen))
    target = source @ rotation.T  # target space = rotated source space
    fitted = procrustes.fit_procrustes(source, target)
    assert torch.allclose(target @ fitted, source, atol=1e-4)
    assert torch.allclose(fitted @ fitted.T, torch.eye(8), atol=1e-5)
    with pytest.raises(UserError, match="dimensions differ"):
        procrustes.fit_procrustes(source, target[:, :4])


def test_procrustes_on_dictionary_pairs(parallel_corpus, source_vectors, target_vectors, tmp_path):
    mapping = parallel_corpus[2]
    pairs = [(s.title(), t.upper()) for s, t in mapping.items()]  # casing variants are tried
    rotation, used = procrustes.align_spaces(pairs, source_vectors, target_vectors)
    assert used == len(mapping) and rotation.shape == (12, 12)
    with pytest.raises(UserError, match="no dictionary pair"):
        procrustes.align_spaces([("zzz", "qqq")], source_vectors, target_vectors)
    other = fasttext.train_fasttext([parallel_corpus[1]], tmp_path / "t8.bin", dim=8, epochs=3, bucket=20_000)
    with pytest.raises(UserError, match="dimensions differ"):
        procrustes.align_spaces(pairs, source_vectors, other)


# -------------------------------------------------------------------------------------- eflomal
def test_symmetrize():
    forward, reverse = {(0, 0), (1, 1), (2, 1)}, {(0, 0), (1, 1), (1, 2)}
    assert align.symmetrize(forward, reverse, "intersection") == [(0, 0), (1, 1)]
    assert align.symmetrize(forward, reverse, "grow-diag") == [(0, 0), (1, 1), (1, 2), (2, 1)]
    with pytest.raises(UserError):
        align.symmetrize(forward, reverse, "union-ish")


@pytest.mark.slow
def test_induced_dictionary_recovers_the_translation(word_alignment, parallel_corpus):
    mapping = parallel_corpus[2]
    pairs = align.induce_dictionary(word_alignment, min_count=3, min_probability=0.3)
    correct = sum(1 for s, t in pairs if mapping.get(s) == t)
    assert len(pairs) >= 0.8 * len(mapping)
    assert correct >= 0.9 * len(pairs)
    assert all(any(ch.isalnum() for ch in s) for s, _ in pairs)  # punctuation pairs dropped


def test_missing_eflomal_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "eflomal", None)
    with pytest.raises(UserError, match="pip install eflomal"):
        align.align_words(["a b"], ["c d"])


def test_token_table_roundtrip(tmp_path, tiny_models, word_alignment, parallel_corpus):
    from transformers import AutoTokenizer

    source_tok = AutoTokenizer.from_pretrained(tiny_models["bert"])
    target_tok = AutoTokenizer.from_pretrained(tiny_models["gpt2"])  # any fast tokenizer works
    lines = text.parallel_sentences(parallel_corpus[0], parallel_corpus[1])
    counts = align.token_alignment_counts(word_alignment, *lines, source_tok, target_tok)
    assert counts.shape == (len(target_tok), len(source_tok)) and counts.values().sum() > 0
    written = align.write_token_table(counts, tmp_path / "table.tsv", source_tok, target_tok)
    back = align.read_token_table(tmp_path / "table.tsv", len(target_tok), len(source_tok))
    assert written == len(counts.values())
    assert torch.equal(back.indices(), counts.indices())
    assert torch.allclose(back.values(), counts.values(), rtol=1e-5)
    with pytest.raises(UserError, match="rebuild it"):
        align.read_token_table(tmp_path / "table.tsv", len(target_tok) + 1, len(source_tok))


# ------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_builds_every_resource(tmp_path, tiny_models, parallel_corpus, capsys):
    src, tgt, _ = parallel_corpus
    assert cli(["resources", "fasttext", "--corpus", str(src), "--out", str(tmp_path / "s.bin"), "--dim", "8",
                "--epochs", "2", "--bucket", "20000"]) == 0
    assert fasttext.load_fasttext(tmp_path / "s.bin").dim == 8
    assert cli(["resources", "dictionary", "--parallel", str(src), str(tgt), "--out", str(tmp_path / "d.tsv")]) == 0
    assert len(dictionary.read_dictionary(tmp_path / "d.tsv")) > 10
    write_dictd_fixture(tmp_path / "fd")
    assert cli(["resources", "dictionary", "--from", str(tmp_path / "fd.dict.dz"), "--out",
                str(tmp_path / "fd.tsv")]) == 0
    assert ("king", "mfumu") in dictionary.read_dictionary(tmp_path / "fd.tsv")
    assert cli(["resources", "align", "--parallel", str(src), str(tgt), "--source-tokenizer",
                str(tiny_models["bert"]), "--target-tokenizer", str(tiny_models["xlmr"]),
                "--out", str(tmp_path / "table.tsv")]) == 0
    assert (tmp_path / "table.tsv").read_text().startswith("# langgraft token alignment table")


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "small.txt").write_text("too small\n")
    assert cli(["resources", "fasttext", "--corpus", str(tmp_path / "small.txt"), "--out",
                str(tmp_path / "x.bin")]) == 2
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    assert cli(["resources", "dictionary", "--parallel", str(tmp_path / "a.txt"), str(tmp_path / "small.txt"),
                "--out", str(tmp_path / "d.tsv")]) == 2
    err = capsys.readouterr().err
    assert "corpus too small" in err and "not aligned" in err
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "small.txt"]
