"""``langgraft head recover``: fit an MLM head on a frozen headless encoder (:mod:`langgraft.adapt.head`)."""
from __future__ import annotations

import argparse

from langgraft.adapt.head import HeadRecoveryOptions
from langgraft.options import add_options, from_args
from langgraft.outputs import add_output_arguments


def run_head_recover(args: argparse.Namespace) -> int:
    from langgraft.adapt.head import recover_head

    summary = recover_head(args.model, args.corpus, args.out, from_args(HeadRecoveryOptions, args),
                           eval_corpus=args.eval_corpus, overwrite=args.overwrite)
    print(f"MLM head recovered: held-out loss {summary['held_out_mlm_loss_before']} -> "
          f"{summary['held_out_mlm_loss_after']} -> {args.out}")
    body = summary.get("body")
    if body and "eval_bpc_after" in body:
        print(f"body trained {body['steps']} steps: held-out bpc {body.get('eval_bpc_before')} -> "
              f"{body['eval_bpc_after']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    head = subparsers.add_parser("head", help="LM-head utilities").add_subparsers(dest="head_command", metavar="COMMAND")
    recover = head.add_parser("recover", help="fit an MLM head on a frozen headless encoder (e.g. MiniLM)")
    recover.add_argument("--model", required=True, help="headless encoder (hub name, local dir or alias)")
    recover.add_argument("--corpus", required=True, nargs="+", metavar="FILE", help="source-language text")
    add_output_arguments(recover, "output MLM checkpoint directory")
    recover.add_argument("--eval-corpus", help="held-out source text: bits per character during the body steps")
    add_options(recover, HeadRecoveryOptions)
    recover.set_defaults(handler=run_head_recover)
