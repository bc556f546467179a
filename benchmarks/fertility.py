"""Tokenizer fertility on held-out Chichewa: MiniLM's English WordPiece vs a trained/extended one.

Prepares the built-in Chichewa Bible (split by whole books), trains a WordPiece tokenizer for
MiniLM on the train books, extends MiniLM's tokenizer with Chichewa pieces, and measures all of
them on the held-out dev+test books. Prints a Markdown table, writes ``fertility.json`` and a
PNG bar chart to ``--out``. Target (issue 2): trained fertility <= 0.6x MiniLM's.

    python benchmarks/fertility.py --out runs/fertility
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from langgraft.atomic import atomic_file
from langgraft.corpora.prepare import prepare_corpus
from langgraft.vocab.tokenizers import extend_tokenizer, train_tokenizer
from langgraft.vocab.tokstats import format_stats_table, tokenizer_stats

TARGET_RATIO = 0.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="minilm", help="source model (default: the installed MiniLM)")
    parser.add_argument("--lang", default="nya", help="built-in Bible language (default: nya, Chichewa)")
    parser.add_argument("--vocab-size", type=int, default=16_000, help="trained vocabulary size (default 16000)")
    parser.add_argument("--extend-tokens", type=int, default=8_000, help="pieces added by extension (0: skip)")
    parser.add_argument("--out", default="runs/fertility", help="work and result directory")
    args = parser.parse_args()
    out = Path(args.out)
    corpus = out / "corpus"
    if not (corpus / "train.txt").is_file():
        prepare_corpus(out=corpus, bible=args.lang)
    held_out = [corpus / "dev.txt", corpus / "test.txt"]

    started = time.perf_counter()
    train_tokenizer(args.source, [corpus / "train.txt"], args.vocab_size, out / "trained")
    train_seconds = time.perf_counter() - started
    tokenizers = {args.source: args.source, f"trained-{args.vocab_size // 1000}k": out / "trained"}
    if args.extend_tokens:
        extend_tokenizer(args.source, [corpus / "train.txt"], out / "extended", new_tokens=args.extend_tokens)
        tokenizers[f"extended+{args.extend_tokens // 1000}k"] = out / "extended"

    started = time.perf_counter()
    rows = tokenizer_stats(tokenizers, held_out, reference=args.source)
    stats_seconds = time.perf_counter() - started
    ratio = rows[1]["fertility"] / rows[0]["fertility"]
    result = {
        "rows": rows,
        "fertility_ratio_trained_vs_source": ratio,
        "target_ratio": TARGET_RATIO,
        "passed": ratio <= TARGET_RATIO,
        "train_seconds": train_seconds,
        "stats_seconds": stats_seconds,
        "held_out": [str(path) for path in held_out],
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    with atomic_file(out / "fertility.json") as handle:
        json.dump(result, handle, indent=2, ensure_ascii=False)
    _plot(rows, out / "fertility.png")
    print(format_stats_table(rows))
    print(f"\nfertility ratio trained/source: {ratio:.3f} (target <= {TARGET_RATIO}: "
          f"{'met' if result['passed'] else 'NOT met'}); training {train_seconds:.1f}s, stats {stats_seconds:.1f}s")
    print(f"wrote {out / 'fertility.json'} and {out / 'fertility.png'}")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["tokenizer"] for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar(names, [row["fertility"] for row in rows], color="tab:blue")
    axes[0].set_title("fertility (tokens per word)")
    axes[1].bar(names, [100 * row["split_share"] for row in rows], color="tab:orange")
    axes[1].set_title("words split into 2+ tokens (%)")
    for axis in axes:
        axis.tick_params(axis="x", labelrotation=15)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
