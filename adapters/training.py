"""Training options of every module kind, and the task-module ``fit`` through :func:`langgraft.training.train`.

Task modules train here on labelled examples (see :mod:`langgraft.adapters.tasks`), with sealed
checkpoints in ``<work_dir>/<phase>/checkpoint-*`` so an interrupted run resumes where it stopped.
Language modules train through continued pretraining instead
(:func:`langgraft.adapt.pretrain.language_modules.train_language_module`), which streams, packs and masks
their text; :class:`TrainOptions` maps onto its options.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from langgraft.options import option
from langgraft.training.options import LOGGING, SCHEDULE, TrainingOptions


@dataclass(kw_only=True)
class TrainOptions(TrainingOptions):
    """Optimisation budget of a module; the same for every kind so comparisons are fair.

    ``learning_rate`` None: the kind's default. Modules train without weight decay by default (their
    method pulls them toward the base: SFT's L1 toward θ0; LoRA and MAD-X start at the identity).
    """

    max_steps: int = option(200, help="optimizer steps (per phase for sft)", gt=0, aliases=("--steps",),
                            group=SCHEDULE)
    learning_rate: float | None = option(None, help="learning rate (default: the kind's)", gt=0, aliases=("--lr",),
                                         group=SCHEDULE)
    per_device_train_batch_size: int = option(16, help="examples per device per optimizer step", ge=1,
                                              aliases=("--batch-size",), keys=("batch_size",), group=SCHEDULE)
    max_seq_length: int = option(128, help="tokens per example/block", gt=0, aliases=("--max-length",),
                                keys=("max_length",), group=SCHEDULE)
    mlm_probability: float = option(0.15, help="share of tokens masked (MLM language modules)", gt=0, lt=1,
                                    group=SCHEDULE)
    weight_decay: float = option(0.0, help="AdamW weight decay", ge=0, group=SCHEDULE)
    seed: int = option(0, help="seed of every random draw (module and head initialisation, data order)",
                       group=SCHEDULE)
    save_steps: int = option(100, help="checkpoint interval (resume point)", gt=0, group=LOGGING, result=False)
    save_total_limit: int | None = option(1, help="checkpoints kept (null/None: all)", ge=1, group=LOGGING,
                                          result=False)
    logging_steps: int = option(50, help="log the training loss every N steps", gt=0, group=LOGGING, result=False)


def fit(model: Any, dataset: Any, collator: Any, options: TrainOptions, work_dir: str | Path,
        learning_rate: float, callbacks: Sequence[Any] = ()) -> dict[str, float]:
    """Train ``model``'s trainable parameters on ``dataset``; resume from ``work_dir``'s sealed checkpoints.

    Returns ``{"train_seconds": ..., "train_loss": ...}``.
    """
    # deferred: keeps torch, transformers and peft off `langgraft --help`
    from langgraft.training import train

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    result = train(model, dataset, collator, dataclasses.replace(options, learning_rate=learning_rate), work_dir,
                   callbacks=callbacks, resume=True)
    return result.stats


def count_trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze(model: Any) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
