"""Speed of langgraft's ``wechsel`` against the ``wechsel`` 0.0.4 package (issue 3 "Done when").

Two measurements, each interleaved (ours, package, ours, package, ...) and repeated, because a
machine's load drifts: comparing runs taken minutes apart says little.

1. ``computation``: the transfer computation given loaded fastText models (Procrustes on the
   dictionary, token vectors, cosine top-k, softmax weights, the new rows), both sides fed the
   same loaded models, tokenizers and source matrix in one process. langgraft's run is also
   broken into sections (perf_counter) so the profile is printed next to the totals.
2. ``whole``: ``langgraft init --method wechsel`` against the package doing the same whole job
   (``benchmarks/vocab_transfer.py --run-package wechsel-package``), each a fresh process under
   ``/usr/bin/time`` (wall seconds, peak RSS).

Example (inputs built as in docs/benchmarks.md "Vocabulary transfer (step-0)"):

    nice -n 10 python benchmarks/wechsel_speed.py --source runs/vt/minilm-mlm --tokenizer runs/vt/nya-wp16k \
        --source-embeddings runs/vt/ft/eng.bin --target-embeddings runs/vt/ft/nya.bin \
        --dictionary runs/vt/dict.tsv --out runs/vt/speed --repeats 3

The package comes from the anchor environment (``benchmarks/anchors.sh``), built under the ignored
``benchmarks/.anchors/`` on first use.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchor_env import anchor_site_packages, use_anchor_packages  # noqa: E402  (sibling benchmark module)
from vocab_transfer import package_environment, planned_rows, timed_process  # noqa: E402  (sibling benchmark script)


def summary(runs: list[float]) -> dict:
    return {"min_s": round(min(runs), 3), "median_s": round(statistics.median(runs), 3),
            "runs": [round(r, 3) for r in runs]}


def computation(args: argparse.Namespace) -> dict:
    """Interleaved in-process timing of the two transfer computations on identical loaded inputs."""
    import fasttext
    from langgraft.vocab.checkpoint import ModelSource
    from langgraft.vocab.init.base import TransferContext, TransferResources
    from langgraft.vocab.init.wechsel import (
        WechselConfig,
        neighbour_mapping,
        token_vectors,
    )
    from langgraft.vocab.resources.dictionary import read_dictionary
    from langgraft.vocab.resources.fasttext import load_fasttext
    from langgraft.vocab.resources.procrustes import align_spaces
    from langgraft.vocab.transfer import build_plan
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from wechsel import WECHSEL

    fasttext.FastText.eprint = lambda *a, **k: None
    source_tokenizer = AutoTokenizer.from_pretrained(args.source)
    target_tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = AutoModelForMaskedLM.from_pretrained(args.source)
    source_wv, target_wv = load_fasttext(args.source_embeddings), load_fasttext(args.target_embeddings)
    package_models = source_wv.model, target_wv.model  # the fasttext library's objects, loaded before timing
    source_matrix = model.get_input_embeddings().weight.detach()
    config = WechselConfig()
    sections: dict[str, list[float]] = {}

    def ours() -> None:
        marks = [("start", time.perf_counter())]
        ctx = TransferContext(ModelSource(model), source_tokenizer, target_tokenizer, resources=TransferResources())
        _ = ctx.source_tokens, ctx.target_tokens, ctx.new_token_ids
        marks.append(("canonical tokens", time.perf_counter()))
        rotation, _ = align_spaces(read_dictionary(args.dictionary), source_wv, target_wv)
        marks.append(("dictionary + Procrustes", time.perf_counter()))
        source = token_vectors(ctx.source_tokens, source_wv)
        target = token_vectors(ctx.target_tokens, target_wv) @ rotation
        marks.append(("token vectors", time.perf_counter()))
        mapping = neighbour_mapping(ctx.new_token_ids, target, source, config.k, config.temperature,
                                    config.block_size)
        marks.append(("cosine top-k + weights", time.perf_counter()))
        _ = planned_rows(ctx.source_embeddings, build_plan(ctx, mapping), ctx.generator(1))  # init's own row step
        marks.append(("rows", time.perf_counter()))
        for (_, before), (name, after) in itertools.pairwise(marks):
            sections.setdefault(name, []).append(after - before)

    def package() -> None:
        aligner = WECHSEL(*package_models, bilingual_dictionary=args.dictionary)
        aligner.apply(source_tokenizer, target_tokenizer, source_matrix.numpy())

    runs: dict[str, list[float]] = {"langgraft": [], "package": []}
    for _ in range(args.repeats):
        for name, fn in (("langgraft", ours), ("package", package)):
            started = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - started)
    result = {name: summary(values) for name, values in runs.items()}
    result["speedup_min"] = round(result["package"]["min_s"] / result["langgraft"]["min_s"], 1)
    result["speedup_median"] = round(result["package"]["median_s"] / result["langgraft"]["median_s"], 1)
    result["langgraft_sections_median_s"] = {k: round(statistics.median(v), 3) for k, v in sections.items()}
    return result


def whole(args: argparse.Namespace) -> dict:
    """Interleaved whole-process runs: ``langgraft init`` and the package's job, fresh processes."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = ["--source", args.source, "--tokenizer", args.tokenizer, "--source-embeddings", args.source_embeddings,
              "--target-embeddings", args.target_embeddings, "--dictionary", args.dictionary]
    commands = {
        "langgraft": ["langgraft", "init", "--method", "wechsel", "--seed", "0", "--out", str(out / "langgraft"),
                      *inputs],
        "package": [sys.executable, str(Path(__file__).with_name("vocab_transfer.py")), "--run-package",
                    "wechsel-package", *inputs, "--token-embeddings", args.target_embeddings,
                    "--parallel", args.dictionary, args.dictionary, "--out", str(out / "package")],
    }
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            runs[name].append(timed_process(command, out / f"{name}.log",
                                            package_environment([str(anchor_site_packages())]) if name == "package" else None))
    return {name: {"wall": summary([r["wall_s"] for r in entries]),
                   "peak_rss_mb_max": max(r["peak_rss_mb"] for r in entries)}
            for name, entries in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="source MLM checkpoint (head recovered)")
    parser.add_argument("--tokenizer", required=True, help="target tokenizer dir")
    parser.add_argument("--source-embeddings", required=True, help="source-language fastText .bin")
    parser.add_argument("--target-embeddings", required=True, help="target-language fastText .bin")
    parser.add_argument("--dictionary", required=True, help="bilingual dictionary TSV")
    parser.add_argument("--out", required=True, help="folder for the whole-process outputs and results.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=("computation", "whole"), default=["computation", "whole"])
    args = parser.parse_args()
    use_anchor_packages()
    results = {part: {"computation": computation, "whole": whole}[part](args) for part in args.parts}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
