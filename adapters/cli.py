"""``langgraft module``: train task modules, compose modules, inspect them.

The options come from their declarations: the training budget from
:class:`~langgraft.adapters.training.TrainOptions` (TrainingArguments names), each kind's options
from its config dataclass (``LoraModuleConfig``, ``SftConfig``, ``MadxConfig``). ``module
train-language`` trains through continued pretraining and is registered by
:mod:`langgraft.adapt.pretrain.cli` on the same ``module`` command (:func:`module_commands`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from langgraft.adapters.base import MODULE_KINDS
from langgraft.adapters.compose import module_info, train_task_module, train_task_module_seeds, write_composition
from langgraft.adapters.training import TrainOptions
from langgraft.errors import UserError
from langgraft.options import add_options, from_args
from langgraft.outputs import add_output_arguments
from langgraft.adapters.tasks import TASKS

MODULE_COMMAND = "module"


def kinds() -> dict[str, type]:
    """Module kind name -> its config dataclass (the registry of :mod:`langgraft.adapters.base`)."""
    return {name: kind.config_class for name, kind in sorted(MODULE_KINDS.items())}


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """``--kind``, ``--model``, ``--out``, the :class:`TrainOptions` and every kind's own options."""

    parser.add_argument("--kind", required=True, choices=tuple(kinds()), help="module method")
    parser.add_argument("--model", required=True, help="base checkpoint (directory or hub name)")
    add_output_arguments(parser, "output module directory")
    add_options(parser, TrainOptions)
    taken: set[str] = set()
    for name, config_class in kinds().items():
        group = parser.add_argument_group(f"{name} options")
        fields = [f.name for f in dataclasses.fields(config_class) if f.metadata.get("cli", True)]
        add_options(group, config_class, skip=taken, omit_defaults=True)
        taken |= set(fields)


def kind_config(kind: str, args: argparse.Namespace, kind_flag: str = "--kind") -> dict[str, Any]:
    """The kind options given on the command line; an option of another kind only is a :class:`UserError`."""
    configs = kinds()
    own = {f.name for f in dataclasses.fields(configs[kind])}
    chosen = {name: getattr(args, name) for name in own if hasattr(args, name)}
    for other, config_class in configs.items():
        for field in dataclasses.fields(config_class):
            if other != kind and field.name not in own and hasattr(args, field.name):
                raise UserError(f"option --{field.name.replace('_', '-')} ({other}) does not apply to {kind_flag} "
                                f"{kind}; remove it")
    return chosen


def training_options(args: argparse.Namespace) -> Any:
    return from_args(TrainOptions, args)


def quiet() -> None:
    """Keep stderr for the one-line error: no load reports or progress bars."""
    # deferred: keeps transformers, datasets and huggingface_hub off `langgraft --help`
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _train_task(args: argparse.Namespace) -> int:
    quiet()
    common = dict(task=args.task, out=args.out, language_module=args.language_module, language=args.language,
                  config=kind_config(args.kind, args), options=training_options(args), overwrite=args.overwrite)
    if args.seeds is None:
        out = train_task_module(args.kind, args.model, args.train, **common)
        print(f"task module written to {out}")
    else:
        out = train_task_module_seeds(args.kind, args.model, args.train, seeds=args.seeds, **common)
        print(f"{args.seeds} task modules (seeds from --seed on) written to {out}/seed-*")
    return 0


def _compose(args: argparse.Namespace) -> int:
    quiet()
    out = write_composition(args.model, args.modules, args.out, merge=args.merge, overwrite=args.overwrite)
    print(f"{'merged checkpoint' if args.merge else 'composed module'} written to {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(module_info(args.dir), indent=2, sort_keys=True))
    return 0


def module_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-commands of ``langgraft module`` (created on first use, so other stages can add theirs)."""
    parser = subparsers.choices.get(MODULE_COMMAND)
    if parser is None:
        parser = subparsers.add_parser(MODULE_COMMAND, help=f"language and task modules ({', '.join(kinds())})",
                                       description="Train, compose and inspect language and task modules.")
        parser.set_defaults(module_commands=parser.add_subparsers(dest="module_command", metavar="SUBCOMMAND",
                                                                  required=True))
    return parser.get_default("module_commands")


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = module_commands(subparsers)

    task = commands.add_parser("train-task", help="train a task module + head on labelled source data")
    add_training_options(task)
    task.add_argument("--train", required=True, help="TSV/JSONL text+label; CoNLL-U/IOB/JSONL tokens+tags for token-cls; "
                      "JSONL context+question+choices+label for multiple-choice")
    task.add_argument("--task", required=True, choices=TASKS)
    task.add_argument("--language-module", help="source-language module to stack under (kept frozen)")
    task.add_argument("--language", help="language of the training data (default: the language module's)")
    task.add_argument("--seeds", type=int, metavar="N",
                      help="train N modules (seeds --seed, --seed+1, ...) into OUT/seed-*; "
                           "`langgraft eval --modules OUT` reports mean ± sd over them")
    task.set_defaults(handler=_train_task)

    compose = commands.add_parser(
        "compose", help="compose modules into a stock checkpoint (--merge, default) or one module (--no-merge)",
        description="Compose modules onto a base. --merge (the default) writes a stock transformers checkpoint "
                    "with the modules folded in (lora, sft); --no-merge writes ONE module of the modules' kind "
                    "for the untouched base: a PEFT LoRA adapter, an sft sparse file, or a stacked madx module.")
    compose.add_argument("--base", "--model", dest="model", required=True, metavar="DIR",
                         help="base checkpoint the modules were trained on")
    compose.add_argument("--modules", "--module", dest="modules", required=True, nargs="+", action="extend",
                         metavar="DIR", help="module directories: language modules and at most one task module")
    add_output_arguments(compose, "output checkpoint or module directory")
    compose.add_argument("--merge", action=argparse.BooleanOptionalAction, default=True,
                         help="fold the modules into the weights (default); --no-merge writes one combined module")
    compose.set_defaults(handler=_compose)

    info = commands.add_parser("info", help="print a module's metadata as JSON (a composed module lists its parts)",
                               description="Print langgraft_module.json as JSON: kind, role, size, base "
                                           "fingerprints, training options and, for a module written by "
                                           "`module compose --no-merge`, its parts.")
    info.add_argument("dir", help="module directory")
    info.set_defaults(handler=_info)
