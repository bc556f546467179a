"""``langgraft pretrain`` (continued MLM/CLM pretraining) and ``langgraft module train-language``.

Both run :func:`langgraft.adapt.pretrain.run.pretrain`; their options are generated from
:class:`~langgraft.adapt.pretrain.run.PretrainOptions` and :class:`~langgraft.adapters.training.TrainOptions`
(TrainingArguments names). The same commands run distributed:
``torchrun --nproc_per_node 2 -m langgraft pretrain ...`` or ``accelerate launch -m langgraft pretrain ...``.
With ``--language-module KIND`` phase 2 trains a language module on the frozen base instead of the
full model (:func:`langgraft.adapt.pretrain.language_modules.pretrain_language_module`); it is written to ``OUT/module``.
``langgraft head recover`` fits an MLM head on a frozen headless encoder (:mod:`langgraft.adapt.pretrain.head`).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from langgraft.adapt.pretrain.language_modules import (LanguageModuleSpec, MODULE_DIR, language_module_options,
                                                       pretrain_language_module, train_language_module)
from langgraft.adapt.pretrain.run import PretrainOptions, pretrain
from langgraft.adapters.cli import add_training_options, kind_config, kinds, module_commands, quiet, training_options
from langgraft.adapt.pretrain.head import HeadRecoveryOptions, recover_head
from langgraft.errors import UserError
from langgraft.options import add_options, from_args
from langgraft.outputs import add_output_arguments


def _register_pretrain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="continued pretraining (MLM for encoders, CLM for decoders)",
        description="Continued pretraining on target-language text: optional embeddings-only phase, then the "
                    "full model (or a language module on the frozen base); packed, streamed data; held-out bits "
                    "per character; resumable checkpoints; mixed precision, new-rows-only, FSDP/DeepSpeed.")
    add_options(parser, PretrainOptions)
    group = parser.add_argument_group("phase 2': a language module on the frozen base")
    group.add_argument("--language-module", choices=tuple(kinds()),
                       help="train this kind of language module instead of the full model; written to OUT/module "
                            "(a `langgraft module` directory)")
    keys = [f.name for f in dataclasses.fields(LanguageModuleSpec)]
    keys += [f.name for c in kinds().values() for f in dataclasses.fields(c) if f.metadata.get("cli", True)]
    group.add_argument("--module-option", action="append", default=[], metavar="KEY=VALUE",
                       help=f"repeatable; KEY alone for a switch, no-KEY to turn one off: {', '.join(keys)} "
                            "(language=CODE is required; see `langgraft module train-language --help`)")
    parser.set_defaults(handler=_pretrain)

    language = module_commands(subparsers).add_parser(
        "train-language", help="train a language module by MLM/CLM, base frozen (through continued pretraining)")
    add_training_options(language)
    language.add_argument("--corpus", required=True, nargs="+", help="target-language text file(s)")
    language.add_argument("--eval-corpus",
                          help="held-out text: loss and bits per character in the module's metrics.jsonl")
    add_options(language, LanguageModuleSpec)
    language.set_defaults(handler=_train_language)


def _pretrain(args: argparse.Namespace) -> int:
    # deferred: keeps torch, accelerate and safetensors off `langgraft --help`
    from accelerate import PartialState

    config = from_args(PretrainOptions, args)
    if args.language_module:
        options = language_module_options(args.language_module, args.module_option)
        result = pretrain_language_module(args.language_module, config, out=Path(config.out) / MODULE_DIR, **options)
    elif args.module_option:
        raise UserError(f"--module-option needs --language-module KIND ({', '.join(kinds())})")
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


def _train_language(args: argparse.Namespace) -> int:
    quiet()
    out = train_language_module(args.kind, args.model, args.corpus, language=args.language, out=args.out,
                                config=kind_config(args.kind, args), options=training_options(args),
                                carry_vocabulary=args.carry_vocabulary, eval_corpus=args.eval_corpus,
                                overwrite=args.overwrite)
    print(f"language module written to {out}")
    return 0


def run_head_recover(args: argparse.Namespace) -> int:
    summary = recover_head(args.model, args.corpus, args.out, from_args(HeadRecoveryOptions, args),
                           eval_corpus=args.eval_corpus, overwrite=args.overwrite)
    print(f"MLM head recovered: held-out loss {summary['held_out_mlm_loss_before']} -> "
          f"{summary['held_out_mlm_loss_after']} -> {args.out}")
    body = summary.get("body")
    if body and "eval_bpc_after" in body:
        print(f"body trained {body['steps']} steps: held-out bpc {body.get('eval_bpc_before')} -> "
              f"{body['eval_bpc_after']}")
    return 0


def _register_head(subparsers: argparse._SubParsersAction) -> None:
    head = subparsers.add_parser("head", help="LM-head utilities").add_subparsers(dest="head_command", metavar="COMMAND")
    recover = head.add_parser("recover", help="fit an MLM head on a frozen headless encoder (e.g. MiniLM)")
    recover.add_argument("--model", required=True, help="headless encoder (hub name, local dir or alias)")
    recover.add_argument("--corpus", required=True, nargs="+", metavar="FILE", help="source-language text")
    add_output_arguments(recover, "output MLM checkpoint directory")
    recover.add_argument("--eval-corpus", help="held-out source text: bits per character during the body steps")
    add_options(recover, HeadRecoveryOptions)
    recover.set_defaults(handler=run_head_recover)


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_pretrain(subparsers)
    _register_head(subparsers)
