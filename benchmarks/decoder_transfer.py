"""Vocabulary transfer to a decoder, measured against the original packages (issue 3, decoder table).

The same measurement as ``benchmarks/vocab_transfer.py`` (whose process runners it reuses) for a
causal LM: the small GPT-2-style English model of ``benchmarks/decoder_source.py`` transferred to
a byte-level BPE target tokenizer, every langgraft method as a whole ``langgraft init`` process and
the PyPI packages ``wechsel`` 0.0.4 / ``deepfocus`` 1.0.1 as whole processes on the same inputs,
each output scored by step-0 causal-LM bits per character (:func:`langgraft.eval.bpc.compute_bpc`,
``objective="clm"``) on held-out target text. No masks: every character of every document counts.

    nice -n 10 python benchmarks/decoder_transfer.py --source runs/vt/gpt2-eng \
        --tokenizer runs/vt/nya-bpe8k --source-embeddings runs/vt/ft/eng.bin \
        --target-embeddings runs/vt/ft/nya.bin --dictionary runs/vt/dict.tsv \
        --token-embeddings runs/vt/ft/nya-bpe8k-tokens.bin \
        --parallel runs/vt/eng/train.tsv runs/vt/nya/train.tsv \
        --eval runs/vt/nya/test.txt --eval-docs 1000 --out runs/vt/dec/bench
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocab_transfer import PACKAGES, add_transfer_inputs, load_lm, markdown, run_methods  # noqa: E402

METHODS = ("random", "mean", "fvt", "wechsel", "focus", "transtok", "ofa", "focus:transtok_share=0.5")


def score(checkpoint: str, eval_texts: list[str]) -> dict:
    """Step-0 causal-LM bits per character of a checkpoint with its own tokenizer."""
    from transformers import AutoTokenizer

    from langgraft.eval.bpc import compute_bpc

    result = compute_bpc(load_lm(checkpoint), AutoTokenizer.from_pretrained(checkpoint), eval_texts,
                         objective="clm")
    return {"bpc": round(result.bpc, 4), "characters": result.characters}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_transfer_inputs(parser, "source causal-LM checkpoint (benchmarks/decoder_source.py)",
                        "target byte-level BPE tokenizer dir", eval_docs=1000, methods=[*METHODS, *PACKAGES])
    parser.add_argument("--table", action="store_true", help="print the markdown table of --out/results.json")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads((Path(args.out) / "results.json").read_text())))
        return 0

    run_methods(args, score)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
