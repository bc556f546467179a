"""The options every langgraft training run shares, declared once with ``TrainingArguments``' names.

Pretraining (:class:`langgraft.adapt.pretrain.run.PretrainOptions`), module training
(:class:`langgraft.adapters.training.TrainOptions`) and head recovery
(:class:`langgraft.adapt.pretrain.head.HeadRecoveryOptions`) extend :class:`TrainingOptions` with their own
fields and defaults; their CLI arguments and YAML sections are generated from these declarations
(:mod:`langgraft.options`). Importing this module does not import torch or transformers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from langgraft.errors import UserError
from langgraft.options import Validated, option

# report_to values langgraft handles itself; the others are Trainer integrations (wandb, mlflow, ...)
OWN_REPORTERS = ("auto", "tensorboard", "none")
SCHEDULE, SCALE = "schedule (TrainingArguments names)", "precision, memory and parallelism (TrainingArguments names)"
LOGGING = "checkpoints and logging"
Attention = Literal["sdpa", "flash_attention_2", "eager"]


@dataclass(kw_only=True)
class TrainingOptions(Validated):
    """Optimisation, precision and parallelism of one training run (the fields of ``TrainingArguments`` it sets).

    ``learning_rate`` None means the command's own default (each command documents it).
    """

    max_steps: int = option(1000, help="optimizer steps", gt=0, group=SCHEDULE)
    learning_rate: float | None = option(None, help="peak learning rate", gt=0, group=SCHEDULE)
    per_device_train_batch_size: int = option(8, help="examples per device per forward pass", ge=1, group=SCHEDULE)
    gradient_accumulation_steps: int = option(1, help="forward passes per optimizer step", ge=1, group=SCHEDULE)
    warmup_steps: float = option(0.0, help="linear warmup: steps, or a ratio of the steps when below 1", ge=0,
                                 group=SCHEDULE)
    weight_decay: float = option(0.01, help="AdamW weight decay", ge=0, group=SCHEDULE)
    lr_scheduler_type: str = option("linear", help="learning-rate schedule: linear, cosine, constant, ... "
                                    "(TrainingArguments' lr_scheduler_type)", group=SCHEDULE)
    max_grad_norm: float = option(1.0, help="gradient clipping (0: off)", ge=0, group=SCHEDULE)
    seed: int = option(42, help="seed of every random draw (data order, masks, dropout, new weights)", group=SCHEDULE)
    # precision, memory, parallelism
    bf16: bool = option(False, help="bf16 mixed precision: bf16 compute, fp32 master weights for what trains; a "
                        "bf16 checkpoint keeps its frozen weights in bf16 and is saved back in bf16", group=SCALE)
    fp16: bool = option(False, help="fp16 mixed precision (GPUs only; loss scaling as in Trainer)", group=SCALE)
    tf32: bool | None = option(None, help="TF32 matmuls on Ampere+ GPUs (default: PyTorch's setting)", group=SCALE)
    gradient_checkpointing: bool = option(False, help="recompute activations in the backward pass (less memory, "
                                          "about a third more compute)", aliases=("--activation-checkpointing",),
                                          group=SCALE, result=False)
    optim: str = option("adamw_torch_fused", help="optimizer, TrainingArguments' names: adamw_torch_fused, "
                        "adamw_torch, adafactor, adamw_bnb_8bit (needs bitsandbytes), ...", group=SCALE)
    torch_compile: bool = option(False, help="torch.compile the model (needs a C++ compiler on CPU)", group=SCALE)
    attn_implementation: Attention | None = option(None, help="attention kernel the model is loaded with "
                                                   "(default: transformers' choice, sdpa where supported)",
                                                   group=SCALE)
    fsdp: bool = option(False, help="shard parameters, gradients and optimizer state over the processes of a "
                        "torchrun/accelerate launch (FSDP2 through Accelerate)", group=SCALE)
    fsdp_config: str | None = option(None, help="FSDP options as a JSON file (TrainingArguments' fsdp_config: "
                                     "version, reshard_after_forward, cpu_offload, ...)", metavar="JSON",
                                     group=SCALE)
    deepspeed: str | None = option(None, help="DeepSpeed config JSON (e.g. ZeRO-3; needs the deepspeed package)",
                                   metavar="JSON", group=SCALE)
    use_cpu: bool = option(False, help="train on the CPU even when a GPU is available", group=SCALE)
    # checkpoints and logging
    save_steps: int = option(500, help="checkpoint every N steps (the resume points)", gt=0, group=LOGGING,
                             result=False)
    save_total_limit: int | None = option(2, help="checkpoints kept (null/None: all)", ge=1, group=LOGGING,
                                          result=False)
    logging_steps: int = option(10, help="log the training loss every N steps", gt=0, group=LOGGING, result=False)
    report_to: list[str] = option(default_factory=lambda: ["none"], help="none, or Trainer integrations "
                                  "(wandb, mlflow, ...)", group=LOGGING, result=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bf16 and self.fp16:
            raise UserError("--bf16 and --fp16 exclude each other; choose one")
        if self.fsdp_config and not self.fsdp:
            raise UserError("--fsdp-config needs --fsdp")
        if self.fsdp and self.deepspeed:
            raise UserError("--fsdp and --deepspeed exclude each other; choose one")
