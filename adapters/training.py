"""Training loop shared by all module kinds: HF ``Trainer`` with public arguments and callbacks only.

Language modules train by MLM or CLM on packed blocks of target text (streamed from disk into an
Arrow cache, never whole files in RAM); task modules train on labelled examples (see
:mod:`langgraft.adapters.tasks`). Checkpoints go to ``<work_dir>/checkpoint-*`` so an interrupted
run resumes where it stopped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from langgraft.errors import UserError


@dataclass
class TrainOptions:
    """Optimisation budget; the same for every kind so comparisons are fair."""

    max_steps: int = 200
    batch_size: int = 16
    learning_rate: float | None = None  # None: the kind's default
    max_length: int = 128
    seed: int = 0
    gradient_accumulation_steps: int = 1
    mlm_probability: float = 0.15
    save_steps: int = 100
    logging_steps: int = 50
    warmup_ratio: float = 0.0


def is_causal_lm(config: Any) -> bool:
    """CLM for decoder-only architectures, MLM otherwise."""
    architectures = " ".join(config.architectures or [])
    return bool(getattr(config, "is_decoder", False)) or "CausalLM" in architectures or "LMHead" in architectures


def load_lm(model_dir: str | Path) -> Any:
    """The base checkpoint with its trained language-modelling head (MLM or CLM, from the config).

    A headless encoder (e.g. a sentence-transformers body) would train modules against a random
    head, so it is refused with the command that recovers a head.
    """
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from langgraft.models import load_config, load_model

    config = load_config(model_dir)
    auto = AutoModelForCausalLM if is_causal_lm(config) else AutoModelForMaskedLM
    model, info = load_model(model_dir, auto_class=auto, output_loading_info=True)
    parameters = dict(model.named_parameters())
    fresh = [key for key in info["missing_keys"] if key in parameters]
    if fresh:
        raise UserError(f"{model_dir} has no trained language-modelling head ({fresh[0]} is missing); recover one "
                        f"first: langgraft head recover --model {model_dir} --corpus SOURCE.txt --out DIR")
    return model


def _packed_blocks(tokenizer: Any, files: Sequence[str], block: int, signature: str) -> Iterator[dict[str, list[int]]]:
    """Concatenate tokenized documents (with special tokens) and cut them into ``block``-long rows."""
    from langgraft.corpora.readers import read_documents

    buffer: list[int] = []
    for path in files:
        for document in read_documents(path):
            buffer.extend(tokenizer(document, add_special_tokens=True)["input_ids"])
            while len(buffer) >= block:
                yield {"input_ids": buffer[:block]}
                buffer = buffer[block:]
    if len(buffer) > 1:
        yield {"input_ids": buffer}


def language_dataset(tokenizer: Any, files: Sequence[str | Path], max_length: int) -> Any:
    """Packed LM blocks as a ``datasets.Dataset`` (Arrow, memory-mapped)."""
    import datasets

    missing = [str(f) for f in files if not Path(f).exists()]
    if missing:
        raise UserError(f"corpus file {missing[0]} not found; check --corpus")
    # The signature (sizes + mtimes) keys the Arrow cache, so an edited corpus is re-tokenized.
    signature = ";".join(f"{Path(f).resolve()}:{Path(f).stat().st_size}:{Path(f).stat().st_mtime_ns}" for f in files)
    rows = datasets.Dataset.from_generator(
        _packed_blocks, gen_kwargs={"tokenizer": tokenizer, "files": [str(f) for f in files], "block": max_length,
                                    "signature": signature})
    if len(rows) == 0:
        raise UserError(f"corpus {', '.join(map(str, files))} is empty; give text to train on")
    return rows


def language_collator(tokenizer: Any, causal: bool, options: TrainOptions) -> Any:
    from transformers import DataCollatorForLanguageModeling

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not causal and tokenizer.mask_token is None:
        raise UserError("MLM needs a tokenizer with a mask token; this tokenizer has none")
    return DataCollatorForLanguageModeling(tokenizer, mlm=not causal, mlm_probability=options.mlm_probability,
                                           seed=options.seed)


def fit(model: Any, dataset: Any, collator: Any, options: TrainOptions, work_dir: str | Path,
        learning_rate: float, callbacks: Sequence[Any] = (), weight_decay: float = 0.0) -> dict[str, float]:
    """Train ``model``'s trainable parameters with ``Trainer``; resume from ``work_dir`` checkpoints.

    Returns ``{"train_seconds": ..., "train_loss": ...}``.
    """
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    args = TrainingArguments(
        output_dir=str(work_dir), max_steps=options.max_steps, per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps, learning_rate=learning_rate,
        weight_decay=weight_decay, warmup_steps=int(options.warmup_ratio * options.max_steps), seed=options.seed,
        data_seed=options.seed, save_strategy="steps", save_steps=options.save_steps, save_total_limit=1,
        logging_steps=options.logging_steps, report_to=[], use_cpu=not _has_accelerator(),
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      callbacks=list(callbacks))
    last = get_last_checkpoint(str(work_dir)) if any(work_dir.glob("checkpoint-*")) else None
    result = trainer.train(resume_from_checkpoint=last)
    return {"train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
            "train_loss": round(result.metrics.get("train_loss", float("nan")), 4)}


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def count_trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze(model: Any) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
