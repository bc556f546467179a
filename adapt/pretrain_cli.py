"""``langgraft pretrain``: continued MLM/CLM pretraining (see :mod:`langgraft.adapt.pretrain`).

Option names follow ``TrainingArguments``. The same command runs distributed:
``torchrun --nproc_per_node 2 -m langgraft pretrain ...`` or ``accelerate launch -m langgraft pretrain ...``.
With ``--language-module KIND`` stage 2 trains a language module on the frozen base instead of the
full model (:func:`langgraft.adapters.compose.pretrain_language_module`); it is written to ``OUT/module``.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from langgraft.adapters.cli import KINDS

MODULE_DIR = "module"  # OUT/module: the language module of a --language-module run


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="continued pretraining (MLM for encoders, CLM for decoders)",
        description="Continued pretraining on target-language text: optional embeddings-only stage, then the "
                    "full model (or a language module on the frozen base); packed, streamed data; held-out bits "
                    "per character; resumable checkpoints.")
    parser.add_argument("--model", required=True, help="model directory or hub name, with an LM head")
    parser.add_argument("--corpus", required=True, nargs="+", help="target-language training text file(s)")
    parser.add_argument("--out", required=True, help="run directory: final model, metrics, checkpoints")
    parser.add_argument("--eval-corpus", help="held-out text: loss and bpc every --eval-steps")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    group = parser.add_argument_group("schedule (TrainingArguments names)")
    group.add_argument("--max-steps", type=int, default=1000, help="optimizer steps of the whole run (both stages)")
    group.add_argument("--embedding-steps", type=int, default=0,
                       help="first steps train only embeddings and output bias (body frozen)")
    group.add_argument("--learning-rate", type=float,
                       help="learning rate of stage 2 (default: 5e-5 for the full model, the kind's own for a module)")
    group.add_argument("--embedding-learning-rate", type=float, default=1e-3, help="learning rate of the embeddings stage")
    group.add_argument("--per-device-train-batch-size", type=int, default=8)
    group.add_argument("--gradient-accumulation-steps", type=int, default=1)
    group.add_argument("--max-seq-length", type=int, default=128, help="tokens per packed sequence")
    group.add_argument("--warmup-steps", type=float, default=0.0, help="per stage: steps, or a ratio below 1")
    group.add_argument("--weight-decay", type=float, default=0.01, help="embeddings and full-model stages "
                       "(a language module trains without: its method pulls it toward the base)")
    group.add_argument("--lr-scheduler-type", default="linear")
    group.add_argument("--max-grad-norm", type=float, default=1.0)
    group.add_argument("--seed", type=int, default=42)
    group.add_argument("--mlm-probability", type=float, default=0.15)
    group = parser.add_argument_group("data order and mixing")
    group.add_argument("--shuffle-buffer", type=int, default=10_000, metavar="N",
                       help="shuffle each corpus anew at every pass, seeded by --seed: its 16 KiB chunks in a random "
                            "order, then a buffer of N documents (default 10000; 0: file order, no shuffling)")
    group.add_argument("--corpus-alpha", type=float, default=0.3,
                       help="temperature for several --corpus files: p_i ~ size_i ** alpha")
    group.add_argument("--replay-corpus", help="source-language text replayed to limit forgetting")
    group.add_argument("--replay-ratio", type=float, default=0.0, help="share of documents from --replay-corpus")
    group = parser.add_argument_group("checkpoints and logging")
    group.add_argument("--save-steps", type=int, default=500)
    group.add_argument("--save-total-limit", type=int, default=2)
    group.add_argument("--eval-steps", type=int, default=500)
    group.add_argument("--logging-steps", type=int, default=10)
    group.add_argument("--eval-batch-size", type=int, default=16)
    group.add_argument("--use-cpu", action="store_true", help="train on CPU even when a GPU is available")
    group.add_argument("--report-to", nargs="+", default=["auto"],
                       help="auto: TensorBoard logs in OUT/runs when tensorboard is installed; tensorboard: the same, "
                            "required; none: off; other names are Trainer integrations (wandb, mlflow, ...)")
    group = parser.add_argument_group("stage 2': a language module on the frozen base")
    group.add_argument("--language-module", choices=KINDS,
                       help="train this kind of language module instead of the full model; written to OUT/module "
                            "(a `langgraft module` directory)")
    group.add_argument("--module-option", action="append", default=[], metavar="KEY=VALUE",
                       help="repeatable; the `module train-language` options: language=CODE (required), rank, alpha, "
                            "k, l1, include-layernorm, reduction-factor, no-invertible, carry-vocabulary")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from langgraft.adapt.pretrain import PretrainConfig, pretrain
    from langgraft.errors import UserError

    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    config = PretrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    if args.language_module:
        from langgraft.adapters.cli import language_module_options
        from langgraft.adapters.compose import pretrain_language_module

        options = language_module_options(args.language_module, args.module_option)
        result = pretrain_language_module(args.language_module, config, out=Path(config.out) / MODULE_DIR, **options)
    elif args.module_option:
        raise UserError("--module-option needs --language-module KIND (lora, sft or madx)")
    else:
        result = pretrain(config)
    if not PartialState().is_main_process:
        return 0
    summary = f"pretrained {result.steps} steps ({result.objective}) -> {result.out}"
    if args.language_module:
        summary += f"; {args.language_module} language module -> {result.module}"
    if result.eval:
        summary += f"; held-out bpc {result.eval['eval_bpc']:.4f}"
    print(summary)
    return 0
