"""Peak memory of the pretraining data path on a corpus and on a 10x larger one.

Each measurement is a fresh process that streams the whole corpus once through exactly what
``langgraft pretrain`` uses (:class:`~langgraft.adapt.pretrain.data.PackedLMStream` -> packed blocks ->
:class:`~langgraft.adapt.pretrain.data.PackedLMCollator` batches, with a tiny model loaded) and reports
its peak resident memory (``ru_maxrss``). Streaming means the 10x corpus needs about the same
memory. Text: the English Bible (BSB), repeated to reach the sizes.

    nice -n 10 python benchmarks/memory_stream.py --out runs/memory
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(corpus: Path, model_dir: Path) -> dict:
    """Runs in the child process: one full pass of the training stream, then held-out scoring."""
    from itertools import islice

    from langgraft.adapt.pretrain.data import PackedLMCollator, PackedLMStream, document_ids, pack
    from langgraft.corpora import read_documents
    from langgraft.models import load_language_model
    from langgraft.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model, objective = load_language_model(model_dir)  # loaded as in training, so the baseline is realistic
    start = time.time()
    one_pass = sum(1 for _ in pack(document_ids(tokenizer, read_documents(corpus), objective), 128))
    collator = PackedLMCollator(tokenizer, objective)
    stream = iter(PackedLMStream(tokenizer, [corpus], objective, 128))  # endless: take one pass
    for _ in range(one_pass // 16):
        collator(list(islice(stream, 16)))
    return {"blocks": one_pass, "seconds": time.time() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/memory"))
    parser.add_argument("--verses", type=int, default=3000, help="verses in the 1x corpus")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), Path(args.child[1]))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from itertools import islice

    from tiny import build_source_model

    from langgraft.corpora.bible import bible_verses

    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = args.out / "tiny-bert"
    if not model_dir.exists():
        build_source_model("bert", model_dir)
    text = "\n".join(v.text for v in islice(bible_verses("eng"), args.verses)) + "\n"
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform()}
    for scale in (1, 10):
        corpus = args.out / f"corpus-{scale}x.txt"
        with open(corpus, "w", encoding="utf-8") as handle:
            for _ in range(scale):
                handle.write(text)
        done = subprocess.run([sys.executable, __file__, "--child", str(corpus), str(model_dir)],
                              capture_output=True, text=True, check=True)
        results[f"{scale}x"] = {"corpus_mb": corpus.stat().st_size / 2**20,
                                **json.loads(done.stdout.strip().splitlines()[-1])}
    results["ratio"] = results["10x"]["peak_rss_mb"] / results["1x"]["peak_rss_mb"]
    (args.out / "memory.json").write_text(json.dumps(results, indent=2))
    print("| corpus | size (MB) | packed blocks | peak RSS (MB) | seconds |")
    print("|---|---|---|---|---|")
    for scale in ("1x", "10x"):
        r = results[scale]
        print(f"| {scale} | {r['corpus_mb']:.1f} | {r['blocks']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |")
    print(f"\npeak memory ratio 10x / 1x: {results['ratio']:.3f}")


if __name__ == "__main__":
    main()
