"""``langgraft eval``: zero-shot tasks and intrinsic scores, plus ``eval bpc`` and ``eval report``.

    langgraft eval --model DIR [--modules M ...] --task KIND:FILE ... [--json] [--out results.json]
    langgraft eval --model DIR --source-model SRC --benchmark sib200 belebele --language nya_Latn
    langgraft eval bpc --model DIR --corpus FILE ...
    langgraft eval report RESULTS_OR_RUN_DIR ... --out DIR

The sub-command is optional: without one, ``eval`` runs the ``--task`` list.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from langgraft.errors import UserError
from langgraft.eval.bpc import BpcOptions
from langgraft.eval.benchmarks import BENCHMARKS
from langgraft.eval.harness import BenchmarkOptions, EvalOptions
from langgraft.models import OBJECTIVES
from langgraft.options import add_options, from_args
from langgraft.outputs import add_output_arguments, check_output

TASK_HELP = ("[NAME=]KIND:FILE[,FILE]; KIND is seq-cls (TSV/JSONL), token-cls (CoNLL-U or IOB), "
             "retrieval (two aligned files), bpc (text), fertility (text); repeatable")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model (+ modules) on zero-shot tasks; bpc; reports",
        description="Evaluate a model, optionally with language/task modules, on tasks given as "
                    "KIND:FILE. Sub-commands: bpc (bits per character), report (tables and plots).")
    parser.add_argument("--model", help="model directory or hub name (the evaluated, target-side model)")
    parser.add_argument("--modules", nargs="+", default=[], metavar="DIR",
                        help="language/task module directories composed onto --model")
    parser.add_argument("--task", nargs="+", action="extend", default=[], metavar="TASKSPEC", help=TASK_HELP)
    parser.add_argument("--source-model", help="model for the source side of retrieval (default: --model)")
    add_options(parser, EvalOptions)
    parser.add_argument("--benchmark", nargs="+", action="extend", default=[], metavar="NAME[:LANGUAGE]",
                        help=f"named benchmarks scored zero-shot on --language: {', '.join(sorted(BENCHMARKS))}; "
                             "repeatable (see docs/evaluation.md)")
    add_options(parser, BenchmarkOptions)
    parser.add_argument("--name", help="name of this run in reports (default: the model folder name)")
    add_output_arguments(parser, "also write the results JSON here (input for `eval report`)", required=False)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run_eval)

    commands = parser.add_subparsers(dest="eval_command", metavar="{bpc,report}", required=False)
    add_bpc_parser(commands)
    report = commands.add_parser(
        "report", help="Markdown table + JSON + PNG plots comparing runs",
        description="Compare runs: result JSON files (from `langgraft eval --out`), the pipeline's "
                    "evaluation.json, metrics.jsonl training logs, or run folders holding them.")
    report.add_argument("inputs", nargs="+", type=Path, metavar="RUN_OR_JSON")
    add_output_arguments(report, "directory for report.md, report.json and plots")
    report.add_argument("--title", default="langgraft evaluation report")
    report.set_defaults(handler=_run_report)


def add_bpc_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bpc`` (``langgraft eval bpc``) to an ``eval`` sub-command tree."""
    parser = subparsers.add_parser(
        "bpc", help="bits per character of a checkpoint on held-out text",
        description="Bits per character (MLM with fixed whole-word masks, CLM by perplexity); "
                    "comparable across tokenizers.")
    parser.add_argument("--model", required=True, help="model directory (or hub name) with an LM head")
    parser.add_argument("--corpus", required=True, nargs="+", type=Path, help="held-out text file(s)")
    parser.add_argument("--objective", choices=("auto", *OBJECTIVES), default="auto")
    add_options(parser, BpcOptions)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run_bpc)
    return parser


def _run_bpc(args: argparse.Namespace) -> int:
    from langgraft.eval.bpc import compute_bpc
    from langgraft.models import load_language_model, load_tokenizer

    options = from_args(BpcOptions, args)  # checked before the model is loaded
    model, objective = load_language_model(args.model)
    if args.objective != "auto":
        objective = args.objective
    tokenizer = load_tokenizer(args.model)
    result = compute_bpc(model, tokenizer, list(args.corpus), objective=objective, **dataclasses.asdict(options))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"bpc {result.bpc:.4f}  loss {result.loss:.4f}  ({result.objective}, {result.tokens} tokens, "
              f"{result.characters} characters, {result.documents} documents)")
    return 0


def _quiet_transformers() -> None:
    """No loading bars or load reports: langgraft checks heads itself and errors must stay one line."""
    import datasets
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def _run_eval(args: argparse.Namespace) -> int:
    if not args.model or not (args.task or args.benchmark):
        raise UserError("langgraft eval needs --model DIR and --task KIND:FILE or --benchmark NAME (or a "
                        "sub-command: bpc, report); see `langgraft eval --help`")
    from langgraft.atomic import atomic_file
    from langgraft.eval.harness import evaluate

    _quiet_transformers()
    options = from_args(EvalOptions, args)
    bench_options = from_args(BenchmarkOptions, args)
    if args.out:  # before the evaluation, not after it
        check_output(args.out, inputs=[args.model, args.source_model, *args.modules, bench_options.data_dir],
                     overwrite=args.overwrite, file=True)
    run = evaluate(args.model, args.task, modules=args.modules, source_model=args.source_model,
                   name=args.name, benchmarks=args.benchmark, **dataclasses.asdict(options),
                   **dataclasses.asdict(bench_options))
    if args.out:
        with atomic_file(args.out) as handle:
            json.dump(run, handle, indent=2)
            handle.write("\n")
    if args.json:
        print(json.dumps(run))
        return 0
    for result in run["results"]:
        numbers = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in result["metrics"].items() if not isinstance(v, (list, dict)))
        print(f"{result['name']}: {numbers}")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from langgraft.eval.report import write_report

    path = write_report(args.inputs, args.out, title=args.title, overwrite=args.overwrite)
    print(f"report written to {path}")
    return 0
