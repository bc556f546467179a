"""``langgraft eval``: zero-shot tasks and intrinsic scores, plus ``eval bpc`` and ``eval report``.

    langgraft eval --model DIR [--modules M ...] --task KIND:FILE ... [--json] [--out results.json]
    langgraft eval --model DIR --source-model SRC --benchmark sib200 belebele --language nya_Latn
    langgraft eval --model DIR --harness lm-eval|mteb --tasks NAME ... [--include-path DIR]
    langgraft eval bpc --model DIR --corpus FILE ...
    langgraft eval report RESULTS_OR_RUN_DIR ... --out DIR

The sub-command is optional: without one, ``eval`` runs the ``--task`` list.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from langgraft.atomic import atomic_file
from langgraft.errors import UserError
from langgraft.eval.bpc import BpcOptions, compute_bpc
from langgraft.eval.benchmarks import BENCHMARKS
from langgraft.eval.external import HARNESSES, HarnessOptions, require, run_harness
from langgraft.eval.harness import BenchmarkOptions, EvalOptions, evaluate
from langgraft.eval.intervals import IntervalOptions
from langgraft.eval.report import write_report
from langgraft.models import OBJECTIVES, load_language_model, load_tokenizer
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
    parser.add_argument("--harness", choices=tuple(HARNESSES),
                        help="also run the field's harness on --model: lm-eval (decoders, modules merged) or mteb "
                             f"(encoders); optional extra: {'pip install langgraft[bench]'}")
    parser.add_argument("--tasks", nargs="+", action="extend", default=[], metavar="NAME",
                        help="--harness tasks: lm-eval task names (with --include-path for your own YAML), MTEB "
                             "task names or [NAME=]bitext-mining:SRC,TGT on local aligned files")
    add_options(parser, EvalOptions)
    add_options(parser, HarnessOptions)
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
    add_options(parser, IntervalOptions)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run_bpc)
    return parser


def _run_bpc(args: argparse.Namespace) -> int:
    options = from_args(BpcOptions, args)  # checked before the model is loaded
    intervals = from_args(IntervalOptions, args)
    model, objective = load_language_model(args.model)
    if args.objective != "auto":
        objective = args.objective
    tokenizer = load_tokenizer(args.model)
    result = compute_bpc(model, tokenizer, list(args.corpus), objective=objective, **dataclasses.asdict(options),
                         **dataclasses.asdict(intervals))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        interval = result.intervals.get("bpc")
        print(f"bpc {result.bpc:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")
              + f"  loss {result.loss:.4f}  ({result.objective}, {result.tokens} tokens, "
              f"{result.characters} characters, {result.documents} documents)")
    return 0


def _quiet_transformers() -> None:
    """No loading bars or load reports: langgraft checks heads itself and errors must stay one line."""
    # deferred: keeps transformers, datasets and huggingface_hub off `langgraft --help`
    import datasets
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def _run_eval(args: argparse.Namespace) -> int:
    if not args.model or not (args.task or args.benchmark or args.harness):
        raise UserError("langgraft eval needs --model DIR and --task KIND:FILE, --benchmark NAME or --harness "
                        "lm-eval|mteb --tasks NAME (or a sub-command: bpc, report); see `langgraft eval --help`")
    if bool(args.harness) != bool(args.tasks):
        raise UserError("--harness and --tasks go together: --harness lm-eval|mteb --tasks NAME ... "
                        "(langgraft's own tasks are --task KIND:FILE)")

    _quiet_transformers()
    options = from_args(EvalOptions, args)
    harness_options = from_args(HarnessOptions, args)
    bench_options = from_args(BenchmarkOptions, args)
    if args.harness:  # a missing extra is refused before any model is loaded
        require({"lm-eval": "lm_eval", "mteb": "mteb"}[args.harness], args.harness)
    if args.out:  # before the evaluation, not after it
        check_output(args.out, inputs=[args.model, args.source_model, *args.modules, bench_options.data_dir],
                     overwrite=args.overwrite, file=True)
    if args.task or args.benchmark:
        run = evaluate(args.model, args.task, modules=args.modules, source_model=args.source_model,
                       name=args.name, benchmarks=args.benchmark, **dataclasses.asdict(options),
                       **dataclasses.asdict(bench_options))
    else:
        run = {"name": args.name or Path(str(args.model)).name, "model": str(args.model),
               "modules": [str(m) for m in args.modules], "source_model": args.source_model, "results": []}
    if args.harness:
        run["results"] += run_harness(args.harness, args.model, args.tasks, modules=args.modules,
                                      options=harness_options, batch_size=options.batch_size, layer=options.layer,
                                      bootstrap=options.bootstrap, bootstrap_seed=options.bootstrap_seed)
    if args.out:
        with atomic_file(args.out) as handle:
            json.dump(run, handle, indent=2)
            handle.write("\n")
    if args.json:
        print(json.dumps(run))
        return 0
    for result in run["results"]:
        print(f"{result['name']}: {format_metrics(result)}")
    return 0


def format_metrics(result: dict) -> str:
    """``accuracy 0.6100 [0.5700, 0.6500]`` (95% interval) or ``accuracy 0.6100 ± 0.0200`` (sd over seeds)."""
    intervals, sd = result.get("intervals", {}), result.get("sd", {})
    parts = []
    for key, value in result["metrics"].items():
        if isinstance(value, (list, dict)):
            continue
        text = f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
        if key in sd:
            text += f" ± {sd[key]:.4f}"
        elif key in intervals:
            text += f" [{intervals[key][0]:.4f}, {intervals[key][1]:.4f}]"
        parts.append(text)
    seeds = f"  ({len(result['seeds'])} seeds)" if result.get("seeds") else ""
    return "  ".join(parts) + seeds


def _run_report(args: argparse.Namespace) -> int:
    path = write_report(args.inputs, args.out, title=args.title, overwrite=args.overwrite)
    print(f"report written to {path}")
    return 0
