"""Recover an MLM head for a headless encoder (e.g. a sentence-transformers body such as MiniLM).

Without an MLM head, masked-LM measurement (bits per character) and MLM training start from a
random projection and say nothing about the body. Here the body is loaded into the matching
``AutoModelForMaskedLM`` (the decoder tied to the input embeddings as the config says), frozen,
and only the head (transform + bias, + the decoder when untied) is trained on source-language text
through the one training path (:func:`langgraft.training.train`: precision, sealed checkpoints,
resume). The result is a stock MLM checkpoint.

A frozen sentence-embedding body is a poor masked LM even with a trained head: MiniLM's, after
100 head steps, predicts masked English words worse than a context-free unigram model (2.72 vs
2.55 bits per character), so there is little for vocabulary transfer to carry over. ``body_steps``
then trains the whole model on the same source text (``langgraft pretrain``: packed, MLM on the
masked rows only) — 400 steps took it to 1.68 and made the best init reach random-init's bpc
10x sooner (docs/benchmarks.md, "Convergence").
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from langgraft.adapt.pretrain.run import PretrainOptions, pretrain
from langgraft.atomic import atomic_dir
from langgraft.corpora.readers import iter_text
from langgraft.vocab.resources.text import RESOURCE_DECODE_ERRORS
from langgraft.outputs import check_output
from langgraft.errors import UserError
from langgraft.models import default_max_length, head_kind, load_config, load_model, load_tokenizer
from langgraft.options import alias_names, option
from langgraft.training.options import LOGGING, SCALE, SCHEDULE, TrainingOptions

HEAD_SUMMARY_FILE = "head_recovery.json"
BODY = "body steps (then the whole model, on the same text)"


@dataclass(kw_only=True)
class HeadRecoveryOptions(TrainingOptions):
    """Options of ``langgraft head recover``: the head phase's budget, then optional body steps."""

    max_steps: int = option(300, help="optimizer steps of the head", gt=0, group=SCHEDULE)
    learning_rate: float = option(1e-3, help="learning rate of the head", gt=0, group=SCHEDULE)
    per_device_train_batch_size: int = option(32, help="lines per device per optimizer step", ge=1,
                                              aliases=("--batch-size",), keys=("batch_size",), group=SCHEDULE)
    max_seq_length: int = option(128, help="tokens per line (longer lines are cut)", gt=0, aliases=("--max-length",),
                                keys=("max_length",), group=SCHEDULE)
    warmup_steps: float = option(0.1, help="linear warmup: steps, or a ratio of the steps when below 1", ge=0,
                                 group=SCHEDULE)
    weight_decay: float = option(0.0, help="AdamW weight decay", ge=0, group=SCHEDULE)
    seed: int = option(0, help="seed of every random draw (masks, data order, the new head)", group=SCHEDULE)
    eval_lines: int = option(64, help="first lines held out to measure the MLM loss before/after the head", ge=1,
                             group=SCHEDULE)
    body_steps: int = option(0, help="then train the whole model this many MLM steps on the same text (0: body "
                             "untouched); a sentence-embedding body is a poor MLM until it is", ge=0, group=BODY)
    body_learning_rate: float = option(3e-4, help="learning rate of the body steps", gt=0, group=BODY)
    save_steps: int = option(100, help="checkpoint interval; rerunning an interrupted command resumes from the "
                             "last one", gt=0, group=LOGGING, result=False)
    save_total_limit: int | None = option(1, help="checkpoints kept (null/None: all)", ge=1, group=LOGGING,
                                          result=False)


def masked_lm_loss(model: Any, tokenizer: Any, lines: list[str], seed: int = 0, max_length: int = 128) -> float:
    """Mean MLM loss on ``lines`` with masks fixed by ``seed`` (comparable before/after training)."""
    # deferred: keeps torch, transformers and tokenizers off `langgraft --help`
    import torch
    from transformers import DataCollatorForLanguageModeling

    torch.manual_seed(seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    features = [tokenizer(line, truncation=True, max_length=max_length, return_special_tokens_mask=True)
                for line in lines]
    batch = collator(features)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss = model(**batch).loss.item()
    model.train(was_training)
    return loss


def masked_lm_from_body(model_dir: str, **load: Any) -> Any:
    """``AutoModelForMaskedLM`` with the body's weights; an untied decoder starts from the input embeddings.

    ``load``: further ``from_pretrained`` arguments (``dtype``, ``attn_implementation``).
    """
    # deferred: keeps torch, transformers and huggingface_hub off `langgraft --help`
    import torch
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is missing on purpose
    try:
        model = load_model(model_dir, AutoModelForMaskedLM, **load)
    finally:
        hf_logging.set_verbosity(verbosity)
    decoder = model.get_output_embeddings()
    embeddings = model.get_input_embeddings()
    if decoder is None:
        raise UserError(f"{model_dir}: model type {model.config.model_type!r} has no MLM head class in transformers")
    if decoder.weight.data_ptr() != embeddings.weight.data_ptr():
        with torch.no_grad():
            decoder.weight.copy_(embeddings.weight)
    return model


def freeze_body(model: Any) -> list[str]:
    """Freeze the base model (incl. the tied decoder = input embeddings); return trainable names."""
    prefix = model.base_model_prefix
    trainable = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad = not name.startswith(prefix + ".")
        if parameter.requires_grad:
            trainable.append(name)
    return trainable


def recover_head(model: str | os.PathLike, corpus_files: Sequence[str | os.PathLike], out: str | os.PathLike,
                 options: HeadRecoveryOptions | None = None, *, callbacks: Sequence[Any] = (), overwrite: bool = False,
                 eval_corpus: str | os.PathLike | None = None, **changes: Any) -> dict[str, Any]:
    """Train an MLM head on a frozen headless encoder; save a stock MLM checkpoint to ``out``.

    ``options`` (:class:`HeadRecoveryOptions`), or its fields as keywords (``max_steps=100``,
    ``batch_size=16``, ...). The first ``eval_lines`` lines are held out to report the MLM loss
    before/after the head phase (fixed masks). ``body_steps`` > 0 then continues with the whole model
    on ``corpus_files`` for that many steps (``langgraft pretrain``, same batch size, length and
    precision, ``body_learning_rate``); its held-out bits per character are measured on
    ``eval_corpus`` when given (the head phase's held-out lines are part of its training text).
    Returns (and saves as ``head_recovery.json``) that summary. Sealed Trainer checkpoints go to
    ``checkpoint_dir(out)`` every ``save_steps``; an interrupted run started again with the same
    arguments resumes from the last one, and the directory is removed once ``out`` is written.
    An existing ``out`` is refused before any work unless ``overwrite``.
    """
    # deferred: keeps torch, transformers and peft off `langgraft --help`
    from transformers import DataCollatorForLanguageModeling, set_seed

    from langgraft.adapt.pretrain.data import LineStream
    from langgraft.training import as_checkpoint, check_options, checkpoint_dtype, load_dtype, save_trained, train

    renamed = alias_names(HeadRecoveryOptions)
    options = dataclasses.replace(options or HeadRecoveryOptions(), **{renamed.get(k, k): v for k, v in changes.items()})
    check_options(options)
    files = [str(f) for f in corpus_files]
    inputs = [model, *files, eval_corpus]
    check_output(out, inputs=inputs, overwrite=overwrite)
    for path in files:
        if not Path(path).is_file():
            raise UserError(f"--corpus {path}: file not found; check the path")
    if eval_corpus is not None and not Path(eval_corpus).is_file():
        raise UserError(f"--eval-corpus {eval_corpus}: file not found; check the path")
    config = load_config(model)
    if getattr(config, "is_decoder", False) or head_kind(config) == "clm":
        raise UserError(f"--model {model}: head recover is for encoders (MLM); this model is a decoder")
    tokenizer = load_tokenizer(model)
    if tokenizer.mask_token is None:
        raise UserError(f"--model {model}: the tokenizer has no mask token, so it cannot train an MLM head")
    held_out = list(itertools.islice(iter_text(files, RESOURCE_DECODE_ERRORS, strip=True), options.eval_lines))
    if not held_out:
        raise UserError(f"--corpus {' '.join(files)}: no text lines found; give source-language text")
    has_training_text = next(itertools.islice(iter_text(files, RESOURCE_DECODE_ERRORS, strip=True), options.eval_lines, None),
                             None) is not None
    skip = options.eval_lines if has_training_text else 0

    set_seed(options.seed)
    dtype = checkpoint_dtype(config)
    mlm = masked_lm_from_body(str(model), dtype=load_dtype(options, config),
                              **({"attn_implementation": options.attn_implementation}
                                 if options.attn_implementation else {}))
    trainable = freeze_body(mlm)
    loss_before = masked_lm_loss(mlm, tokenizer, held_out, options.seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=options.seed)
    checkpoints = checkpoint_dir(out)
    with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        result = train(mlm, LineStream(files, tokenizer, options.max_seq_length, skip), collator, options, checkpoints,
                       callbacks=callbacks, resume=True)
        as_checkpoint(mlm, result, dtype)
        for parameter in mlm.parameters():
            parameter.requires_grad = True
        loss_after = masked_lm_loss(mlm, tokenizer, held_out, options.seed)
        body = None
        if options.body_steps:
            mlm, body = _train_body(mlm, tokenizer, files, checkpoints, options, eval_corpus)
        summary = {
            "model": str(model), "corpus": files, "max_steps": options.max_steps,
            "batch_size": options.per_device_train_batch_size, "learning_rate": options.learning_rate,
            "seed": options.seed, "trainable_parameters": trainable,
            "resumed_from": str(result.resumed_from) if result.resumed_from else None,
            "held_out_lines": len(held_out), "held_out_mlm_loss_before": round(loss_before, 4),
            "held_out_mlm_loss_after": round(loss_after, 4),
            "held_out_perplexity_after": round(math.exp(min(loss_after, 50.0)), 3),
            **({"body": body} if body else {}),
        }
        save_trained(mlm, None, tmp, dtype)
        tokenizer.save_pretrained(tmp)
        (tmp / HEAD_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(checkpoints, ignore_errors=True)
    return summary


def _train_body(mlm: Any, tokenizer: Any, files: list[str], checkpoints: Path, options: HeadRecoveryOptions,
                eval_corpus: str | os.PathLike | None) -> tuple[Any, dict[str, Any]]:
    """Whole-model MLM on the source text, resumable inside ``checkpoints``; returns the model and a summary."""
    # deferred: keeps torch, transformers and peft off `langgraft --help`
    from transformers import AutoModelForMaskedLM

    from langgraft.adapt.pretrain.callbacks import MetricsLog

    head_only, run = checkpoints / "head-only", checkpoints / "body"
    if not (head_only / "config.json").is_file():
        with atomic_dir(head_only) as tmp:
            mlm.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    length = min(options.max_seq_length, default_max_length(mlm.config, tokenizer, cap=1 << 20))
    # the batch, seed and precision/memory/parallelism options carry over; the schedule is the body's own
    carried = [f.name for f in dataclasses.fields(TrainingOptions) if f.metadata.get("group") == SCALE]
    carried += ["per_device_train_batch_size", "gradient_accumulation_steps", "seed", "save_steps"]
    result = pretrain(PretrainOptions(
        **{name: getattr(options, name) for name in carried}, max_steps=options.body_steps,
        learning_rate=options.body_learning_rate, warmup_steps=0.05, report_to=["none"], model=str(head_only),
        corpus=files, out=str(run), eval_corpus=str(eval_corpus) if eval_corpus else None, max_seq_length=length,
        eval_steps=options.save_steps, resume=True))
    first = next((r for r in MetricsLog(run, enabled=True).records() if "eval_bpc" in r), None)
    summary = {"steps": options.body_steps, "learning_rate": options.body_learning_rate,
               "eval_corpus": str(eval_corpus) if eval_corpus else None,
               **({"eval_bpc_before": round(first["eval_bpc"], 4)} if first else {}),
               **({"eval_bpc_after": round(result.eval["eval_bpc"], 4)} if result.eval else {})}
    return load_model(str(run), AutoModelForMaskedLM), summary


def checkpoint_dir(out: str | os.PathLike) -> Path:
    """Where head recovery keeps resumable Trainer checkpoints for ``out`` (a hidden sibling)."""
    out = Path(out)
    return out.with_name(f".{out.name}.head-checkpoints")
