"""``langgraft tokenizer``, ``langgraft init``, ``langgraft ofa export`` and ``langgraft hydra add|export``: the vocabulary stage's commands.

(``langgraft head recover`` trains, so it lives with continued pretraining: :mod:`langgraft.adapt.pretrain.cli`.)
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from langgraft.corpora.prepare import CorpusOptions
from langgraft.errors import UserError
from langgraft.options import add_options, from_args, parse_pairs
from langgraft.outputs import add_output_arguments, check_output
from langgraft.vocab.canonical import detect_family
from langgraft.vocab.tokenizers import TokenizerOptions, extend_tokenizer, read_extension_info, train_tokenizer
from langgraft.vocab.tokstats import format_stats_json, format_stats_table, tokenizer_stats

_NOT_READ = ("id_field", "id_column", "group_key", "id_separator")  # corpus options the tokenizer commands do not use


def _register_tokenizer(subparsers: argparse._SubParsersAction) -> None:
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
    add_options(parser, CorpusOptions, skip=_NOT_READ)


def _reader(args: argparse.Namespace) -> dict:
    """Corpus options for the readers, as train/extend/stats take them."""
    options = from_args(CorpusOptions, args)
    return {"fmt": options.format, "on_decode_error": options.on_decode_error,
            "reader_options": {"field": options.field, "column": options.column, "paragraphs": options.paragraphs,
                               "split": options.split}}


def _train(args: argparse.Namespace) -> int:
    options = from_args(TokenizerOptions, args)
    tokenizer = train_tokenizer(args.source, args.corpus, options.vocab_size, args.out,
                                min_frequency=options.min_frequency, overwrite=args.overwrite, **_reader(args))
    print(f"saved {detect_family(tokenizer).name} tokenizer {type(tokenizer).__name__} "
          f"({len(tokenizer)} tokens) to {args.out}")
    return 0


def _extend(args: argparse.Namespace) -> int:
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


class MethodListHelp(argparse.HelpFormatter):
    """``--method``'s help lists the registered methods, read from the registry only when help is
    printed: the methods import torch, which building the parser (``langgraft --help``) must not."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "--method" in action.option_strings:
            # deferred: keeps torch off `langgraft --help`
            from langgraft.vocab.init import list_methods

            return f"embedding initializer: {', '.join(list_methods())}"
        return super()._get_help_string(action)


def run_init(args: argparse.Namespace) -> int:
    # deferred: keeps torch off `langgraft --help`
    from langgraft.vocab.init import TransferResources
    from langgraft.vocab.transfer import save_outcome, transfer

    options = parse_pairs(args.option, "--option", "k=10")
    if args.rank is not None:
        options["rank"] = args.rank
    resources = TransferResources(
        source_embeddings=args.source_embeddings, target_embeddings=args.target_embeddings,
        dictionary=args.dictionary, source_corpus=args.source_corpus, target_corpus=args.target_corpus,
        parallel=tuple(args.parallel) if args.parallel else None, helper=args.helper, workdir=args.workdir,
    )
    inputs = [args.source, args.tokenizer, args.source_embeddings, args.target_embeddings, args.dictionary,
              args.helper, args.workdir, *args.source_corpus, *args.target_corpus, *(args.parallel or ())]
    check_output(args.out, inputs=inputs, overwrite=args.overwrite)
    outcome = transfer(args.source, args.tokenizer, args.method, mode=args.mode, resources=resources,
                       seed=args.seed, calibrate_bias=args.calibrate_bias, device=args.device,
                       pad_to_multiple_of=args.pad_to_multiple_of, **options)
    save_outcome(outcome, args.out, copy_untouched=args.copy_untouched, overwrite=args.overwrite, inputs=inputs)
    summary = outcome.summary
    rows = summary["embedding_rows"]
    print(f"{args.method}: {summary['initialized_tokens']} rows initialized "
          f"({', '.join(f'{k} {v}' for k, v in summary['counts'].items())}), coverage {summary['coverage']:.1%}, "
          f"{summary['wall_seconds']:.1f} s -> {args.out}")
    print(f"embedding rows {rows['source_rows']} -> {rows['rows']} ({rows['tokens']} tokens + {rows['padding_rows']} "
          f"padding, multiple of {rows['padding_multiple']}), {summary['dtype']}, "
          f"{len(summary['output_files'])} weight file(s)")
    for reason in summary["whole_model_loaded"]:
        print(f"note: the whole source model was loaded: {reason}")
    if "bias_calibration" in summary:
        kl = summary["bias_calibration"]["kl_bits_per_round"]
        print(f"output bias calibrated on the target corpus: KL(frequencies || mean prediction) {kl[0]:.3f} -> "
              f"{kl[-1]:.3f} bits")
    if "hint" in summary:
        print(f"note: {summary['hint']}")
    return 0


def run_ofa_export(args: argparse.Namespace) -> int:
    # deferred: keeps torch off `langgraft --help`
    from langgraft.vocab.init.ofa import export_factorized

    export_factorized(args.model, args.out, args.factorized, overwrite=args.overwrite)
    print(f"stock checkpoint with multiplied-out factorized embeddings -> {args.out}")
    return 0


def run_hydra_add(args: argparse.Namespace) -> int:
    # deferred: keeps torch off `langgraft --help`
    from langgraft.vocab.hydra import add_language

    add_language(args.model, args.language, args.out, overwrite=args.overwrite)
    print(f"language table {args.language!r} -> {args.out}")
    return 0


def run_hydra_export(args: argparse.Namespace) -> int:
    # deferred: keeps torch off `langgraft --help`
    from langgraft.vocab.hydra import export_language

    export_language(args.model, args.table, args.out, overwrite=args.overwrite)
    print(f"stock checkpoint with language table {args.table} -> {args.out}")
    return 0


def _register_init(subparsers: argparse._SubParsersAction) -> None:
    init = subparsers.add_parser(
        "init", help="initialize a model's embeddings for a new tokenizer (vocabulary transfer)",
        description="Transfer a source checkpoint to a target tokenizer. Reads only the vocabulary tensors "
                    "(input embeddings, an untied head, an output bias) and writes a stock checkpoint in the "
                    "source's dtype and shard layout plus provenance.jsonl and transfer_summary.json.",
        formatter_class=MethodListHelp)
    init.add_argument("--source", required=True, help="source model (hub name, local dir or alias such as minilm)")
    init.add_argument("--tokenizer", required=True, help="target tokenizer directory")
    init.add_argument("--method", required=True, help="embedding initializer (the registered methods)")
    add_output_arguments(init, "output checkpoint directory")
    init.add_argument("--mode", default="auto", choices=("auto", "replace", "extend"),
                      help="replace: new vocabulary; extend: source vocabulary + new pieces; auto: extend when the "
                           "tokenizer dir has langgraft_extension.json (default)")
    init.add_argument("--source-embeddings", help="fastText .bin of the source language")
    init.add_argument("--target-embeddings", help="fastText .bin of the target language")
    init.add_argument("--dictionary", help="bilingual dictionary TSV (source<TAB>target)")
    init.add_argument("--source-corpus", nargs="+", default=[], metavar="FILE", help="source-language text")
    init.add_argument("--target-corpus", nargs="+", default=[], metavar="FILE", help="target-language text")
    init.add_argument("--parallel", nargs=2, metavar=("SRC_FILE", "TGT_FILE"), help="line-aligned parallel text")
    init.add_argument("--helper", help="helper model that already uses the target tokenizer (clp)")
    init.add_argument("--rank", type=int, help="factorization rank (ofa; 0 = full)")
    init.add_argument("--workdir", help="cache directory for derived resources (trained fastText, dictionaries)")
    init.add_argument("--seed", type=int, default=0, help="seed of every random draw (fallback rows, fastText)")
    init.add_argument("--device", default="auto",
                      help="where the similarity step of wechsel, focus, ofa, clp and transtok runs: auto (a CUDA GPU "
                           "when one is visible, else cpu), cpu, cuda, cuda:N (default auto)")
    init.add_argument("--pad-to-multiple-of", type=int, metavar="N",
                      help="round the new embedding rows up to a multiple of N (default: the source's own padding; "
                           "1 = none)")
    init.add_argument("--copy-untouched", action="store_true",
                      help="copy the shards that hold no vocabulary tensor instead of reflinking or hard-linking them "
                           "to the source's files (use it when the output's files will be rewritten in place)")
    init.add_argument("--calibrate-bias", action="store_true",
                      help="then shift the new rows' output bias so the mean prediction on --target-corpus matches its "
                           "token frequencies (MLM/CLM heads with a bias; recommended before full-model pretraining; "
                           "runs, so loads, the whole model)")
    init.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="method option, e.g. --option k=10 (repeatable)")
    init.set_defaults(handler=run_init)

    ofa = subparsers.add_parser("ofa", help="OFA factorized embeddings").add_subparsers(
        dest="ofa_command", metavar="COMMAND")
    ofa_export = ofa.add_parser(
        "export", help="multiply (trained) rank-r factors out into a stock checkpoint",
        description="Write --model with its input embeddings replaced by coordinates @ primitives of the "
                    "factorized file; the output loads with stock transformers.")
    ofa_export.add_argument("--model", required=True,
                            help="checkpoint the factors belong to (e.g. a `langgraft init --method ofa` output)")
    add_output_arguments(ofa_export, "output checkpoint directory")
    ofa_export.add_argument("--factorized", help="factors file (default: --model/factorized_embeddings.safetensors)")
    ofa_export.set_defaults(handler=run_ofa_export)

    hydra = subparsers.add_parser("hydra", help="one body, swappable per-language embedding tables").add_subparsers(
        dest="hydra_command", metavar="COMMAND")
    add = hydra.add_parser("add", help="save a checkpoint's embedding table + head rows + tokenizer as a language table")
    add.add_argument("--model", required=True, help="checkpoint holding the language (e.g. a langgraft init output)")
    add.add_argument("--language", required=True, help="language name, e.g. ny")
    add_output_arguments(add, "output language-table directory")
    add.set_defaults(handler=run_hydra_add)
    export = hydra.add_parser("export", help="attach a language table to a body and write a stock checkpoint")
    export.add_argument("--model", required=True, help="checkpoint providing the body")
    export.add_argument("--table", required=True, help="language-table directory from `langgraft hydra add`")
    add_output_arguments(export, "output checkpoint directory")
    export.set_defaults(handler=run_hydra_export)


__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_tokenizer(subparsers)
    _register_init(subparsers)
