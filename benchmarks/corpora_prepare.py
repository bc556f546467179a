"""Streaming check for `prepare_corpus`: time and peak memory on a corpus and one 10x larger.

    nice -n 10 python benchmarks/corpora_prepare.py --lines 100000 --scale 10

Each size runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own. Lines are unique
random words (the worst case for the dedup set, which grows with distinct documents).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_corpus(path: Path, lines: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(lines):
            handle.write(" ".join(rng.choices(words, k=rng.randint(5, 20))) + "\n")


def measure(lines: int, dedup: bool) -> dict:
    from langgraft.corpora import CleanConfig, prepare_corpus

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        write_corpus(corpus, lines)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        summary = prepare_corpus([corpus], Path(tmp) / "out", clean=CleanConfig(dedup=dedup))
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        megabytes = corpus.stat().st_size / 2**20
    return {"lines": lines, "dedup": dedup, "file_mb": round(megabytes, 1), "seconds": round(seconds, 2),
            "mb_per_s": round(megabytes / seconds, 2), "peak_rss_mb": round(peak / 1024, 1),
            "rss_growth_mb": round((peak - before) / 1024, 1), "kept": summary["documents_kept"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: measure one size
    parser.add_argument("--no-dedup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, dedup=not args.no_dedup)))
        return
    rows = []
    for dedup in (True, False):
        for lines in (args.lines, args.lines * args.scale):
            command = [sys.executable, __file__, "--one", str(lines)] + ([] if dedup else ["--no-dedup"])
            rows.append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
    print("| lines | dedup | file MB | seconds | MB/s | peak RSS MB | RSS growth during prepare MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['lines']} | {row['dedup']} | {row['file_mb']} | {row['seconds']} | {row['mb_per_s']} | "
              f"{row['peak_rss_mb']} | {row['rss_growth_mb']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
