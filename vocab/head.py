"""Recover an MLM head for a headless encoder (e.g. a sentence-transformers body such as MiniLM).

Without an MLM head, masked-LM measurement (bits per character) and MLM training start from a
random projection and say nothing about the body. Here the body is loaded into the matching
``AutoModelForMaskedLM`` (the decoder tied to the input embeddings as the config says), frozen,
and only the head (transform + bias, + the decoder when untied) is trained on source-language text
with the HF Trainer. The result is a stock MLM checkpoint.

A frozen sentence-embedding body is a poor masked LM even with a trained head: MiniLM's, after
100 head steps, predicts masked English words worse than a context-free unigram model (2.72 vs
2.55 bits per character), so there is little for vocabulary transfer to carry over. ``body_steps``
then trains the whole model on the same source text (``langgraft pretrain``: packed, MLM on the
masked rows only) — 400 steps took it to 1.68 and made the best init reach random-init's bpc
10x sooner (docs/benchmarks.md, "Convergence").
"""
from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from langgraft.atomic import atomic_dir
from langgraft.errors import UserError
from langgraft.models import head_kind, load_config, load_model, load_tokenizer

SUMMARY_FILE = "head_recovery.json"


def iter_text_lines(files: Sequence[str | os.PathLike]) -> Iterator[str]:
    """Non-empty stripped lines of ``files``, streamed."""
    from langgraft.vocab.resources.text import iter_lines

    return (line.strip() for line in iter_lines([str(f) for f in files]) if line.strip())


class LineStream(torch.utils.data.IterableDataset):
    """Tokenized lines of the corpus, cycled forever (the Trainer stops at ``max_steps``)."""

    def __init__(self, files: Sequence[str], tokenizer: Any, max_length: int, skip: int):
        self.files, self.tokenizer, self.max_length, self.skip = files, tokenizer, max_length, skip

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        while True:
            for line in itertools.islice(iter_text_lines(self.files), self.skip, None):
                yield self.tokenizer(line, truncation=True, max_length=self.max_length,
                                     return_special_tokens_mask=True)


@torch.no_grad()
def masked_lm_loss(model: Any, tokenizer: Any, lines: list[str], seed: int = 0, max_length: int = 128) -> float:
    """Mean MLM loss on ``lines`` with masks fixed by ``seed`` (comparable before/after training)."""
    from transformers import DataCollatorForLanguageModeling

    torch.manual_seed(seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    features = [tokenizer(line, truncation=True, max_length=max_length, return_special_tokens_mask=True)
                for line in lines]
    batch = collator(features)
    was_training = model.training
    model.eval()
    loss = model(**batch).loss.item()
    model.train(was_training)
    return loss


def masked_lm_from_body(model_dir: str) -> Any:
    """``AutoModelForMaskedLM`` with the body's weights; an untied decoder starts from the input embeddings."""
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is missing on purpose
    try:
        model = load_model(model_dir, AutoModelForMaskedLM)
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


def recover_head(model: str | os.PathLike, corpus_files: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 max_steps: int = 300, batch_size: int = 32, learning_rate: float = 1e-3, max_length: int = 128,
                 eval_lines: int = 64, seed: int = 0, save_steps: int = 100, callbacks: Sequence[Any] = (),
                 overwrite: bool = True, body_steps: int = 0, body_learning_rate: float = 3e-4,
                 eval_corpus: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train an MLM head on a frozen headless encoder; save a stock MLM checkpoint to ``out``.

    The first ``eval_lines`` lines are held out to report the MLM loss before/after the head stage
    (fixed masks). ``body_steps`` > 0 then continues with the whole model on ``corpus_files`` for
    that many steps (``langgraft pretrain``, same batch size and length, ``body_learning_rate``);
    its held-out bits per character are measured on ``eval_corpus`` when given (the head stage's
    held-out lines are part of its training text).
    Returns (and saves as ``head_recovery.json``) that summary. Trainer checkpoints go to
    ``checkpoint_dir(out)`` every ``save_steps``; an interrupted run started again with the same
    arguments resumes from the last one, and the directory is removed once ``out`` is written.
    """
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    files = [str(f) for f in corpus_files]
    for path in files:
        if not Path(path).is_file():
            raise UserError(f"--corpus {path}: file not found; check the path")
    if body_steps < 0:
        raise UserError(f"--body-steps must be 0 (head only) or positive, got {body_steps}")
    if eval_corpus is not None and not Path(eval_corpus).is_file():
        raise UserError(f"--eval-corpus {eval_corpus}: file not found; check the path")
    config = load_config(model)
    if getattr(config, "is_decoder", False) or head_kind(config) == "clm":
        raise UserError(f"--model {model}: head recover is for encoders (MLM); this model is a decoder")
    tokenizer = load_tokenizer(model)
    if tokenizer.mask_token is None:
        raise UserError(f"--model {model}: the tokenizer has no mask token, so it cannot train an MLM head")
    held_out = list(itertools.islice(iter_text_lines(files), eval_lines))
    if not held_out:
        raise UserError(f"--corpus {' '.join(files)}: no text lines found; give source-language text")
    has_training_text = next(itertools.islice(iter_text_lines(files), eval_lines, None), None) is not None
    skip = eval_lines if has_training_text else 0

    set_seed(seed)
    mlm = masked_lm_from_body(str(model))
    trainable = freeze_body(mlm)
    loss_before = masked_lm_loss(mlm, tokenizer, held_out, seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    checkpoints = checkpoint_dir(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        args = TrainingArguments(
            output_dir=str(checkpoints), max_steps=max_steps, per_device_train_batch_size=batch_size,
            learning_rate=learning_rate, warmup_steps=max(1, max_steps // 10), weight_decay=0.0,
            logging_steps=max(1, max_steps // 10), save_strategy="steps", save_steps=save_steps,
            save_total_limit=1, report_to=[], seed=seed, data_seed=seed, disable_tqdm=True,
            dataloader_num_workers=0, dataloader_pin_memory=False,
        )
        trainer = Trainer(model=mlm, args=args, train_dataset=LineStream(files, tokenizer, max_length, skip),
                          data_collator=collator, callbacks=list(callbacks))
        resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        trainer.train(resume_from_checkpoint=resume)
        for parameter in mlm.parameters():
            parameter.requires_grad = True
        loss_after = masked_lm_loss(mlm, tokenizer, held_out, seed)
        body = None
        if body_steps:
            mlm, body = _train_body(mlm, tokenizer, files, checkpoints, steps=body_steps,
                                    learning_rate=body_learning_rate, batch_size=batch_size, max_length=max_length,
                                    seed=seed, save_steps=save_steps, eval_corpus=eval_corpus)
        summary = {
            "model": str(model), "corpus": files, "max_steps": max_steps, "batch_size": batch_size,
            "learning_rate": learning_rate, "seed": seed, "trainable_parameters": trainable, "resumed_from": resume,
            "held_out_lines": len(held_out), "held_out_mlm_loss_before": round(loss_before, 4),
            "held_out_mlm_loss_after": round(loss_after, 4),
            "held_out_perplexity_after": round(math.exp(min(loss_after, 50.0)), 3),
            **({"body": body} if body else {}),
        }
        mlm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(checkpoints, ignore_errors=True)
    return summary


def _train_body(mlm: Any, tokenizer: Any, files: list[str], checkpoints: Path, *, steps: int, learning_rate: float,
                batch_size: int, max_length: int, seed: int, save_steps: int,
                eval_corpus: str | os.PathLike | None) -> tuple[Any, dict[str, Any]]:
    """Whole-model MLM on the source text, resumable inside ``checkpoints``; returns the model and a summary."""
    from transformers import AutoModelForMaskedLM

    from langgraft.adapt.callbacks import MetricsLog
    from langgraft.adapt.pretrain import PretrainConfig, pretrain
    from langgraft.eval.bpc import default_max_length

    head_only, run = checkpoints / "head-only", checkpoints / "body"
    if not (head_only / "config.json").is_file():
        with atomic_dir(head_only) as tmp:
            mlm.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    length = min(max_length, default_max_length(mlm.config, tokenizer, cap=1 << 20))
    result = pretrain(PretrainConfig(
        model=str(head_only), corpus=files, out=str(run), eval_corpus=str(eval_corpus) if eval_corpus else None,
        max_steps=steps, learning_rate=learning_rate, per_device_train_batch_size=batch_size,
        max_seq_length=length, warmup_steps=0.05, seed=seed, save_steps=save_steps,
        eval_steps=save_steps, resume=True, report_to=["none"]))
    first = next((r for r in MetricsLog(run, enabled=True).records() if "eval_bpc" in r), None)
    summary = {"steps": steps, "learning_rate": learning_rate, "eval_corpus": str(eval_corpus) if eval_corpus else None,
               **({"eval_bpc_before": round(first["eval_bpc"], 4)} if first else {}),
               **({"eval_bpc_after": round(result.eval["eval_bpc"], 4)} if result.eval else {})}
    return load_model(str(run), AutoModelForMaskedLM), summary


def checkpoint_dir(out: str | os.PathLike) -> Path:
    """Where head recovery keeps resumable Trainer checkpoints for ``out`` (a hidden sibling)."""
    out = Path(out)
    return out.with_name(f".{out.name}.head-checkpoints")
