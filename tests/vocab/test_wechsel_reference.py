"""langgraft's ``wechsel`` computes what the ``wechsel`` 0.0.4 package computes, on a fixed case.

The package's neighbours and weights were recorded once (``benchmarks/record_wechsel_reference.py``)
on the case that ``tests/wechsel_case.py`` builds in-process; here langgraft's whole method (fastText
reading, token surfaces, dictionary, Procrustes, cosine top-k, softmax) runs on the same bytes
through ``transfer`` and must give the same neighbours with the same weights, and no vector for
the same tokens. The case contains word-initial pieces, ``##`` continuations of 1-5 characters,
pieces with no known n-gram and dictionary entries missing from the embeddings, so a change in any
of those rules fails here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from langgraft.vocab.init.base import TransferResources
from langgraft.vocab.transfer import transfer
from wechsel_case import build_case

REFERENCE = Path(__file__).parents[1] / "data" / "wechsel_reference.json"
# The package works in float64 from float32 fastText rows, langgraft in float32: on unit vectors of
# 16 dimensions the cosines differ by well under COSINE_ERROR, so weights = softmax(cos / temperature)
# differ by under COSINE_ERROR / temperature (relative, and weights are <= 1) plus the record's rounding
# to 1e-6: twice that bound is the tolerance.
COSINE_ERROR = 1e-6


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return build_case(tmp_path_factory.mktemp("wechsel_case"))


def test_the_case_is_the_one_the_package_was_recorded_on(case, reference):
    assert case.fingerprint == reference["case_fingerprint"], \
        "tests/wechsel_case.py changed: re-record with benchmarks/record_wechsel_reference.py"
    # neighbours can only be compared if float32 rounding cannot reorder the k-th and (k+1)-th
    assert reference["smallest_neighbour_margin"] > 10 * COSINE_ERROR


def test_wechsel_gives_the_packages_neighbours_and_weights(case, reference):
    outcome = transfer(str(case.source_model), str(case.target_tokenizer), "wechsel", seed=0,
                       resources=TransferResources(source_embeddings=str(case.source_embeddings),
                                                   target_embeddings=str(case.target_embeddings),
                                                   dictionary=str(case.dictionary)),
                       k=reference["k"], temperature=reference["temperature"])
    tolerance = 2 * COSINE_ERROR / reference["temperature"]
    rows = {row["token"]: row for row in outcome.provenance}
    assert set(reference["tokens"]) <= set(rows)
    for piece, expected in reference["tokens"].items():
        row = rows[piece]
        if expected is None:  # the package found no vector: a random row there, a fallback row here
            assert row["kind"] == "fallback", piece
            continue
        assert row["kind"] == "neighbours", piece
        ours = dict(zip(row["source_ids"], row["weights"]))
        theirs = dict(zip(expected["neighbours"], expected["weights"]))
        assert set(ours) == set(theirs), piece
        assert torch.allclose(torch.tensor([ours[i] for i in theirs]), torch.tensor(list(theirs.values())),
                              atol=tolerance), piece
    assert sum(v is None for v in reference["tokens"].values()) > 0  # the case exercises fallback rows too
