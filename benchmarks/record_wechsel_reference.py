"""Record what the ``wechsel`` 0.0.4 package computes on the fixed case of ``tests/wechsel_case.py``.

Run once whenever the case changes (the package, no langgraft dependency, comes from the anchor
environment, ``benchmarks/anchors.sh``, built under the ignored ``benchmarks/.anchors/`` on first use); the result, ``tests/data/wechsel_reference.json``, is what
``tests/vocab/test_wechsel_reference.py`` holds langgraft's ``wechsel`` to. For every non-special target
token it stores the package's neighbours (source ids, most similar first) and softmax weights, or
``null`` when the package found no vector for the token (random row); and the smallest gap between a token's k-th and (k+1)-th similarity, so the test can tell that float32
against float64 arithmetic cannot reorder neighbours.

    python benchmarks/record_wechsel_reference.py \\
        --out tests/data/wechsel_reference.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from anchor_env import use_anchor_packages  # noqa: E402  (sibling benchmark module)
from wechsel_case import build_case  # noqa: E402  (the fixed case lives with the test that uses it)

K, TEMPERATURE = 10, 0.1


def record(case_dir: Path) -> dict:
    import fasttext
    import numpy as np
    import wechsel
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    case = build_case(case_dir)
    source_tokenizer = AutoTokenizer.from_pretrained(case.source_model)
    target_tokenizer = AutoTokenizer.from_pretrained(case.target_tokenizer)
    matrix = AutoModelForMaskedLM.from_pretrained(case.source_model).get_input_embeddings().weight.detach().numpy()
    aligner = wechsel.WECHSEL(fasttext.load_model(str(case.source_embeddings)),
                              fasttext.load_model(str(case.target_embeddings)),
                              bilingual_dictionary=str(case.dictionary))
    _, info = aligner.apply(source_tokenizer, target_tokenizer, matrix, neighbors=K, temperature=TEMPERATURE)

    # the package's own normalized token vectors, to measure how close the k-th and (k+1)-th neighbours are
    source, _ = wechsel.get_subword_embeddings_in_word_embedding_space(source_tokenizer, aligner.source_embeddings,
                                                                     verbose=False)
    target, _ = wechsel.get_subword_embeddings_in_word_embedding_space(target_tokenizer, aligner.target_embeddings,
                                                                     verbose=False)
    source = aligner.source_transform(source)
    source /= np.linalg.norm(source, axis=1, keepdims=True) + 1e-8
    target /= np.linalg.norm(target, axis=1, keepdims=True) + 1e-8
    similarities = np.sort(target @ source.T, axis=1)[:, ::-1]

    source_vocab = source_tokenizer.get_vocab()
    specials = set(target_tokenizer.all_special_ids)
    tokens, margins = {}, []
    for token_id, piece in enumerate(target_tokenizer.convert_ids_to_tokens(list(range(len(target_tokenizer))))):
        if token_id in specials:
            continue
        if piece not in info.sources:
            tokens[piece] = None
            continue
        neighbours, weights, _ = info.sources[piece]
        tokens[piece] = {"neighbours": [source_vocab[t] for t in neighbours],
                         "weights": [round(float(w), 6) for w in weights]}
        margins.append(float(similarities[token_id, K - 1] - similarities[token_id, K]))
    return {"package": f"wechsel {wechsel.__version__}", "case_fingerprint": case.fingerprint, "k": K,
            "temperature": TEMPERATURE, "smallest_neighbour_margin": round(min(margins), 6), "tokens": tokens}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write (tests/data/wechsel_reference.json)")
    args = parser.parse_args()
    use_anchor_packages()
    with tempfile.TemporaryDirectory() as tmp:
        reference = record(Path(tmp) / "case")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tokens = reference.pop("tokens")
    lines = [f" {json.dumps(piece, ensure_ascii=False)}: {json.dumps(entry)}" for piece, entry in tokens.items()]
    header = json.dumps(reference, ensure_ascii=False)[:-1]
    Path(args.out).write_text(header + ', "tokens": {\n' + ",\n".join(lines) + "\n}}\n", encoding="utf-8")
    reference["tokens"] = tokens
    found = sum(v is not None for v in reference["tokens"].values())
    print(f"{args.out}: {found} of {len(reference['tokens'])} target tokens with neighbours; "
          f"smallest margin between k-th and (k+1)-th similarity {reference['smallest_neighbour_margin']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
