"""``langgraft corpus ...``: prepare cleaned, deduplicated, group-split corpora."""
from __future__ import annotations

import argparse
import json

from langgraft.corpora.bible import DEMO_SPLIT_RATIOS
from langgraft.corpora.clean import CleanConfig
from langgraft.corpora.prepare import READING, SPLITTING, CorpusOptions, prepare_corpus
from langgraft.options import add_options, from_args
from langgraft.outputs import add_output_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser("corpus", help="prepare corpora (read, clean, dedup, split)")
    commands = corpus.add_subparsers(dest="corpus_command", metavar="COMMAND")
    prepare = commands.add_parser(
        "prepare",
        help="write cleaned train/dev/test files and summary.json",
        description="Read one or more corpus files (or the built-in Bible), clean and deduplicate "
        "them, split whole groups into train/dev/test and write <out>/{train,dev,test}.txt plus "
        "summary.json.",
    )
    prepare.add_argument("inputs", nargs="*", metavar="INPUT", help="corpus files or datasets directories")
    prepare.add_argument("--bible", metavar="LANG", help="use the built-in Bible instead: eng or nya")
    add_output_arguments(prepare, "output directory")
    prepare.add_argument_group(READING)
    add_options(prepare.add_argument_group("cleaning"), CleanConfig)
    splitting = prepare.add_argument_group(SPLITTING)
    add_options(prepare, CorpusOptions)  # into the reading and splitting groups
    splitting.add_argument("--ratios", type=float, nargs=3, default=DEMO_SPLIT_RATIOS, metavar=("TRAIN", "DEV", "TEST"),
                           help=f"split ratios, finite and >= 0, train > 0 (default: {' '.join(map(str, DEMO_SPLIT_RATIOS))})")
    splitting.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    prepare.add_argument("--json", action="store_true", help="print the summary as JSON")
    prepare.set_defaults(handler=_prepare)
    corpus.set_defaults(handler=lambda args: _missing_command(corpus))


def _missing_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _prepare(args: argparse.Namespace) -> int:
    summary = prepare_corpus(args.inputs, args.out, bible=args.bible, options=from_args(CorpusOptions, args),
                             clean=from_args(CleanConfig, args), ratios=args.ratios, seed=args.seed,
                             overwrite=args.overwrite)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{'split':<6} {'documents':>10} {'words':>12} {'characters':>14}")
    for name, counts in summary["splits"].items():
        print(f"{name:<6} {counts['documents']:>10} {counts['words']:>12} {counts['characters']:>14}")
    dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in summary["dropped"].items())
    print(f"read {summary['documents_in']} documents, kept {summary['documents_kept']}; dropped: {dropped}")
    print(f"wrote {args.out}/{{train,dev,test}}.txt and {args.out}/summary.json")
    return 0
