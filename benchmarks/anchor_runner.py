"""Run the published ``wechsel`` and ``deepfocus`` packages on one built case; print JSON.

Runs inside the anchor environment (``benchmarks/anchors.sh``), which has the packages but not
langgraft; ``benchmarks/record_anchor_reference.py`` builds the cases and calls this once per case:

    benchmarks/.anchors/venv/bin/python benchmarks/anchor_runner.py CASE_DIR K TEMPERATURE

The source matrix given to both packages is the identity, so every target row they compute is
its weights over source ids. Output, per non-special target id (as a string key):
``wechsel``: ``null`` (no vector: random row) or ``[ids, weights, margin]`` (neighbours most
similar first; margin: k-th minus (k+1)-th cosine, so float rounding can be told from a
different rule); ``focus``: ``["copied", id]``, ``["random"]`` or ``["focus", ids, weights]``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import fasttext
import numpy as np
import torch
import wechsel
from deepfocus import FOCUS
from deepfocus.focus import get_overlapping_tokens, is_very_rare_token
from transformers import AutoTokenizer


def run_wechsel(case: Path, source_tokenizer, target_tokenizer, k: int, temperature: float) -> dict:
    aligner = wechsel.WECHSEL(fasttext.load_model(str(case / "source.bin")),
                              fasttext.load_model(str(case / "target.bin")),
                              bilingual_dictionary=str(case / "dictionary.tsv"))
    identity = np.eye(len(source_tokenizer), dtype=np.float32)
    _, info = aligner.apply(source_tokenizer, target_tokenizer, identity, neighbors=k, temperature=temperature)
    source, _ = wechsel.get_subword_embeddings_in_word_embedding_space(source_tokenizer, aligner.source_embeddings,
                                                                     verbose=False)
    target, _ = wechsel.get_subword_embeddings_in_word_embedding_space(target_tokenizer, aligner.target_embeddings,
                                                                     verbose=False)
    source = aligner.source_transform(source)
    source /= np.linalg.norm(source, axis=1, keepdims=True) + 1e-8
    target /= np.linalg.norm(target, axis=1, keepdims=True) + 1e-8
    similarities = -np.sort(-(target @ source.T), axis=1)
    vocab = source_tokenizer.get_vocab()
    specials = set(target_tokenizer.all_special_ids)
    out = {}
    for token_id, piece in enumerate(target_tokenizer.convert_ids_to_tokens(list(range(len(target_tokenizer))))):
        if token_id in specials:
            continue
        if piece not in info.sources:
            out[str(token_id)] = None
            continue
        neighbours, weights, _ = info.sources[piece]
        margin = float(similarities[token_id, k - 1] - similarities[token_id, k])
        out[str(token_id)] = [[vocab[t] for t in neighbours], [round(float(w), 7) for w in weights], round(margin, 7)]
    return out


def run_focus(case: Path, source_tokenizer, target_tokenizer) -> dict:
    identity = torch.eye(len(source_tokenizer))
    rows = FOCUS(target_tokenizer=target_tokenizer, source_tokenizer=source_tokenizer, source_embeddings=identity,
                 fasttext_model_path=str(case / "tokens.bin"), verbosity="silent")
    model = fasttext.load_model(str(case / "tokens.bin"))
    overlapping, _ = get_overlapping_tokens(target_tokenizer, source_tokenizer, match_symbols=False,
                                            exact_match_all=True, fuzzy_match_all=False)
    specials = set(target_tokenizer.all_special_ids)
    out = {}
    for token_id, piece in enumerate(target_tokenizer.convert_ids_to_tokens(list(range(len(target_tokenizer))))):
        if token_id in specials:
            continue
        row = rows[token_id]
        if piece in overlapping:
            out[str(token_id)] = ["copied", int(row.argmax())]
        elif is_very_rare_token(piece, model):
            out[str(token_id)] = ["random"]
        else:
            ids = torch.nonzero(row > 0).squeeze(1)
            out[str(token_id)] = ["focus", ids.tolist(), [round(float(w), 7) for w in row[ids]]]
    return out


def main() -> int:
    case, k, temperature = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    source_tokenizer = AutoTokenizer.from_pretrained(case / "source-model")
    target_tokenizer = AutoTokenizer.from_pretrained(case / "target-tokenizer")
    json.dump({"wechsel": run_wechsel(case, source_tokenizer, target_tokenizer, k, temperature),
               "focus": run_focus(case, source_tokenizer, target_tokenizer),
               "packages": {"wechsel": wechsel.__version__, "deepfocus": "1.0.1"}}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
