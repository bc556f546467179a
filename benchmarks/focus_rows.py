"""Row-by-row comparison of langgraft's ``focus`` with the ``deepfocus`` 1.0.1 package on identical inputs.

Both sides get the same source checkpoint, target tokenizer and token-level fastText ``.bin``.
Per target token, the package's kind (overlap copied / sparsemax over anchors / random) is
compared with langgraft's provenance kind, and the rows of tokens both place the same way are
compared by cosine. The package comes from the anchor environment (``benchmarks/anchors.sh``;
built under the ignored ``benchmarks/.anchors/`` on first use):

    nice -n 10 python benchmarks/focus_rows.py --source runs/vt/minilm-mlm --tokenizer runs/vt/nya-wp16k \\
        --token-embeddings runs/vt/ft/nya-tokens.bin --out runs/vt/focus-rows.json
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchor_env import use_anchor_packages  # noqa: E402  (sibling benchmark module)
from vocab_transfer import load_lm  # noqa: E402  (sibling benchmark script)

PACKAGE_KIND = {"copied": "copied", "focus": "neighbours", "random": "fallback"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--token-embeddings", required=True)
    parser.add_argument("--out", required=True, help="JSON report")
    parser.add_argument("--examples", type=int, default=20)
    args = parser.parse_args()
    use_anchor_packages()

    import fasttext
    import torch
    from deepfocus import FOCUS
    from deepfocus.focus import get_overlapping_tokens, is_very_rare_token
    from transformers import AutoTokenizer

    from langgraft.vocab.transfer import transfer

    fasttext.FastText.eprint = lambda *a, **k: None
    outcome = transfer(args.source, args.tokenizer, "focus", seed=0, device="cpu",
                       token_embeddings=args.token_embeddings)
    source_tokenizer = AutoTokenizer.from_pretrained(args.source)
    target_tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    matrix = load_lm(args.source).get_input_embeddings().weight.detach()[:len(source_tokenizer)]
    rows = FOCUS(target_tokenizer=target_tokenizer, source_tokenizer=source_tokenizer, source_embeddings=matrix,
                 fasttext_model_path=args.token_embeddings, verbosity="silent")
    model = fasttext.load_model(args.token_embeddings)
    overlapping, _ = get_overlapping_tokens(target_tokenizer, source_tokenizer, match_symbols=False,
                                            exact_match_all=True, fuzzy_match_all=False)
    ours = outcome.model.get_input_embeddings().weight.detach()
    specials = set(target_tokenizer.all_special_ids)
    pieces = target_tokenizer.convert_ids_to_tokens(list(range(len(target_tokenizer))))
    kinds, disagree, cosines = Counter(), [], {"copied": [], "neighbours": []}
    for row in outcome.provenance:
        token_id = row["id"]
        if token_id in specials:
            continue
        piece = pieces[token_id]
        theirs = ("copied" if piece in overlapping else "fallback" if is_very_rare_token(piece, model)
                  else "neighbours")
        kinds[(theirs, row["kind"])] += 1
        if theirs != row["kind"]:
            disagree.append(piece)
        elif theirs in cosines:
            cosines[theirs].append(float(torch.nn.functional.cosine_similarity(ours[token_id], rows[token_id], dim=0)))
    report = {"kinds (package, langgraft)": {f"{a} / {b}": n for (a, b), n in sorted(kinds.items())},
              "kind_disagreements": disagree[:args.examples],
              "row_cosine": {kind: {"rows": len(values), "mean": round(sum(values) / max(len(values), 1), 6),
                                    "min": round(min(values, default=1.0), 6)} for kind, values in cosines.items()}}
    Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
