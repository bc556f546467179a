"""Vocabulary extension of a tied decoder at step 0: heuristics with and without the ``unreachable`` rule (issue 20).

A small GPT-2-style English model (``benchmarks/decoder_source.py``: byte-level BPE, tied head,
no output bias) gets ``langgraft tokenizer extend --new-tokens N`` Chichewa pieces; every method is
a whole ``langgraft init`` process in extension mode, once with the published rows for every new
piece (``--option unreachable=method``) and once with langgraft's default (pieces the extended
tokenizer never emits get the mean row); each output is scored by step-0 causal-LM bits per
character (:func:`langgraft.eval.bpc.compute_bpc`, every character counts) on held-out Chichewa.
Besides bpc, the probability mass the model puts on new pieces, and on those it can never see,
averaged over the scored positions.

Every input is built here from the installed Bible packages (steps whose output exists are kept):

    nice -n 10 python benchmarks/decoder_extension.py --out runs/dx --source-steps 150 --eval-docs 300
    python benchmarks/decoder_extension.py --out runs/dx --table

``--rules mean`` runs the default rule only (an extension whose pieces are all emitted gives both
rules the same rows); ``--distill 'START:OPTIONS'`` adds a ``langgraft distill`` row started from
START's init, ``--methods`` with no names runs only those rows (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocab_transfer import init_command, timed_process  # noqa: E402

METHODS = ("mean", "fvt", "transtok", "focus")


def step(command: list[str], done: Path) -> None:
    """Run one input-building command unless its output already exists."""
    if not done.exists():
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=True)


def build_inputs(args: argparse.Namespace) -> dict[str, Path]:
    out = Path(args.out)
    paths = {"eng": out / "eng", "nya": out / "nya", "source": out / "gpt2-eng", "tokenizer": out / "nya-ext",
             "tokens": out / "ft" / "nya-ext-tokens.bin", "align": out / "align-ext.tsv"}
    for language in ("eng", "nya"):
        step(["langgraft", "corpus", "prepare", "--bible", language, "--out", str(paths[language])],
             paths[language] / "train.txt")
    step([sys.executable, str(Path(__file__).with_name("decoder_source.py")), "--corpus",
          str(paths["eng"] / "train.txt"), "--out", str(paths["source"]), "--max-steps", str(args.source_steps)],
         paths["source"] / "config.json")
    step(["langgraft", "tokenizer", "extend", "--source", str(paths["source"]), "--corpus",
          str(paths["nya"] / "train.txt"), "--new-tokens", str(args.new_tokens), "--out", str(paths["tokenizer"])],
         paths["tokenizer"] / "tokenizer.json")
    step(["langgraft", "resources", "fasttext", "--tokenizer", str(paths["tokenizer"]), "--corpus",
          str(paths["nya"] / "train.txt"), "--out", str(paths["tokens"]), "--dim", "100", "--model", "cbow",
          "--epochs", "3", "--min-count", "10"], paths["tokens"])
    step(["langgraft", "resources", "align", "--parallel", str(paths["eng"] / "train.tsv"),
          str(paths["nya"] / "train.tsv"), "--source-tokenizer", str(paths["source"]), "--target-tokenizer",
          str(paths["tokenizer"]), "--out", str(paths["align"])], paths["align"])
    return paths


def score(checkpoint: Path, texts: list[str], original: int, unreachable: list[int]) -> dict:
    """Step-0 bpc, and the mean probability on new pieces / on pieces the tokenizer never emits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from langgraft.eval.bpc import compute_bpc
    from langgraft.lm import clm_windows, window_logits

    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    result = compute_bpc(model, tokenizer, texts, objective="clm")
    windows, _ = clm_windows(tokenizer, texts, model.config.n_positions)
    new_mass = dead_mass = positions = 0.0
    with torch.no_grad():
        for start in range(0, len(windows), 16):
            logits, targets = window_logits(model, windows[start:start + 16], tokenizer.eos_token_id)
            probabilities = logits.float().softmax(-1)
            new_mass += float(probabilities[:, original:].sum())
            dead_mass += float(probabilities[:, unreachable].sum())
            positions += len(targets)
    return {"bpc": round(result.bpc, 4), "characters": result.characters,
            "new_mass": round(new_mass / positions, 4), "unreachable_mass": round(dead_mass / positions, 4)}


def run(args: argparse.Namespace) -> list[dict]:
    paths = build_inputs(args)
    texts = [line.strip() for line in (paths["nya"] / "test.txt").read_text(encoding="utf-8").splitlines()
             if line.strip()][:args.eval_docs]
    init_args = argparse.Namespace(source=str(paths["source"]), tokenizer=str(paths["tokenizer"]),
                                   token_embeddings=str(paths["tokens"]), alignment_table=str(paths["align"]),
                                   parallel=None, helper=None, calibrate_bias=None)
    results = []
    for method in args.methods:
        runs = {}
        for rule in dict.fromkeys(["mean", *args.rules]):  # the default first: its provenance names the
            # never-emitted pieces
            out = Path(args.out) / "bench" / f"{method}-{rule}"
            out.parent.mkdir(parents=True, exist_ok=True)
            command = init_command(f"{method}:unreachable={rule}", init_args, out) + ["--overwrite"]
            runs[rule] = (out, timed_process(command, out.with_suffix(".log")),
                          json.loads((out / "transfer_summary.json").read_text(encoding="utf-8")))
        out = runs["mean"][0]
        unreachable = [row["id"] for row in map(json.loads, (out / "provenance.jsonl").open(encoding="utf-8"))
                       if row["kind"] == "unreachable"]
        for rule in sorted(runs, key=("method", "mean").index):
            out, timing, summary = runs[rule]
            row = {"method": method, "unreachable": rule, **timing, "counts": summary["counts"],
                   **score(out, texts, summary["source_vocab_size"], unreachable)}
            print(json.dumps(row), flush=True)
            results.append(row)
    for name, start, options in distill_runs(args):
        out = Path(args.out) / "bench" / name
        command = ["langgraft", "distill", "--model", str(Path(args.out) / "bench" / f"{start}-mean"), "--teacher",
                   str(paths["source"]), "--corpus", str(paths["nya"] / "train.txt"), "--out", str(out),
                   "--seed", "0", "--use-cpu", "--report-to", "none", "--overwrite", *options]
        timing = timed_process(command, out.with_suffix(".log"))
        summary = json.loads((out / "distill_summary.json").read_text(encoding="utf-8"))
        row = {"method": name, "unreachable": "mean", **timing, "counts": None, "command": command[1:],
               "steps": summary["steps"], "held_out_mse": summary["held_out_mse"],
               **score(out, texts, summary["new_rows_start"], [])}
        print(json.dumps(row), flush=True)
        results.append(row)
    path = Path(args.out) / "bench" / "results.json"
    fresh = {(row["method"], row["unreachable"]) for row in results}  # rows of other methods stay from earlier runs
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    kept = [row for row in earlier if (row["method"], row["unreachable"]) not in fresh]
    path.write_text(json.dumps(kept + results, indent=2) + "\n", encoding="utf-8")
    return results


def distill_runs(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """``--distill START[:OPTIONS]``: (row name, init it starts from, extra ``langgraft distill`` options)."""
    runs = []
    for spec in args.distill:
        start, _, options = spec.partition(":")
        runs.append((f"distill-{start}{'-' + options.replace(' ', '') if options else ''}", start, options.split()))
    return runs


def markdown(results: list[dict]) -> str:
    mean = next(r["bpc"] for r in results if r["method"] == "mean" and r["unreachable"] == "mean")
    lines = ["| method | new rows: neighbours / copied / fallback / unreachable | step-0 bpc | vs mean "
             "| mass on new pieces | on never-emitted pieces | init wall s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        c = r["counts"] or {"neighbours": "", "copied": "", "fallback": "", "unreachable": ""}  # distill: its start's
        label = r["method"] if r["counts"] is None else f"{r['method']}, unreachable={r['unreachable']}"
        lines.append(f"| {label} | {c['neighbours']} / {c['copied']} / {c['fallback']} / {c['unreachable']} | "
                     f"{r['bpc']:.4f} | {100 * (r['bpc'] / mean - 1):+.1f}% | {r['new_mass']:.3f} | "
                     f"{r['unreachable_mass']:.3f} | {r['wall_s']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/dx", help="folder for every input and result (repo-relative)")
    parser.add_argument("--source-steps", type=int, default=150, help="langgraft pretrain steps of the source")
    parser.add_argument("--new-tokens", type=int, default=4000)
    parser.add_argument("--eval-docs", type=int, default=300, help="first N verses of the held-out Chichewa books")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), help="heuristics (none: only --distill rows)")
    parser.add_argument("--rules", nargs="+", choices=("mean", "method"), default=["mean", "method"],
                        help="unreachable rules to run (mean: the extension default; an extension whose pieces "
                             "are all emitted gives both the same rows)")
    parser.add_argument("--distill", action="append", default=[], metavar="START[:OPTIONS]",
                        help="also `langgraft distill` from START's default init (e.g. 'transtok:--ntp-weight 1'), "
                             "the source as teacher, the Chichewa train books as text; repeatable")
    parser.add_argument("--table", action="store_true", help="print the markdown table of OUT/bench/results.json")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads((Path(args.out) / "bench" / "results.json").read_text(encoding="utf-8"))))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
