"""Training budget of every module kind, and the task-module loop: HF ``Trainer`` with public arguments only.

Task modules train here on labelled examples (see :mod:`langgraft.adapters.tasks`);
checkpoints go to ``<work_dir>/checkpoint-*`` so an interrupted run resumes where it stopped.
Language modules train through the pretraining stage instead (:func:`langgraft.adapt.pretrain.pretrain`,
stage 2'), which streams, packs and masks their text; :class:`TrainOptions` maps onto its options.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


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
