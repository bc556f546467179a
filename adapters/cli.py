"""``langgraft module``: train language/task modules, compose them, inspect them."""
from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

KINDS = ("lora", "sft", "madx")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, choices=KINDS, help="module method")
    parser.add_argument("--model", required=True, help="base checkpoint (directory or hub name)")
    parser.add_argument("--out", required=True, help="output module directory")
    # TrainingArguments names, as in `langgraft pretrain`; the older spellings stay as hidden aliases
    _add_renamed(parser, "--max-steps", "--steps", type=int, default=200, help="optimizer steps (per phase for sft)")
    _add_renamed(parser, "--per-device-train-batch-size", "--batch-size", type=int, default=16,
                 help="examples per device per optimizer step")
    _add_renamed(parser, "--learning-rate", "--lr", type=float, default=None,
                 help="learning rate (default: the kind's)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per example/block")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-steps", type=int, default=100, help="checkpoint interval (resume point)")
    _add_kind_options(parser)


def _add_renamed(parser: argparse.ArgumentParser, name: str, *old_names: str, **kwargs: Any) -> None:
    """Option ``name``, also accepted as ``old_names`` (kept for existing scripts, hidden from --help)."""
    action = parser.add_argument(name, **kwargs)
    parser.add_argument(*old_names, dest=action.dest, type=action.type, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def _add_kind_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rank", type=int, help="lora: rank")
    parser.add_argument("--alpha", type=int, help="lora: alpha")
    parser.add_argument("--k", type=int, help="sft: number of entries in the ticket")
    parser.add_argument("--l1", type=float, help="sft: L1 weight toward the start")
    parser.add_argument("--include-layernorm", action="store_true", default=None, help="sft: LayerNorms maskable")
    parser.add_argument("--reduction-factor", type=int, help="madx: bottleneck reduction (default 2 language, 16 task)")
    parser.add_argument("--no-invertible", action="store_true", help="madx: no invertible embedding adapter")


def _add_language_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--language", required=required, help="language code recorded in the module (e.g. ny)")
    parser.add_argument("--carry-vocabulary", action="store_true",
                        help="store the model's tokenizer + embeddings in the module (compose onto the original base)")


def _config(args: argparse.Namespace, kind_flag: str = "--kind") -> dict[str, Any]:
    by_kind = {
        "lora": {"rank": args.rank, "alpha": args.alpha},
        "sft": {"k": args.k, "l1_weight": args.l1, "include_layernorm": args.include_layernorm},
        "madx": {"reduction_factor": args.reduction_factor, "invertible": False if args.no_invertible else None},
    }
    chosen = {k: v for k, v in by_kind[args.kind].items() if v is not None}
    others = [flag for kind, fields in by_kind.items() if kind != args.kind
              for flag, value in fields.items() if value is not None and flag not in by_kind[args.kind]]
    if others:
        from langgraft.errors import UserError

        raise UserError(f"option for {others[0]!r} does not apply to {kind_flag} {args.kind}; remove it")
    return chosen


class _ModuleOptionParser(argparse.ArgumentParser):
    """Parses ``--module-option`` pairs; its errors are one :class:`UserError` line (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from langgraft.errors import UserError

        raise UserError(f"--module-option: {message}")


def language_module_options(kind: str, pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (``KEY`` alone for a switch) named like the ``module train-language`` options.

    Returns the keywords ``config``, ``language`` and ``carry_vocabulary`` of
    :func:`langgraft.adapters.compose.pretrain_language_module`; used by ``langgraft pretrain --language-module``.
    """
    from langgraft.errors import UserError

    parser = _ModuleOptionParser(prog="--module-option", add_help=False, allow_abbrev=False)
    _add_kind_options(parser)
    _add_language_options(parser, required=False)
    known = sorted(dest.replace("_", "-") for dest in vars(parser.parse_args([])))
    argv = []
    for pair in pairs:
        key, has_value, value = pair.partition("=")
        key = key.strip().replace("_", "-")
        if key not in known:
            raise UserError(f"unknown --module-option {key!r} for --language-module {kind}; "
                            f"options: {', '.join(known)}")
        argv.append(f"--{key}={value}" if has_value else f"--{key}")
    args = parser.parse_args(argv)
    if not args.language:
        raise UserError("--language-module needs the module's language code: add --module-option language=CODE")
    args.kind = kind
    return {"config": _config(args, "--language-module"), "language": args.language,
            "carry_vocabulary": args.carry_vocabulary}


def _options(args: argparse.Namespace) -> Any:
    from langgraft.adapters.training import TrainOptions

    return TrainOptions(max_steps=args.max_steps, batch_size=args.per_device_train_batch_size,
                        learning_rate=args.learning_rate, max_length=args.max_length, seed=args.seed,
                        save_steps=args.save_steps)


def _quiet() -> None:
    """Keep stderr for the one-line error: no load reports or progress bars."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _train_language(args: argparse.Namespace) -> int:
    from langgraft.adapters.compose import train_language_module

    _quiet()
    out = train_language_module(args.kind, args.model, args.corpus, language=args.language, out=args.out,
                                config=_config(args), options=_options(args), carry_vocabulary=args.carry_vocabulary,
                                eval_corpus=args.eval_corpus)
    print(f"language module written to {out}")
    return 0


def _train_task(args: argparse.Namespace) -> int:
    from langgraft.adapters.compose import train_task_module

    _quiet()
    out = train_task_module(args.kind, args.model, args.train, task=args.task, out=args.out,
                            language_module=args.language_module, language=args.language,
                            config=_config(args), options=_options(args))
    print(f"task module written to {out}")
    return 0


def _compose(args: argparse.Namespace) -> int:
    from langgraft.adapters.compose import write_composition

    _quiet()
    out = write_composition(args.model, args.modules, args.out, merge=args.merge)
    print(f"{'merged checkpoint' if args.merge else 'composed module'} written to {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from langgraft.adapters.compose import module_info

    print(json.dumps(module_info(args.dir), indent=2, sort_keys=True))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    module = subparsers.add_parser("module", help="language and task modules (lora, sft, madx)",
                                   description="Train, compose and inspect language and task modules.")
    commands = module.add_subparsers(dest="module_command", metavar="SUBCOMMAND", required=True)

    language = commands.add_parser("train-language", help="train a language module by MLM/CLM, base frozen")
    _add_training_options(language)
    language.add_argument("--corpus", required=True, nargs="+", help="target-language text file(s)")
    language.add_argument("--eval-corpus",
                          help="held-out text: loss and bits per character in the module's metrics.jsonl")
    _add_language_options(language)
    language.set_defaults(handler=_train_language)

    task = commands.add_parser("train-task", help="train a task module + head on labelled source data")
    _add_training_options(task)
    task.add_argument("--train", required=True, help="TSV/JSONL text+label, or CoNLL-U/IOB for token-cls")
    task.add_argument("--task", required=True, choices=("seq-cls", "token-cls"))
    task.add_argument("--language-module", help="source-language module to stack under (kept frozen)")
    task.add_argument("--language", help="language of the training data (default: the language module's)")
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
    compose.add_argument("--out", required=True, metavar="DIR", help="output checkpoint or module directory")
    compose.add_argument("--merge", action=argparse.BooleanOptionalAction, default=True,
                         help="fold the modules into the weights (default); --no-merge writes one combined module")
    compose.set_defaults(handler=_compose)

    info = commands.add_parser("info", help="print a module's metadata as JSON (a composed module lists its parts)",
                               description="Print langgraft_module.json as JSON: kind, role, size, base "
                                           "fingerprints, training options and, for a module written by "
                                           "`module compose --no-merge`, its parts.")
    info.add_argument("dir", help="module directory")
    info.set_defaults(handler=_info)
