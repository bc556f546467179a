"""``langgraft tokenizer train|extend|stats``: target-language tokenizers for a source model."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from langgraft.corpora.readers import DECODE_ERROR_POLICIES, FORMATS
from langgraft.options import add_options, from_args
from langgraft.outputs import add_output_arguments
from langgraft.vocab.tokenizers import TokenizerOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train, extend and compare tokenizers",
                                   description="Train, extend and compare target-language tokenizers.")
    commands = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    train = commands.add_parser(
        "train", help="train a new tokenizer in the source tokenizer's family",
        description="Train a target-language tokenizer that keeps the source's normalizer, "
                    "pre-tokenizer, post-processor, decoder and special tokens.")
    train.add_argument("--source", required=True, help="source model or tokenizer: hub name, local dir or alias")
    _corpus_arguments(train)
    add_options(train, TokenizerOptions, skip=("new_tokens",), required=("vocab_size",))
    add_output_arguments(train, "output directory (AutoTokenizer.from_pretrained loads it)")
    train.set_defaults(handler=_train)

    extend = commands.add_parser(
        "extend", help="append target-language pieces to the source tokenizer, keeping every id",
        description="Add target-language pieces to the source tokenizer's model vocabulary; "
                    "existing ids are unchanged and langgraft_extension.json records the original size.")
    extend.add_argument("--source", required=True, help="source model or tokenizer: hub name, local dir or alias")
    _corpus_arguments(extend)
    add_options(extend, TokenizerOptions)
    extend.add_argument("--source-sample", nargs="+", metavar="FILE",
                        help="source-language text that must tokenize exactly as before: new pieces that would "
                             "change it are left out (the next candidates are taken instead)")
    add_output_arguments(extend, "output directory")
    extend.set_defaults(handler=_extend)

    stats = commands.add_parser(
        "stats", help="fertility, split words, UNK rate and vocabulary overlap on a corpus",
        description="Compare tokenizers on one corpus. Overlap is measured against --source "
                    "(or the first --tokenizer).")
    stats.add_argument("--tokenizer", action="append", default=[], metavar="[NAME=]PATH",
                       help="tokenizer to measure (repeatable); NAME defaults to the directory name")
    stats.add_argument("--source", metavar="[NAME=]PATH",
                       help="source tokenizer: measured too, and the overlap reference")
    _corpus_arguments(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    stats.set_defaults(handler=_stats)


def _corpus_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", nargs="+", required=True, metavar="FILE", help="target-language corpus file(s)")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="corpus format (default: by suffix)")
    parser.add_argument("--on-decode-error", default="fail", choices=DECODE_ERROR_POLICIES,
                        help="invalid UTF-8: fail (default), skip the line, or replace the bytes")
    parser.add_argument("--field", default="text", help="JSONL/datasets text field (default: text)")
    parser.add_argument("--column", help="TSV text column, index or header name (default: the last)")


def _reader(args: argparse.Namespace) -> dict:
    """Corpus options for the readers, as train/extend/stats take them."""
    column = int(args.column) if args.column is not None and args.column.isdigit() else args.column
    return {"fmt": args.format, "on_decode_error": args.on_decode_error,
            "reader_options": {"field": args.field, "column": column}}


def _train(args: argparse.Namespace) -> int:
    from langgraft.vocab.tokenizers import detect_family, train_tokenizer

    options = from_args(TokenizerOptions, args)
    tokenizer = train_tokenizer(args.source, args.corpus, options.vocab_size, args.out,
                                min_frequency=options.min_frequency, overwrite=args.overwrite, **_reader(args))
    print(f"saved {detect_family(tokenizer).name} tokenizer {type(tokenizer).__name__} "
          f"({len(tokenizer)} tokens) to {args.out}")
    return 0


def _extend(args: argparse.Namespace) -> int:
    from langgraft.vocab.tokenizers import extend_tokenizer, read_extension_info

    options = from_args(TokenizerOptions, args)
    extend_tokenizer(args.source, args.corpus, args.out, new_tokens=options.new_tokens, vocab_size=options.vocab_size,
                     min_frequency=options.min_frequency, source_sample=args.source_sample, overwrite=args.overwrite,
                     **_reader(args))
    info = read_extension_info(args.out)
    print(f"saved extended tokenizer to {args.out}: {info['original_vocab_size']} -> {info['new_vocab_size']} tokens "
          f"({info['new_tokens_used_on_corpus_sample']} of the new pieces used on a corpus sample)")
    if "source_sample" in info:
        sample = info["source_sample"]
        print(f"source sample: {sample['documents']} documents, {sample['documents_changed']} tokenized differently; "
              f"{sample['rejected_pieces']} candidate pieces left out because they changed it")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from langgraft.errors import UserError
    from langgraft.vocab.tokstats import format_stats_json, format_stats_table, tokenizer_stats

    specs = ([args.source] if args.source else []) + args.tokenizer
    if not specs:
        raise UserError("no tokenizer given; pass --tokenizer [NAME=]PATH (repeatable) and/or --source")
    named = dict(_name_and_path(spec) for spec in specs)
    if len(named) != len(specs):
        raise UserError("two tokenizers share a name; name them explicitly with --tokenizer NAME=PATH")
    rows = tokenizer_stats(named, args.corpus, **_reader(args))
    print(format_stats_json(rows) if args.json else format_stats_table(rows))
    return 0


def _name_and_path(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` or a bare path/alias, named after its last path component."""
    name, sep, path = spec.partition("=")
    if sep and os.sep not in name and name:
        return name, path
    return Path(spec.rstrip("/\\")).name or spec, spec
