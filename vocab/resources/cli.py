"""``langgraft resources fasttext|dictionary|align``: build transfer resources once, reuse them.

The files these commands write are what ``langgraft init`` takes as ``--source-embeddings`` /
``--target-embeddings`` (fastText ``.bin``), ``--dictionary`` (TSV) and, for ``transtok``,
``--option alignment_table=FILE``.
"""
from __future__ import annotations

import argparse

from langgraft.errors import UserError
from langgraft.models import load_tokenizer
from langgraft.options import add_options, from_args
from langgraft.outputs import add_output_arguments, check_output
from langgraft.vocab.resources.align import (DictionaryOptions, align_words, induce_dictionary, token_alignment_counts,
                                             write_token_table)
from langgraft.vocab.resources.dictionary import read_dictionary, write_dictionary
from langgraft.vocab.resources.fasttext import FastTextOptions, train_fasttext, train_token_fasttext
from langgraft.vocab.resources.text import parallel_sentences


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("resources", help="build fastText vectors, dictionaries, alignment tables",
                                   description="Build offline resources for vocabulary transfer.")
    commands = parser.add_subparsers(dest="resources_command", metavar="ACTION", required=True)

    fasttext = commands.add_parser("fasttext", help="train word-level fastText vectors on text files",
                                   description="Train fastText (subword n-grams) on one or more text files. "
                                               "Deterministic with --threads 1 (default).")
    fasttext.add_argument("--corpus", nargs="+", required=True, metavar="FILE", help="text files (.gz allowed)")
    add_output_arguments(fasttext, "output .bin (a .bin.json sidecar records the options)")
    add_options(fasttext, FastTextOptions)
    fasttext.add_argument("--tokenizer", help="token-level model for focus: tokenize the corpus with this "
                                              "tokenizer (dir or hub name) and keep its token strings; "
                                              "use FOCUS's settings, e.g. --model cbow --epochs 3 --min-count 10")
    fasttext.set_defaults(handler=_fasttext)

    dictionary = commands.add_parser(
        "dictionary", help="induce a bilingual dictionary from parallel text, or convert one to TSV",
        description="Write a source<TAB>target dictionary: induced from parallel text with eflomal "
                    "(--parallel), or converted from a TSV/MUSE/FreeDict dictd file (--from).")
    source = dictionary.add_mutually_exclusive_group(required=True)
    source.add_argument("--parallel", nargs=2, metavar=("SRC_FILE", "TGT_FILE"),
                        help="line- or id-aligned text (source language first)")
    source.add_argument("--from", dest="from_file", metavar="FILE",
                        help="existing dictionary: TSV, MUSE, or dictd .index/.dict(.dz)")
    dictionary.add_argument("--format", default="auto", choices=("auto", "tsv", "muse", "dictd"),
                            help="format of --from (default: detect)")
    add_output_arguments(dictionary, "output TSV")
    add_options(dictionary, DictionaryOptions)
    dictionary.add_argument("--symmetrization", choices=("grow-diag", "intersection"), default="grow-diag")
    dictionary.set_defaults(handler=_dictionary)

    align = commands.add_parser(
        "align", help="token alignment table for transtok",
        description="Word-align parallel text with eflomal and spread the link counts over the "
                    "token pieces of both tokenizers (the table transtok turns into p(s|t)).")
    align.add_argument("--parallel", nargs=2, required=True, metavar=("SRC_FILE", "TGT_FILE"),
                       help="line- or id-aligned text (source language first)")
    align.add_argument("--source-tokenizer", required=True, help="source model/tokenizer: hub name, dir or alias")
    align.add_argument("--target-tokenizer", required=True, help="target tokenizer directory")
    add_output_arguments(align, "output table (TSV)")
    align.add_argument("--symmetrization", choices=("grow-diag", "intersection"), default="grow-diag")
    align.set_defaults(handler=_align)


def _fasttext(args: argparse.Namespace) -> int:
    check_output(args.out, inputs=[*args.corpus, args.tokenizer], overwrite=args.overwrite, file=True)
    options = from_args(FastTextOptions, args)
    if args.tokenizer:
        vectors = train_token_fasttext(args.corpus, load_tokenizer(args.tokenizer), args.out, options)
        print(f"wrote {args.out}: {len(vectors.words)} tokens, dim {vectors.dim}")
        return 0
    vectors = train_fasttext(args.corpus, args.out, options)
    print(f"wrote {args.out}: {len(vectors.words)} words, dim {vectors.dim}")
    return 0


def _dictionary(args: argparse.Namespace) -> int:
    check_output(args.out, inputs=[args.from_file, *(args.parallel or ())], overwrite=args.overwrite, file=True)
    if args.from_file:
        pairs = read_dictionary(args.from_file, format=args.format)
    else:
        alignment = align_words(*parallel_sentences(*args.parallel), symmetrization=args.symmetrization)
        options = from_args(DictionaryOptions, args)
        pairs = induce_dictionary(alignment, options)
        if not pairs:
            raise UserError(f"no word pair reached --min-count {options.min_count} / --min-probability "
                            f"{options.min_probability}; give more parallel text or lower the thresholds")
    count = write_dictionary(pairs, args.out)
    print(f"wrote {args.out}: {count} pairs")
    return 0


def _align(args: argparse.Namespace) -> int:
    check_output(args.out, inputs=[*args.parallel, args.source_tokenizer, args.target_tokenizer],
                 overwrite=args.overwrite, file=True)
    source_tokenizer = load_tokenizer(args.source_tokenizer)
    target_tokenizer = load_tokenizer(args.target_tokenizer)
    source_lines, target_lines = parallel_sentences(*args.parallel)
    alignment = align_words(source_lines, target_lines, symmetrization=args.symmetrization)
    counts = token_alignment_counts(alignment, source_lines, target_lines, source_tokenizer, target_tokenizer)
    rows = write_token_table(counts, args.out, source_tokenizer, target_tokenizer)
    print(f"wrote {args.out}: {rows} (target token, source token) pairs")
    return 0
