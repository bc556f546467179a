"""Small target-language helper model for CLP-Transfer (issue 3, ``langgraft init --method clp --helper``).

CLP finds a new token's neighbours in the embedding space of a helper model that already uses the
target tokenizer. Published CLP uses a small pretrained model of the target language; none exists
offline for Chichewa, so this script builds one: a randomly initialised ``BertForMaskedLM`` (seeded)
with the target tokenizer's vocabulary, trained by ``langgraft pretrain`` (MLM) on target text for
a fixed, small budget. The helper is only a similarity space; its own quality is not the point.

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/clp_helper.py --tokenizer runs/vt/nya-wp16k \
        --corpus runs/vt/nya/train.txt --out runs/vt/clp-helper --max-steps 400

``--out``-init holds the untrained model + tokenizer, ``--out`` the trained stock checkpoint.
The defaults (2 layers, hidden 256, 400 steps × 32 × 128 tokens) took 481 s on 2 shared cores;
results in docs/benchmarks.md, "Vocabulary transfer (step-0)".
"""
from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path


def build_model(args: argparse.Namespace, out: Path) -> None:
    """A seeded random BERT MLM whose vocabulary is exactly the target tokenizer's."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    torch.manual_seed(args.seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    BertForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="target tokenizer directory (WordPiece, MLM specials)")
    parser.add_argument("--corpus", required=True, help="target-language training text, one document per line")
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out, init = Path(args.out), Path(f"{args.out}-init")
    build_model(args, init)
    command = ["langgraft", "pretrain", "--model", str(init), "--corpus", args.corpus, "--out", str(out),
               "--max-steps", str(args.max_steps), "--per-device-train-batch-size", str(args.batch_size),
               "--max-seq-length", str(args.context), "--learning-rate", str(args.learning_rate),
               "--warmup-steps", "0.05", "--seed", str(args.seed), "--save-steps", "100",
               "--logging-steps", "25", "--use-cpu", "--report-to", "none"]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
