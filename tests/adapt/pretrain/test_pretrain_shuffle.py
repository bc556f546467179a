"""Seeded, streaming shuffling of the pretraining data: chunk order per pass plus a bounded buffer."""
from __future__ import annotations

import gzip
import json
import random
from itertools import islice, pairwise
from pathlib import Path

import pytest
from tiny import target_sentences

from langgraft.adapt.pretrain import data
from langgraft.adapt.cli import main
from langgraft.adapt.pretrain.data import PackedLMStream, ShuffledCorpus, shuffle_buffer
from langgraft.corpora.readers import line_spans, read_documents
from langgraft.errors import UserError
from langgraft.models import load_tokenizer

DOCUMENTS = 2000


@pytest.fixture(scope="module")
def ordered(tmp_path_factory) -> tuple[Path, list[str]]:
    """An ordered corpus (``doc i`` on line i) of varied line lengths, ~100 KB."""
    rng = random.Random(5)
    lines = [f"doc {i} " + " ".join("w" * rng.randint(1, 9) for _ in range(rng.randint(1, 12)))
             for i in range(DOCUMENTS)]
    path = tmp_path_factory.mktemp("shuffle") / "ordered.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def _index(document: str) -> int:
    return int(document.split()[1])


def test_line_spans_tile_the_file_at_line_starts_with_their_line_numbers(ordered, tmp_path):
    path, lines = ordered
    raw = path.read_bytes()
    for span_bytes in (1, 300, 4096, 10**9):
        spans = line_spans(path, span_bytes)
        assert spans[0].start == 0 and spans[-1].end == len(raw)
        assert all(a.end == b.start for a, b in pairwise(spans))  # no gap, no overlap
        assert all(raw[s.start - 1:s.start] in (b"", b"\n") for s in spans)  # each starts at a line start
        assert all(raw[:s.start].count(b"\n") + 1 == s.first_line for s in spans)
        assert [d for s in spans for d in read_documents(path, span=s)] == lines
    assert len(line_spans(path, 4096)) == pytest.approx(len(raw) / 4096, abs=1)

    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(700)) + "{oops\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:701: invalid JSON"):  # the file's line, read from a chunk
        list(read_documents(bad, span=line_spans(bad, 1000)[-1]))


def test_a_pass_is_a_seeded_permutation_far_from_file_order(ordered):
    path, lines = ordered
    corpus = ShuffledCorpus(path, buffer_size=100, seed=7, chunk_bytes=1024)
    first = list(corpus.epoch(0))
    assert sorted(first) == sorted(lines) and len(first) == len(lines)  # nothing lost, nothing repeated
    assert first != lines
    assert first == list(ShuffledCorpus(path, 100, 7, chunk_bytes=1024).epoch(0))  # same seed, same order
    assert first != list(ShuffledCorpus(path, 100, 8, chunk_bytes=1024).epoch(0))  # another seed, another
    second = list(corpus.epoch(1))
    assert sorted(second) == sorted(lines) and second != first  # each pass is reshuffled
    assert list(islice(corpus, 2 * DOCUMENTS)) == first + second  # the endless stream is pass after pass
    # the chunk order spreads the start of a pass over the whole file, although the buffer holds 100
    assert max(map(_index, first[:100])) - min(map(_index, first[:100])) > DOCUMENTS // 2


def test_memory_holds_the_buffer_not_the_file(ordered, monkeypatch):
    path, lines = ordered
    read = 0

    def counting_reader(*args, **kwargs):
        nonlocal read
        for document in read_documents(*args, **kwargs):
            read += 1
            yield document

    monkeypatch.setattr(data, "read_documents", counting_reader)
    size = 50  # the file holds 40x more documents
    for given, document in enumerate(ShuffledCorpus(path, size, seed=1, chunk_bytes=512).epoch(0)):
        assert read - given <= size + 1  # read but not given out yet: the buffer and the one coming in
    assert read == len(lines) and given + 1 == len(lines)

    consumed = 0

    def items():
        nonlocal consumed
        for item in range(1000):
            consumed += 1
            yield item

    out = []
    for item in shuffle_buffer(items(), 10, random.Random(0)):
        assert consumed - len(out) <= 10 + 1
        out.append(item)
    assert sorted(out) == list(range(1000)) and out != list(range(1000))


def test_gzip_falls_back_to_the_buffer_alone(ordered, tmp_path):
    path, lines = ordered
    packed = tmp_path / "ordered.txt.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    shuffled = list(ShuffledCorpus(packed, buffer_size=20, seed=3).epoch(0))
    assert sorted(shuffled) == sorted(lines) and shuffled != lines
    # without seeking, a document can come out at most ~buffer places before its place in the file
    assert all(position >= _index(document) - 20 for position, document in enumerate(shuffled))


def test_shuffle_buffer_zero_is_file_order(ordered, tiny_models):
    path, lines = ordered
    assert list(islice(ShuffledCorpus(path, 0), 2 * DOCUMENTS)) == lines + lines
    tokenizer = load_tokenizer(tiny_models["gpt2"])
    in_order = PackedLMStream(tokenizer, [path], "clm", 32, shuffle_buffer=0).documents()
    assert list(islice(in_order, DOCUMENTS)) == lines
    shuffled = PackedLMStream(tokenizer, [path], "clm", 32, seed=0).documents()  # default: shuffled
    first_pass = list(islice(shuffled, DOCUMENTS))
    assert sorted(first_pass) == sorted(lines) and first_pass != lines


def test_packed_stream_shuffles_each_corpus_before_mixing_and_is_reproducible(ordered, tiny_models, tmp_path):
    path, _ = ordered
    other = tmp_path / "other.txt"
    other.write_text("\n".join(target_sentences(300, seed=4)) + "\n", encoding="utf-8")
    tokenizer = load_tokenizer(tiny_models["bert"])

    def stream(**options) -> PackedLMStream:
        return PackedLMStream(tokenizer, [path, other], "mlm", 32, seed=5, alpha=1.0, shuffle_buffer=64, **options)

    drawn = list(islice(stream().documents(), 1500))
    from_path = [d for d in drawn if d.startswith("doc ")]
    assert 0 < len(from_path) < len(drawn)  # both corpora are mixed in
    # corpus i of a stream seeded s is the ShuffledCorpus seeded "s:i", read in its own shuffled order
    assert from_path == list(islice(ShuffledCorpus(path, 64, "5:0"), len(from_path)))
    blocks = [b["input_ids"] for b in islice(stream(), 6)]
    assert all((a == b["input_ids"]).all() for a, b in zip(blocks, stream()))  # identical on every iteration
    assert all((a == b["input_ids"]).all() for a, b in zip(blocks[4:], stream(start_block=4)))  # resume / phase 2


def test_cli_option_is_recorded_and_checked_on_resume(tiny_models, ordered, tmp_path, capsys):
    path, _ = ordered
    args = ["pretrain", "--model", str(tiny_models["gpt2"]), "--corpus", str(path), "--max-steps", "1",
            "--max-seq-length", "16", "--per-device-train-batch-size", "2", "--report-to", "none"]
    assert main([*args, "--out", str(tmp_path / "bad"), "--shuffle-buffer", "-1"]) == 2
    assert "--shuffle-buffer" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    out = tmp_path / "run"
    assert main([*args, "--out", str(out), "--shuffle-buffer", "0"]) == 0
    assert json.loads((out / "langgraft_pretrain.json").read_text())["data"]["shuffle_buffer"] == 0
    capsys.readouterr()
    assert main([*args, "--out", str(out), "--resume"]) == 2  # the default buffer would change the data order
    assert "shuffle_buffer was 0, now 10000" in capsys.readouterr().err
