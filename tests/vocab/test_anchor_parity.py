"""langgraft's ``wechsel`` and ``focus`` compute what the published packages compute, row for row,
on generated inputs nobody tuned to.

``tests/anchor_cases.py`` generates six input sets (WordPiece, byte-level BPE, Unigram ``▁`` and
SentencePiece-BPE-with-byte-fallback vocabularies of several sizes; fastText dim 8-20, minn 1-4,
maxn 0-6, minCount 1-3, cased and lowercased; dictionaries with capitals, punctuation, single
letters and unknown words). ``benchmarks/record_anchor_reference.py`` ran ``wechsel`` 0.0.4 and
``deepfocus`` 1.0.1 on them once (source matrix = identity, so each row is its weights over source
ids); here langgraft runs through ``transfer`` on the same bytes and must give, for every
non-special target token, the same kind of row (neighbours / copied / fallback), the same source
ids and the same weights. The only documented exception: FOCUS's overlap for partial-UTF-8 byte
pieces and whitespace/control pieces, which langgraft copies from the source piece of the same
bytes where deepfocus decodes them all to U+FFFD or to the empty string and copies one source
piece into all of them (see docs/vocab-transfer.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from anchor_cases import CASES, build_case
from langgraft.vocab.canonical import canonical_tokens
from langgraft.vocab.init.base import TransferResources
from langgraft.vocab.transfer import transfer

REFERENCE = Path(__file__).parents[1] / "data" / "anchor_reference.json"
# The packages work in float64 (wechsel) or float32 through other kernels (deepfocus) from float32
# fastText rows, langgraft in float32: on unit vectors of at most 20 dimensions, after a float32
# rotation, cosines differ by well under COSINE_ERROR. WECHSEL's weights softmax(cos / temperature)
# then differ by under 2 * COSINE_ERROR / temperature; sparsemax weights move by at most twice the
# largest score change (the threshold and the score each move by at most that); both are rounded
# to 1e-6 in the records and in provenance.
COSINE_ERROR = 1e-5


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=CASES, ids=lambda spec: spec.name)
def case(request, tmp_path_factory, reference):
    built = build_case(request.param, tmp_path_factory.mktemp(request.param.name))
    assert built.fingerprint == reference["cases"][built.spec.name]["fingerprint"], \
        "tests/anchor_cases.py changed: re-record with benchmarks/record_anchor_reference.py"
    return built


def rows_of(outcome) -> dict[int, dict]:
    return {row["id"]: row for row in outcome.provenance}


def test_wechsel_rows_equal_the_packages(case, reference):
    expected_rows = reference["cases"][case.spec.name]["wechsel"]
    temperature = reference["temperature"]
    outcome = transfer(str(case.source_model), str(case.target_tokenizer), "wechsel", seed=0, device="cpu",
                       resources=TransferResources(source_embeddings=str(case.source_embeddings),
                                                   target_embeddings=str(case.target_embeddings),
                                                   dictionary=str(case.dictionary)),
                       k=reference["k"], temperature=temperature)
    rows = rows_of(outcome)
    tolerance = 2 * COSINE_ERROR / temperature + 2e-6
    for key, expected in expected_rows.items():
        row = rows[int(key)]
        if expected is None:  # the package found no vector: a random row there, a fallback row here
            assert row["kind"] == "fallback", row
            continue
        ids, weights, margin = expected
        assert row["kind"] == "neighbours", (row, expected)
        assert sorted(row["weights"]) == pytest.approx(sorted(weights), abs=tolerance), (row, expected)
        ours, theirs = dict(zip(row["source_ids"], row["weights"])), dict(zip(ids, weights))
        if margin > 2 * COSINE_ERROR:
            assert set(ours) == set(theirs), (row, expected)
        else:  # the k-th and (k+1)-th neighbour tie within float error: only the boundary may differ
            boundary = min(weights) + tolerance
            assert {i for i, w in ours.items() if w > boundary} == {i for i, w in theirs.items() if w > boundary}
        for source_id in set(ours) & set(theirs):
            assert ours[source_id] == pytest.approx(theirs[source_id], abs=tolerance), (row, expected)
    if case.spec.maxn == 0:  # without subwords, tokens that are not known words have no vector: fallback rows
        assert any(v is None for v in expected_rows.values())


def test_focus_rows_equal_the_packages(case, reference):
    expected_rows = reference["cases"][case.spec.name]["focus"]
    outcome = transfer(str(case.source_model), str(case.target_tokenizer), "focus", seed=0, device="cpu",
                       token_embeddings=str(case.token_embeddings))
    rows = rows_of(outcome)
    target = canonical_tokens(outcome.tokenizer)
    tolerance = 4 * COSINE_ERROR + 2e-6
    compared = 0
    for key, expected in expected_rows.items():
        row = rows[int(key)]
        if target[int(key)].is_byte or not target[int(key)].text.strip():  # the documented exception
            continue
        compared += 1
        if expected[0] == "copied":
            assert row["kind"] == "copied" and row["source_ids"] == [expected[1]], (row, expected)
        elif expected[0] == "random":
            assert row["kind"] == "fallback", (row, expected)
        else:
            assert row["kind"] == "neighbours", (row, expected)
            ours, theirs = dict(zip(row["source_ids"], row["weights"])), dict(zip(expected[1], expected[2]))
            for source_id in set(ours) | set(theirs):
                assert ours.get(source_id, 0.0) == pytest.approx(theirs.get(source_id, 0.0), abs=tolerance), \
                    (row, expected)
    assert compared > 0.5 * len(expected_rows)  # byte-level alphabets are about 250 of the pieces
