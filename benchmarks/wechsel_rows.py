"""Row-by-row comparison of langgraft's ``wechsel`` with the ``wechsel`` 0.0.4 package on identical inputs.

Where do the two differ, and for which tokens? Both sides get the same loaded fastText models,
dictionary, tokenizers and source matrix. The script compares, per class of target token
(word-initial, continuation, special): the token vectors each side gives a token before
alignment, the Procrustes rotations, the top-k neighbour sets and weights, which tokens get no
neighbours (and their surfaces), and the final rows (cosine), for each ``surface`` rule of
langgraft's ``wechsel`` (``package``, the default, and ``boundary``) and for ``boundary`` with
the package's token vectors swapped in, so each difference can be attributed. The package comes
from the anchor environment (``benchmarks/anchors.sh``; built under the ignored ``benchmarks/.anchors/``
on first use):

    nice -n 10 python benchmarks/wechsel_rows.py --source runs/vt/minilm-mlm \
        --tokenizer runs/vt/nya-wp16k --source-embeddings runs/vt/ft/eng.bin \
        --target-embeddings runs/vt/ft/nya.bin --dictionary runs/vt/dict.tsv --out runs/vt/rows.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchor_env import use_anchor_packages  # noqa: E402  (sibling benchmark module)
from vocab_transfer import load_lm, planned_rows  # noqa: E402  (sibling benchmark script)


def package_side(source_wv, target_wv, source_tokenizer, target_tokenizer, matrix, dictionary: str) -> dict:
    """The package's intermediate results: token vectors, rotation, neighbours, rows."""
    import numpy as np
    import wechsel

    aligner = wechsel.WECHSEL(source_wv.model, target_wv.model, bilingual_dictionary=dictionary)
    source_vectors, _ = wechsel.get_subword_embeddings_in_word_embedding_space(source_tokenizer,
                                                                             aligner.source_embeddings)
    target_vectors, _ = wechsel.get_subword_embeddings_in_word_embedding_space(target_tokenizer,
                                                                             aligner.target_embeddings)
    rotation = aligner.source_transform(np.eye(source_vectors.shape[1]))  # source @ R: maps source -> target
    rows, info = aligner.apply(source_tokenizer, target_tokenizer, matrix.numpy())
    return {"source_vectors": source_vectors, "target_vectors": target_vectors, "rotation": rotation,
            "rows": rows, "sources": info.sources, "not_found": set(info.not_found)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--source-embeddings", required=True)
    parser.add_argument("--target-embeddings", required=True)
    parser.add_argument("--dictionary", required=True)
    parser.add_argument("--out", required=True, help="JSON report")
    parser.add_argument("--examples", type=int, default=25)
    args = parser.parse_args()
    use_anchor_packages()

    import fasttext
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from langgraft.vocab.checkpoint import ModelSource
    from langgraft.vocab.init.base import TransferContext, TransferResources, topk_similarities
    from langgraft.vocab.init.wechsel import PACKAGE, SURFACES, WechselConfig, neighbour_mapping, surface_vectors
    from langgraft.vocab.resources.dictionary import read_dictionary
    from langgraft.vocab.resources.fasttext import load_fasttext
    from langgraft.vocab.resources.procrustes import align_spaces
    from langgraft.vocab.transfer import build_plan

    fasttext.FastText.eprint = lambda *a, **k: None
    source_tokenizer = AutoTokenizer.from_pretrained(args.source)
    target_tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = load_lm(args.source)
    source_wv, target_wv = load_fasttext(args.source_embeddings), load_fasttext(args.target_embeddings)
    ctx = TransferContext(ModelSource(model), source_tokenizer, target_tokenizer, resources=TransferResources())
    matrix = ctx.source_embeddings
    config = WechselConfig()

    package = package_side(source_wv, target_wv, source_tokenizer, target_tokenizer, matrix, args.dictionary)

    pairs = read_dictionary(args.dictionary)
    computed = {}
    for surface in SURFACES:
        rotation, used = align_spaces(pairs, source_wv, target_wv, exact_case=surface == PACKAGE)
        computed[surface] = (surface_vectors(source_tokenizer, ctx.source_vocab_size, ctx.source_tokens, source_wv,
                                             surface),
                             surface_vectors(target_tokenizer, ctx.target_vocab_size, ctx.target_tokens, target_wv,
                                             surface), rotation, surface == PACKAGE)
    ours_source, ours_target_raw, rotation, _ = computed[PACKAGE]

    def run(source_vectors, target_vectors, rotation_matrix, zero_keys):
        mapping = neighbour_mapping(ctx.new_token_ids, target_vectors @ rotation_matrix, source_vectors, config.k,
                                    config.temperature, config.block_size, zero_keys=zero_keys)
        rows = planned_rows(matrix, build_plan(ctx, mapping), ctx.generator(1))
        return mapping, rows

    # the package maps source -> target with R; langgraft target -> source with W: W should be R^T
    package_w = torch.from_numpy(np.asarray(package["rotation"]).T.copy()).float()
    variants = {
        "langgraft surface=package (default)": computed[PACKAGE],
        "langgraft surface=boundary": computed["boundary"],
        "langgraft surface=boundary + package token vectors": (
            torch.from_numpy(package["source_vectors"]).float(), torch.from_numpy(package["target_vectors"]).float(),
            computed["boundary"][2], False),
    }
    target_pieces = target_tokenizer.convert_ids_to_tokens(list(range(len(target_tokenizer))))
    source_vocab = source_tokenizer.get_vocab()
    classes = {
        "word-initial": [i for i, t in enumerate(ctx.target_tokens) if not t.is_special and t.word_initial],
        "continuation": [i for i, t in enumerate(ctx.target_tokens) if not t.is_special and not t.word_initial],
        "special": [i for i, t in enumerate(ctx.target_tokens) if t.is_special],
    }
    package_rows = torch.from_numpy(np.asarray(package["rows"])).float()

    def neighbour_sets(mapping) -> dict[int, set[int]]:
        out = {}
        for target_id, ids in zip(mapping.target_ids.tolist(), mapping.source_ids.tolist()):
            out[target_id] = {i for i in ids if i >= 0}
        return out

    package_sets = {}
    for token, (tokens, _, _) in package["sources"].items():
        package_sets[target_tokenizer.convert_tokens_to_ids(token)] = {source_vocab[t] for t in tokens}

    report: dict = {"dictionary_pairs_used": used,  # under the package rule
                    "rotation_difference_fro": float((rotation - package_w).norm()),
                    "token_vector_cosine": {}, "zero_vectors": {}, "variants": {}}
    for side, ours, theirs, tokens in (("source", ours_source, package["source_vectors"], ctx.source_tokens),
                                       ("target", ours_target_raw, package["target_vectors"], ctx.target_tokens)):
        theirs = torch.from_numpy(theirs).float()
        cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=1)
        for name, test in (("word-initial", lambda t: not t.is_special and t.word_initial),
                           ("continuation", lambda t: not t.is_special and not t.word_initial)):
            ids = [i for i, t in enumerate(tokens) if test(t)]
            report["token_vector_cosine"][f"{side} {name}"] = round(float(cosine[ids].mean()), 4)
        report["zero_vectors"][side] = {"langgraft": int((ours.abs().sum(1) == 0).sum()),
                                        "package": int((theirs.abs().sum(1) == 0).sum())}

    not_found = sorted(target_tokenizer.convert_tokens_to_ids(t) for t in package["not_found"])
    report["package_no_neighbours"] = {"count": len(not_found),
                                       "tokens": [target_pieces[i] for i in not_found[:args.examples]]}
    for name, (source_vectors, target_vectors, rotation_matrix, zero_keys) in variants.items():
        mapping, rows = run(source_vectors, target_vectors, rotation_matrix, zero_keys)
        sets = neighbour_sets(mapping)
        cosine = torch.nn.functional.cosine_similarity(rows, package_rows, dim=1)
        fallback = [t for t, s in sets.items() if not s]
        placed = [i for i in ctx.new_token_ids.tolist() if sets.get(i) and i in package_sets]
        other = [i for i in placed if sets[i] != package_sets[i]]
        # how close langgraft's k-th and (k+1)-th similarities are where the neighbour sets differ
        sims, _ = topk_similarities((target_vectors @ rotation_matrix)[other], source_vectors if zero_keys else
                                    source_vectors[source_vectors.abs().sum(1) > 0], config.k + 1)
        gaps = (sims[:, config.k - 1] - sims[:, config.k]).tolist() if other else []
        entry = {"fallback": len(fallback), "fallback_examples": [target_pieces[i] for i in fallback[:args.examples]],
                 "row_cosine_all": round(float(cosine[ctx.new_token_ids].mean()), 4),
                 "row_cosine_placed_by_both": round(float(cosine[placed].mean()), 5),
                 "rows_with_other_neighbours": len(other),
                 "largest_kth_gap_where_neighbours_differ": round(max(gaps, default=0.0), 7)}
        for cls, ids in classes.items():
            if cls == "special":
                continue
            same = [len(sets[i] & package_sets[i]) / max(len(package_sets[i]), 1) for i in ids
                    if i in package_sets and sets.get(i)]
            entry[cls] = {"tokens": len(ids), "row_cosine": round(float(cosine[ids].mean()), 4),
                          "neighbour_overlap": round(float(np.mean(same)), 4) if same else None}
        worst = cosine[classes["continuation"]].argsort()[:args.examples].tolist()
        entry["least_agreeing_continuations"] = [
            {"token": target_pieces[classes["continuation"][j]],
             "cosine": round(float(cosine[classes["continuation"][j]]), 3),
             "langgraft": [source_tokenizer.convert_ids_to_tokens(i) for i in sorted(sets[classes["continuation"][j]])],
             "package": list(package["sources"].get(target_pieces[classes["continuation"][j]], ((),))[0])}
            for j in worst[:10]]
        report["variants"][name] = entry
    Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
