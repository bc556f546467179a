"""Run Token Distillation's own package (konstantinjdobler/token-distillation) on langgraft's extension inputs.

Runs inside the package's environment (made by benchmarks/distill_known_language.py under the ignored
benchmarks/.anchors/), never inside langgraft's. The new tokens are the pieces that
`langgraft tokenizer extend` added, given to the package as text (" mwana" for the byte-level piece
"Ġmwana": the package's own tokenizer source option hands it raw vocabulary strings, which its
phrase tokenizer cannot encode for a byte-level BPE). Snippets are mined by the package (Aho-Corasick
over its tokenization) from a local text dataset folder; the model is a local folder; CPU, float32.
Writes the package's output folder plus new_tokens.json (langgraft piece -> the text given).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from transformers import AutoTokenizer

from token_distillation import DistillationConfig, HFDataSource, OutputEmbeddingInit, TokenDistillation


def new_pieces(tokenizer_dir: str) -> dict[str, str]:
    """Pieces past the source vocabulary, as the text they stand for (pieces that are not whole characters skipped)."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    start = json.loads((Path(tokenizer_dir) / "langgraft_extension.json").read_text())["original_vocab_size"]
    pieces = {}
    for token_id in range(start, len(tokenizer)):
        piece = tokenizer.convert_ids_to_tokens(token_id)
        text = tokenizer.convert_tokens_to_string([piece])
        if text and "\ufffd" not in text and text.strip():
            pieces[piece] = text
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="source causal LM folder (model + tokenizer)")
    parser.add_argument("--tokenizer", required=True, help="langgraft's extended tokenizer folder")
    parser.add_argument("--data", required=True, help="folder with train.txt, one document per line")
    parser.add_argument("--out", required=True)
    parser.add_argument("--snippets-per-token", type=int, default=25)
    parser.add_argument("--snippet-len", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss-methods", nargs="+", default=["MSE-on-hiddens"],
                        help="the package's loss_methods; add CE-auto-weighted for its alpha-NTP term")
    args = parser.parse_args()

    random.seed(args.seed)  # the package shuffles snippets with `random` before it seeds anything
    torch.manual_seed(args.seed)
    pieces = new_pieces(args.tokenizer)
    docs = sum(1 for line in open(Path(args.data) / "train.txt", encoding="utf-8") if line.strip())
    tokdist = TokenDistillation(model_path=args.source, device="cpu", attn_impl="sdpa")
    tokdist.run(
        new_tokens=list(pieces.values()),
        data=HFDataSource(dataset_path=args.data, split="train", max_docs=docs),
        out_path=args.out,
        snippet_len=args.snippet_len,
        snippets_per_token=args.snippets_per_token,
        output_emb_policy=OutputEmbeddingInit.TRAIN_WITH_CE,  # ignored by the package for a tied head
        training=DistillationConfig(epochs=1, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                    loss_methods=args.loss_methods, seed=args.seed, target_layer=-1,
                                    mixed_precision=False),
        pre_init_strategy="fvt",
        save=True,
    )
    Path(args.out, "new_tokens.json").write_text(json.dumps(pieces, ensure_ascii=False, indent=0))


if __name__ == "__main__":
    main()
