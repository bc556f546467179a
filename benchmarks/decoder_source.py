"""Small GPT-2-style English source model for the decoder vocabulary-transfer benchmark (issue 3).

No GPT-2 checkpoint can be downloaded here, so the source decoder is built and trained on the
English Bible train books: a byte-level BPE tokenizer with GPT-2's pipeline (ByteLevel
pre-tokenizer/decoder, ``<|endoftext|>`` as bos/eos/unk), a randomly initialised ``GPT2LMHeadModel``
(tied head) with a fixed seed, then ``langgraft pretrain`` (CLM) for a fixed number of steps.

    nice -n 10 python benchmarks/decoder_source.py --corpus runs/vt/eng/train.txt \
        --out runs/vt/gpt2-eng --max-steps 150

``--out``-init holds the untrained model + tokenizer, ``--out`` the trained stock checkpoint.
"""
from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Iterator


def lines(path: str) -> Iterator[str]:
    """Stream non-empty lines (the tokenizer trainer never holds the whole file)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield line.rstrip("\n")


def build_tokenizer(corpus: str, vocab_size: int, out: Path):
    """Byte-level BPE exactly as GPT-2's tokenizer is built (same pipeline, same special token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.train_from_iterator(lines(corpus), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = GPT2TokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.save_pretrained(out)
    return tokenizer


def build_model(tokenizer, args: argparse.Namespace, out: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(args.seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=args.context, n_embd=args.hidden,
                        n_layer=args.layers, n_head=args.heads, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    GPT2LMHeadModel(config).save_pretrained(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="English training text, one document per line")
    parser.add_argument("--eval-corpus", help="English held-out text (bpc logged during training)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out, init = Path(args.out), Path(f"{args.out}-init")
    tokenizer = build_tokenizer(args.corpus, args.vocab_size, init)
    build_model(tokenizer, args, init)
    command = ["langgraft", "pretrain", "--model", str(init), "--corpus", args.corpus, "--out", str(out),
               "--max-steps", str(args.max_steps), "--per-device-train-batch-size", str(args.batch_size),
               "--max-seq-length", str(args.context), "--learning-rate", str(args.learning_rate),
               "--warmup-steps", "0.05", "--seed", str(args.seed), "--save-steps", "200",
               "--logging-steps", "50", "--use-cpu", "--report-to", "none"]
    if args.eval_corpus:
        command += ["--eval-corpus", args.eval_corpus, "--eval-steps", str(args.max_steps)]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
