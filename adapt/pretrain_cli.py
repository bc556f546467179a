"""``langgraft pretrain``: continued MLM/CLM pretraining (see :mod:`langgraft.adapt.pretrain`).

Option names follow ``TrainingArguments``. The same command runs distributed:
``torchrun --nproc_per_node 2 -m langgraft pretrain ...`` or ``accelerate launch -m langgraft pretrain ...``.
"""
from __future__ import annotations

import argparse
import dataclasses


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="continued pretraining (MLM for encoders, CLM for decoders)",
        description="Continued pretraining on target-language text: optional embeddings-only stage, then the "
                    "full model; packed, streamed data; held-out bits per character; resumable checkpoints.")
    parser.add_argument("--model", required=True, help="model directory or hub name, with an LM head")
    parser.add_argument("--corpus", required=True, nargs="+", help="target-language training text file(s)")
    parser.add_argument("--out", required=True, help="run directory: final model, metrics, checkpoints")
    parser.add_argument("--eval-corpus", help="held-out text: loss and bpc every --eval-steps")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    group = parser.add_argument_group("schedule (TrainingArguments names)")
    group.add_argument("--max-steps", type=int, default=1000, help="optimizer steps of the whole run (both stages)")
    group.add_argument("--embedding-steps", type=int, default=0,
                       help="first steps train only embeddings and output bias (body frozen)")
    group.add_argument("--learning-rate", type=float, default=5e-5, help="learning rate of the full-model stage")
    group.add_argument("--embedding-learning-rate", type=float, default=1e-3, help="learning rate of the embeddings stage")
    group.add_argument("--per-device-train-batch-size", type=int, default=8)
    group.add_argument("--gradient-accumulation-steps", type=int, default=1)
    group.add_argument("--max-seq-length", type=int, default=128, help="tokens per packed sequence")
    group.add_argument("--warmup-steps", type=float, default=0.0, help="per stage: steps, or a ratio below 1")
    group.add_argument("--weight-decay", type=float, default=0.01)
    group.add_argument("--lr-scheduler-type", default="linear")
    group.add_argument("--max-grad-norm", type=float, default=1.0)
    group.add_argument("--seed", type=int, default=42)
    group.add_argument("--mlm-probability", type=float, default=0.15)
    group = parser.add_argument_group("data mixing")
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
                       help="Trainer integrations (default: tensorboard when installed)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from langgraft.adapt.pretrain import PretrainConfig, pretrain

    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    result = pretrain(PretrainConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    if not PartialState().is_main_process:
        return 0
    summary = f"pretrained {result.steps} steps ({result.objective}) -> {result.out}"
    if result.eval:
        summary += f"; held-out bpc {result.eval['eval_bpc']:.4f}"
    print(summary)
    return 0
