"""Sentence retrieval (SR-B): speed of the embedding + blocked top-k path, and the MiniLM baseline.

1. English -> Chichewa verse retrieval on the held-out (test-split) books of the built-in Bibles
   with the installed English MiniLM embedding both sides: the number an adapted model must beat.
   English -> English (the same verses) is the protocol's ceiling check: 1.0 except where verses
   tokenize identically (repeated verses tie, and only one of each group can rank first).
2. Scoring alone on random unit vectors of MiniLM's width, to show the blocked matmul + topk
   path scales to tens of thousands of pairs with memory bounded by the block.

Prints a Markdown table; ``--out`` gets report.md/report.json/PNG via ``langgraft.eval.report``.

    nice -n 10 python benchmarks/retrieval.py --pairs 1000 --out runs/bench-retrieval
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import torch

from langgraft.corpora.bible import bible_parallel, demo_split
from langgraft.eval.report import write_report
from langgraft.eval.retrieval import evaluate_retrieval, retrieval_accuracy
from langgraft.models import load_model, load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--pairs", type=int, default=1000, help="held-out verse pairs (default 1000)")
    parser.add_argument("--scoring-sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--out", default="runs/bench-retrieval")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    verses = [(en, ny) for verse_id, en, ny in bible_parallel("eng", "nya")
              if demo_split(verse_id.split(".")[0]) == "test"]
    pairs = list(itertools.islice(verses, args.pairs))
    side = (load_model(args.model), load_tokenizer(args.model))
    rows, results = [], []
    for name, chosen in (("eng->nya", pairs), ("eng->eng (ceiling)", [(en, en) for en, _ in pairs])):
        started = time.perf_counter()
        scores = evaluate_retrieval(side, side, chosen, batch_size=64)
        seconds = time.perf_counter() - started
        rows.append(f"| {name} | {scores['pairs']} | {scores['top1_src2tgt']:.3f} | {scores['top1_tgt2src']:.3f} | "
                    f"{scores['top10_src2tgt']:.3f} | {scores['top10_tgt2src']:.3f} | {seconds:.1f} |")
        results.append({"name": name, "task": "retrieval", "metrics": {**scores, "seconds": seconds}})

    scoring = []
    generator = torch.Generator().manual_seed(0)
    for size in args.scoring_sizes:
        queries = torch.randn(size, 384, generator=generator)
        keys = queries + 0.5 * torch.randn(size, 384, generator=generator)
        started = time.perf_counter()
        accuracy = retrieval_accuracy(queries, keys)
        scoring.append(f"| {size} | {time.perf_counter() - started:.2f} | {accuracy[1]:.3f} |")

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model {args.model}")
    print("| direction | pairs | top1 src->tgt | top1 tgt->src | top10 src->tgt | top10 tgt->src | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print("\n| pairs (random, d=384) | scoring seconds (both sides pre-embedded) | top1 |")
    print("| --- | --- | --- |")
    print("\n".join(scoring))
    report = write_report([{"name": args.model, "results": results}], args.out, title="SR-B retrieval benchmark")
    print(f"\nreport: {report}")


if __name__ == "__main__":
    main()
