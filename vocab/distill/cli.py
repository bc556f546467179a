"""``langgraft distill``: train the new embedding rows of a ``langgraft init`` output against the source model.

Options come from :class:`~langgraft.vocab.distill.DistillOptions` (what is distilled) and
:class:`~langgraft.training.TrainingOptions` with the distillation defaults (how it trains), so the
CLI, the pipeline's ``distill:`` section and the Python API share one declaration of each.
"""
from __future__ import annotations

import argparse
import json

from langgraft.options import add_options, from_args
from langgraft.outputs import add_output_arguments
from langgraft.training import TrainingOptions

from .options import TRAINING_DEFAULTS, DistillOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill", help="train new embedding rows against the frozen source model (teacher)",
        description="Distill the source model into the embedding rows a `langgraft init` output added (extend) or "
                    "replaced: same text (the teacher reads the target text under its own tokenizer; hidden-state "
                    "MSE at aligned character offsets) or parallel text (the teacher reads the source sentence, the "
                    "student its translation; pooled-vector MSE). Writes a stock checkpoint, distill_summary.json "
                    "and metrics.jsonl; --resume continues an interrupted run.")
    parser.add_argument("--model", required=True, help="output folder of `langgraft init` (the student)")
    parser.add_argument("--teacher", help="source model (default: the source recorded in --model's "
                                          "transfer_summary.json)")
    parser.add_argument("--corpus", nargs="+", default=[], metavar="FILE",
                        help="target-language text (--teacher-text same): snippets are mined from it")
    parser.add_argument("--parallel", nargs=2, metavar=("SOURCE_FILE", "TARGET_FILE"),
                        help="line- or id-aligned parallel text (--teacher-text parallel)")
    add_output_arguments(parser, "output folder: the distilled checkpoint")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_options(parser, DistillOptions)
    add_options(parser, TrainingOptions, defaults=TRAINING_DEFAULTS)
    parser.set_defaults(handler=_distill)


def _distill(args: argparse.Namespace) -> int:
    from .run import distill_embeddings

    result = distill_embeddings(args.model, args.teacher, options=from_args(DistillOptions, args),
                                training=from_args(TrainingOptions, args), corpus=args.corpus, parallel=args.parallel,
                                out=args.out, overwrite=args.overwrite, resume=args.resume)
    summary = result.summary
    data, held = summary["data"], summary["held_out_mse"]
    served = (f"{data['tokens_with_snippets']}/{data['tokens']} tokens with snippets"
              if "tokens_with_snippets" in data else f"{data['pairs']} sentence pairs")
    change = (f"; held-out teacher-student MSE {held['before']:.4f} -> {held['after']:.4f}"
              if held.get("before") is not None and held.get("after") is not None else "")
    print(f"distilled ({summary['teacher_text']} text, {served}) for {summary['steps']} steps{change} -> {result.out}")
    if data.get("tokens_without_snippets"):
        print(f"note: {data['tokens_without_snippets']} tokens had no snippet and keep their init "
              f"(e.g. {json.dumps(data['examples_without_snippets'][:5], ensure_ascii=False)})")
    return 0
