"""Readers: every format, auto-detection, streaming memory, decode errors, parallel joins."""
from __future__ import annotations

import dataclasses
import gzip
import json
import tracemalloc

import pytest

from langgraft.adapt.cli import build_parser
from langgraft.adapt.pipeline.config import CorpusSource
from langgraft.corpora import (
    detect_format,
    iter_text,
    join_on_id,
    read_conllu,
    read_documents,
    read_iob,
    parallel_format,
    read_parallel,
    read_records,
)
from langgraft.corpora.prepare import CorpusOptions
from langgraft.errors import UserError

CONLLU = """# sent_id = s1
# text = Hello, world!
1\tHello\thello\tINTJ\tUH\t_\t0\troot\t_\tSpaceAfter=No
2\t,\t,\tPUNCT\t,\t_\t1\tpunct\t_\t_
3\tworld\tworld\tNOUN\tNN\t_\t1\tvocative\t_\tSpaceAfter=No
4\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_

# sent_id = s2
1-2\tdel\t_\t_\t_\t_\t_\t_\t_\t_
1\tde\tde\tADP\t_\t_\t3\tcase\t_\t_
2\tel\tel\tDET\t_\t_\t3\tdet\t_\t_
2.1\tx\tx\tX\t_\t_\t_\t_\t_\t_
3\tmar\tmar\tNOUN\t_\t_\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_
"""


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_text_lines_and_paragraphs(tmp_path):
    path = write(tmp_path / "a.txt", "\ufefffirst line\n\n  \nsecond\r\nthird\n\n\nfourth\n")
    assert list(read_documents(path)) == ["first line", "second", "third", "fourth"]
    assert list(read_documents(path, paragraphs=True)) == ["first line", "second third", "fourth"]


def test_unknown_suffix_is_text_and_gzip(tmp_path):
    assert list(read_documents(write(tmp_path / "corpus.ny", "a\nb\n"))) == ["a", "b"]
    packed = tmp_path / "c.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as handle:
        handle.write('{"text": "zipped"}\n')
    assert detect_format(packed) == "jsonl"
    assert list(read_documents(packed)) == ["zipped"]


def test_jsonl_field_and_ids(tmp_path):
    lines = [{"id": 1, "body": "one"}, {"id": 2, "body": None}, {"id": 3, "body": "three"}]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert list(read_documents(path, field="body")) == ["one", "three"]
    assert [tuple(r) for r in read_records(path, field="body", id_field="id")] == [("1", "one"), ("3", "three")]
    with pytest.raises(UserError, match=r"d\.jsonl:1: no field 'text'"):
        list(read_documents(path))
    bad = write(tmp_path / "bad.jsonl", '{"text": "ok"}\n{oops\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:2: invalid JSON"):
        list(read_documents(bad))


def test_tsv_columns(tmp_path):
    path = write(tmp_path / "e.tsv", "GEN.1.1\tIn the beginning\nGEN.1.2\tNow the earth\n")
    assert list(read_documents(path)) == ["In the beginning", "Now the earth"]
    assert list(read_documents(path, column=0)) == ["GEN.1.1", "GEN.1.2"]
    assert list(read_records(path, id_column=0))[1] == ("GEN.1.2", "Now the earth")
    headed = write(tmp_path / "h.tsv", "label\tsentence\tid\npos\tgood\tx1\n")
    assert list(read_records(headed, column="sentence", id_column="id")) == [("x1", "good")]
    with pytest.raises(UserError, match="no column 'missing'"):
        list(read_documents(headed, column="missing"))
    with pytest.raises(UserError, match=r"e\.tsv:1: line has 2 columns"):
        list(read_documents(path, column=5))


def test_conllu_text_and_tokens(tmp_path):
    path = write(tmp_path / "f.conllu", CONLLU)
    records = list(read_records(path))
    assert records[0] == ("s1", "Hello, world!")
    # No '# text': rebuilt from the multiword surface form, SpaceAfter=No honoured, empty node skipped.
    assert records[1] == ("s2", "del mar.")
    sentences = list(read_conllu(path))
    assert [t.form for t in sentences[1]] == ["de", "el", "mar", "."]
    form, upos, *_ = sentences[0][0]
    assert (form, upos) == ("Hello", "INTJ")
    broken = write(tmp_path / "g.conllu", "1\tonly\tthree\n")
    with pytest.raises(UserError, match=r"g\.conllu:1: CoNLL-U token lines need 10"):
        list(read_conllu(broken))


def test_iob_sentences(tmp_path):
    path = write(tmp_path / "ner.iob", "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter B-PER\n")
    assert list(read_iob(path)) == [[("EU", "B-ORG"), ("rejects", "O")], [("Peter", "B-PER")]]
    with pytest.raises(UserError, match=r"bad\.iob:1: expected"):
        list(read_iob(write(tmp_path / "bad.iob", "lonely\n")))


def test_datasets_saved_and_data_files(tmp_path):
    import datasets

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ["alpha", "", "beta"], "n": [1, 2, 3]}).save_to_disk(str(saved))
    assert detect_format(saved) == "datasets"
    assert list(read_documents(saved)) == ["alpha", "beta"]
    assert list(read_records(saved, id_field="n")) == [("1", "alpha"), ("3", "beta")]
    split_dir = tmp_path / "dict"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["t"]}),
        "test": datasets.Dataset.from_dict({"text": ["u"]}),
    }).save_to_disk(str(split_dir))
    assert list(read_documents(split_dir)) == ["t"]
    assert list(read_documents(split_dir, split="test")) == ["u"]
    csv_path = write(tmp_path / "c.csv", "text,label\nfrom csv,1\nsecond,0\n")
    assert list(read_documents(csv_path)) == ["from csv", "second"]
    with pytest.raises(UserError, match="no column 'body'"):
        list(read_documents(saved, field="body"))
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(UserError, match=r"plain_dir: cannot read as a datasets corpus"):
        list(read_documents(tmp_path / "plain_dir"))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match=r"broken\.parquet: cannot read"):
        list(read_documents(broken))


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_documents(tmp_path / "nope.txt")  # raised at the call, before iterating
    with pytest.raises(UserError, match="unknown corpus format"):
        read_documents(tmp_path, fmt="xml")
    with pytest.raises(UserError, match="on_decode_error"):
        read_documents(tmp_path / "x.txt", on_decode_error="ignore")
    with pytest.raises(UserError, match="is a directory"):
        read_documents(tmp_path, fmt="text")


def test_invalid_utf8_policies(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good\nbad \xff byte\nend\n")
    with pytest.raises(UserError, match=r"bad\.txt:2: invalid UTF-8"):
        list(read_documents(path))
    assert list(read_documents(path, on_decode_error="skip")) == ["good", "end"]
    assert list(read_documents(path, on_decode_error="replace")) == ["good", "bad \ufffd byte", "end"]
    utf16 = tmp_path / "wide.txt"
    utf16.write_text("hello\n", encoding="utf-16")
    with pytest.raises(UserError, match=r"wide\.txt:1: invalid UTF-8 \(it starts with a UTF-16 byte-order mark\)"):
        list(read_documents(utf16))


def _peak_bytes(path) -> int:
    tracemalloc.start()
    count = sum(1 for _ in read_documents(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count > 0
    return peak


def test_streaming_memory_does_not_grow_with_file(tmp_path):
    line = "a fairly ordinary sentence of some length for the memory test\n"
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text(line * 2_000, encoding="utf-8")
    large.write_text(line * 20_000, encoding="utf-8")
    small_peak, large_peak = _peak_bytes(small), _peak_bytes(large)
    assert large.stat().st_size >= 10 * small.stat().st_size
    assert large_peak < 2 * small_peak + 64_000, (small_peak, large_peak)
    assert large_peak < large.stat().st_size / 10


def test_parallel_ids_joined_in_any_order(tmp_path):
    src = write(tmp_path / "s.tsv", "GEN.1.1\ta\nGEN.1.2\tb\nGEN.1.3\tonly source\n")
    tgt = write(tmp_path / "t.tsv", "GEN.1.2\tB\nGEN.1.1\tA\n")
    assert sorted(read_parallel(src, tgt)) == [("GEN.1.1", "a", "A"), ("GEN.1.2", "b", "B")]
    dup = write(tmp_path / "d.tsv", "GEN.1.1\ta\nGEN.1.1\tagain\n")
    with pytest.raises(UserError, match="appears twice"):
        list(read_parallel(dup, tgt))
    noid = write(tmp_path / "n.tsv", "GEN.1.1\ta\nno id here\n")
    with pytest.raises(UserError, match=r"n\.tsv:2: expected 'id<TAB>text'"):
        list(read_parallel(noid, tgt, fmt="ids"))


def test_parallel_ids_read_the_text_column_of_prepared_tables(tmp_path):
    """``id<TAB>group<TAB>label<TAB>text`` tables with a header (``corpus prepare``'s .tsv): the header
    is no pair and the text is the last column."""
    src = write(tmp_path / "s.tsv", "id\tgroup\tlabel\ttext\nGEN.1.1\tGEN\tlaw\ta\nGEN.1.2\tGEN\tlaw\tb\n")
    tgt = write(tmp_path / "t.tsv", "id\tgroup\tlabel\ttext\nGEN.1.2\tGEN\tlaw\tB\nGEN.1.1\tGEN\tlaw\tA\n")
    assert sorted(read_parallel(src, tgt)) == [("GEN.1.1", "a", "A"), ("GEN.1.2", "b", "B")]
    lines = write(tmp_path / "l.txt", "a\nb\n")
    assert parallel_format(src, tgt) == "ids" and parallel_format(src, lines) == "lines"


def test_parallel_line_aligned(tmp_path):
    src = write(tmp_path / "s.txt", "one\ntwo\n")
    tgt = write(tmp_path / "t.txt", "uno\ndos\n")
    assert list(read_parallel(src, tgt)) == [("1", "one", "uno"), ("2", "two", "dos")]
    short = write(tmp_path / "short.txt", "uno\n")
    with pytest.raises(UserError, match="fewer lines"):
        list(read_parallel(src, short))
    with pytest.raises(UserError, match="not found"):
        read_parallel(src, tmp_path / "missing.txt")
    with pytest.raises(UserError, match="misalign"):
        read_parallel(src, tgt, "lines", on_decode_error="skip")


def test_join_on_id_streams_in_lockstep():
    src = ((f"v{i}", f"s{i}") for i in range(1000))
    tgt = ((f"v{i}", f"t{i}") for i in range(1000))
    pairs = list(join_on_id(src, tgt))
    assert len(pairs) == 1000 and pairs[0] == ("v0", "s0", "t0") and pairs[-1] == ("v999", "s999", "t999")


def test_iter_text_is_the_line_reader_of_several_files(tmp_path):
    """Lines of every file in order, newline and BOM removed; skip_blank drops blank lines, strip also strips."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt.gz"
    first.write_bytes("\ufeff one \n\n  \r\ntwo\n".encode("utf-8"))
    with gzip.open(second, "wt", encoding="utf-8") as handle:
        handle.write("three\n")
    assert list(iter_text([first, second])) == [" one ", "", "  ", "two", "three"]
    assert list(iter_text([first, second], skip_blank=True)) == [" one ", "two", "three"]
    assert list(iter_text([first, second], strip=True)) == ["one", "two", "three"]


def test_reader_options_are_declared_once_for_cli_api_and_pipeline():
    """Every CorpusOptions field is a `corpus prepare` flag, a pipeline corpus key and a prepare_corpus keyword."""
    names = [f.name for f in dataclasses.fields(CorpusOptions)]
    assert {"split", "on_decode_error", "id_separator"} <= set(names)
    args = build_parser().parse_args(["corpus", "prepare", "x.tsv", "--out", "o", "--column", "2", "--id-column",
                                      "key", "--split", "dev", "--id-separator", ":"])
    assert all(hasattr(args, name) for name in names)
    assert (args.column, args.id_column, args.split, args.id_separator) == (2, "key", "dev", ":")
    assert set(names) <= {f.name for f in dataclasses.fields(CorpusSource)}
