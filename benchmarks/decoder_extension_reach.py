"""Which pieces an extended byte-level BPE can actually produce, and what that saves (issue 20).

`langgraft tokenizer extend` used to append the merges of a separately trained target tokenizer
after every source merge, so a merge whose parts the source had already merged away (or whose own
parts were new) never fired. It now continues the source's BPE training on the target corpus as the
source segments it. For each tokenizer folder given (the source first): tokens per character of the
held-out text, the new pieces the tokenizer emits there (and on the first 20,000 train verses), and
the new pieces it splits its own text into (at the piece's boundary position: ``Ġndi`` as a
word-initial piece, ``ndi`` as a word-internal one).

    python benchmarks/decoder_extension_reach.py --corpus runs/dx/nya/train.txt --held-out runs/dx/nya/test.txt \
        --tokenizer source=runs/dx/gpt2-eng before=runs/dx/reach/before after=runs/dx/nya-ext
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers import AutoTokenizer

from langgraft.vocab.tokenizers import plain_backend


def verses(path: str, limit: int | None) -> list[str]:
    texts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts[:limit] if limit else texts


def measure(tokenizer_dir: str, original: int, held_out: list[str], train: list[str]) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    backend = plain_backend(tokenizer)
    new_ids = set(range(original, len(tokenizer)))
    held = [encoding.ids for encoding in backend.encode_batch(held_out, add_special_tokens=False)]
    tokens = sum(len(ids) for ids in held)
    emitted_held = {index for ids in held for index in ids} & new_ids
    emitted_train = {index for encoding in backend.encode_batch(train, add_special_tokens=False)
                     for index in encoding.ids} & new_ids
    self_split = sum([token.id for token in backend.model.tokenize(backend.id_to_token(index))] == [index]
                     for index in new_ids)
    new_share = sum(index in new_ids for ids in held for index in ids) / tokens
    return {"tokenizer": tokenizer_dir, "vocab": len(tokenizer), "new_pieces": len(new_ids),
            "tokens_per_char": round(tokens / sum(len(text) for text in held_out), 4),
            "new_token_share_held_out": round(new_share, 4),
            "new_pieces_emitted_held_out": len(emitted_held), "new_pieces_emitted_train": len(emitted_train),
            "new_pieces_splitting_own_text": self_split}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="target train text (one verse a line)")
    parser.add_argument("--held-out", required=True, help="held-out target text (one verse a line)")
    parser.add_argument("--held-out-docs", type=int, default=None, help="first N held-out lines (default all)")
    parser.add_argument("--train-docs", type=int, default=20000)
    parser.add_argument("--tokenizer", nargs="+", required=True, help="NAME=DIR, the source first")
    args = parser.parse_args()
    held_out, train = verses(args.held_out, args.held_out_docs), verses(args.corpus, args.train_docs)
    named = [item.split("=", 1) for item in args.tokenizer]
    original = len(AutoTokenizer.from_pretrained(named[0][1]))
    rows = [{"name": name, **measure(path, original, held_out, train)} for name, path in named]
    print(json.dumps({"held_out_lines": len(held_out), "held_out_chars": sum(map(len, held_out)), "rows": rows},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
