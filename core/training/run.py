"""``train()``: the one place a ``transformers.Trainer`` is built.

Its inputs are what differs between langgraft's training runs (pretraining stages, language and
task modules, head recovery): the model, a dataset and collator, a loss, which parameters train,
:class:`~langgraft.training.options.TrainingOptions`, an output directory for checkpoints, callbacks
and whether to resume. What is the same for all of them lives here, once: device detection,
precision (fp32 master weights), new-rows-only training, the chunked LM loss hooks, sealed
checkpoints and resume, and a full disk as one error line.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import TrainingArguments
from transformers.training_args import OptimizerNames

from langgraft.errors import UserError
from langgraft.outputs import disk_full
from langgraft.models import unwrap
from langgraft.sidecars import read_sidecar

from .checkpoints import SealCheckpointCallback, checkpoint_step, latest_checkpoint, logged_losses
from .options import OWN_REPORTERS, TrainingOptions
from .precision import cast_state_dict, cast_to, check_precision, has_accelerator, on_gpu, upcast_trainable
from .rows import NewRows


@dataclass
class TrainResult:
    """What one :func:`train` call did; :meth:`save` writes the trained model."""

    train_seconds: float
    train_loss: float
    resumed_from: Path | None
    steps: int
    new_rows: NewRows | None = None
    full_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # gathered when sharded

    @property
    def stats(self) -> dict[str, float]:
        return {"train_seconds": round(self.train_seconds, 2), "train_loss": round(self.train_loss, 4)}


def world_size() -> int:
    """Processes of this launch (``torchrun``/``accelerate launch`` set ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_options(options: TrainingOptions) -> None:
    """Refuse what this machine or launch cannot run, before anything is loaded or written (one line each)."""
    check_precision(options)
    if options.fsdp and world_size() < 2:
        raise UserError("--fsdp shards the model over several processes, but this is one process; launch with "
                        "`torchrun --nproc_per_node N -m langgraft ...` or `accelerate launch -m langgraft ...`")
    if options.deepspeed:
        if importlib.util.find_spec("deepspeed") is None:
            raise UserError("--deepspeed needs the deepspeed package: pip install deepspeed (on a machine with a GPU "
                            "and CUDA toolkit)")
        if not Path(options.deepspeed).is_file():
            raise UserError(f"--deepspeed {options.deepspeed}: config file not found; check the path")
    if options.fsdp_config:
        _read_json(options.fsdp_config, "--fsdp-config")
    if options.attn_implementation == "flash_attention_2" and (
            importlib.util.find_spec("flash_attn") is None or not on_gpu()):
        raise UserError("--attn-implementation flash_attention_2 needs a CUDA GPU and the flash-attn package; "
                        "use sdpa (the default) otherwise")
    _check_trainer_names(options)


def _read_json(path: str, flag: str) -> dict[str, Any]:
    return read_sidecar(path, f"the {flag} file", f"give {flag} a JSON object of options")


def _check_trainer_names(options: TrainingOptions) -> None:
    """``optim`` and ``lr_scheduler_type`` are names Trainer knows, with their packages installed."""
    # deferred: keeps datasets, pandas and pyarrow off `import langgraft.training.run`
    from transformers import SchedulerType, Trainer, TrainingArguments

    schedulers = [s.value for s in SchedulerType]
    if options.lr_scheduler_type not in schedulers:
        raise UserError(f"--lr-scheduler-type {options.lr_scheduler_type!r} is not a Trainer schedule; "
                        f"choose one of: {', '.join(schedulers)}")
    optimizers = [o.value for o in OptimizerNames]
    if options.optim not in optimizers:
        raise UserError(f"--optim {options.optim!r} is not a Trainer optimizer; choose one of: {', '.join(optimizers)}")
    probe = TrainingArguments(output_dir=os.devnull, optim=options.optim, use_cpu=True, report_to=[])
    try:
        Trainer.get_optimizer_cls_and_kwargs(probe)
    except (ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--optim {options.optim}: {first}") from None


def training_arguments(options: TrainingOptions, output_dir: Path, progress_bar: bool = False) -> Any:
    """``TrainingArguments`` from ``options`` (the names are the same) plus langgraft's fixed settings."""

    if options.learning_rate is None:
        raise UserError("learning_rate is not set; the calling stage must give its default")
    use_cpu = options.use_cpu or not has_accelerator()
    scale: dict[str, Any] = {}
    if options.fsdp:
        scale.update(fsdp=True, fsdp_config=_read_json(options.fsdp_config, "--fsdp-config") if options.fsdp_config
                     else None)
    if options.deepspeed:
        scale["deepspeed"] = options.deepspeed
    if options.gradient_checkpointing:  # non-reentrant: also right when the inputs of a block do not require grad
        scale.update(activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False})
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=options.max_steps, learning_rate=options.learning_rate,
        per_device_train_batch_size=options.per_device_train_batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps, warmup_steps=options.warmup_steps,
        weight_decay=options.weight_decay, lr_scheduler_type=options.lr_scheduler_type,
        max_grad_norm=options.max_grad_norm, seed=options.seed, data_seed=options.seed,
        save_strategy="steps", save_steps=options.save_steps, save_total_limit=options.save_total_limit,
        logging_steps=options.logging_steps, report_to=[r for r in options.report_to if r not in OWN_REPORTERS],
        bf16=options.bf16, fp16=options.fp16, tf32=options.tf32, optim=options.optim,
        torch_compile=options.torch_compile, use_cpu=use_cpu, dataloader_pin_memory=not use_cpu,
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=not progress_bar,
        ddp_find_unused_parameters=False, **scale,
    )


def _restore_finished(model: Any, checkpoint: Path, steps: int) -> TrainResult:
    """A run whose last checkpoint is at ``max_steps`` is not handed to Trainer again (on a stream without
    length Trainer would train one step more): its weights are read back, its stats from the log."""

    adapter = checkpoint / "adapter_model.safetensors"
    if adapter.is_file():
        set_peft_model_state_dict(model, load_file(str(adapter)), adapter_name=model.active_adapter)
    else:
        for shard in sorted(checkpoint.glob("model*.safetensors")):
            unexpected = model.load_state_dict(load_file(str(shard)), strict=False).unexpected_keys
            if unexpected:
                raise UserError(f"checkpoint {checkpoint} does not fit this model ({unexpected[0]}); resume with the "
                                "model and options that started the run, or start in a new output directory")
    losses = logged_losses(checkpoint)
    return TrainResult(0.0, sum(losses) / len(losses) if losses else float("nan"), checkpoint, steps)


def train(model: Any, dataset: Any, collator: Any, options: TrainingOptions, output_dir: str | os.PathLike, *,
          loss: Any = None, trainable: Callable[[Any], None] | None = None, new_rows_from: int | None = None,
          callbacks: Sequence[Any] = (), resume: bool = False, check_checkpoint: Callable[[Path], None] | None = None,
          disk_full_hint: str = "free space and run the same command again to resume", processing_class: Any = None,
          progress_bar: bool = False) -> TrainResult:
    """Train ``model`` with ``Trainer`` on ``dataset``; checkpoints (sealed) go to ``output_dir``.

    - ``trainable(model)`` sets ``requires_grad`` (default: as the model is);
    - ``new_rows_from``: train only rows ``new_rows_from:`` of the embeddings and head (:mod:`.rows`);
    - ``loss``: ``None`` for the model's own loss, or an object with ``attached(model)`` (a context
      manager installing its hooks) that is Trainer's ``compute_loss_func`` (:class:`.loss.LMLoss`);
    - ``resume``: continue from the latest sealed checkpoint in ``output_dir`` (half-written ones are
      removed); ``check_checkpoint(path)`` may refuse it with a :class:`UserError`.

    Trainable low-precision parameters become fp32 master weights; the model stays in that state
    (new rows still separate) until :func:`save_trained` writes it. Returns a :class:`TrainResult`.
    """
    # deferred: keeps datasets, pandas and pyarrow off `import langgraft.training.run`
    from transformers import Trainer

    check_options(options)
    output_dir = Path(output_dir)
    if trainable is not None:
        trainable(model)
    rows = NewRows(model, new_rows_from) if new_rows_from is not None else None
    upcast_trainable(model)
    args = training_arguments(options, output_dir, progress_bar)
    checkpoint = None
    if resume:
        with args.main_process_first(desc="checking checkpoints"):
            checkpoint = latest_checkpoint(output_dir, remove_broken=args.process_index == 0)
            if checkpoint is not None and check_checkpoint is not None:
                check_checkpoint(checkpoint)
    if checkpoint is not None and checkpoint_step(checkpoint) >= options.max_steps:
        result = _restore_finished(model, checkpoint, options.max_steps)
        result.new_rows = rows
        return result
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      compute_loss_func=loss, callbacks=[SealCheckpointCallback(), *callbacks],
                      processing_class=processing_class)
    hooks = loss.attached(model) if loss is not None else contextlib.nullcontext()
    with hooks:
        try:
            output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except Exception as exc:  # safetensors' own error for a full disk is no OSError
            if not disk_full(exc, output_dir):
                raise
            latest_checkpoint(output_dir, remove_broken=args.process_index == 0)  # drops the half-written one
            raise UserError(f"disk full while writing to {output_dir}: {disk_full_hint} "
                            "from the last complete checkpoint") from exc
    full_state = None
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:  # every process takes part in the gather
        full_state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    return TrainResult(output.metrics.get("train_runtime", 0.0), output.metrics.get("train_loss", float("nan")),
                       checkpoint, options.max_steps, rows, full_state)


def as_checkpoint(model: Any, result: TrainResult | None, dtype: torch.dtype) -> None:
    """Turn the trained model back into a stock model of the checkpoint's ``dtype`` (in place).

    New rows are folded into the embedding tensors and fp32 master weights are cast to ``dtype``;
    afterwards the model runs without autocast (evaluation) and saves as an ordinary checkpoint.
    """
    rows = result.new_rows if result is not None else None
    if rows is not None and rows.attached:
        rows.fold()
    cast_to(unwrap(model), dtype)


def save_trained(model: Any, result: TrainResult | None, directory: str | os.PathLike, dtype: torch.dtype) -> None:
    """``save_pretrained`` the trained model into ``directory``: a stock checkpoint in the checkpoint's ``dtype``.

    A sharded run (FSDP, DeepSpeed) saves the full state dict its processes gathered; otherwise the
    model is first turned into a stock model (:func:`as_checkpoint`). Call on the main process.
    """
    inner = unwrap(model)
    if result is not None and result.full_state is not None:
        rows = result.new_rows
        state = result.full_state if rows is None else rows.fold_state_dict(result.full_state)
        inner.save_pretrained(directory, state_dict=cast_state_dict(inner, state, dtype))
        return
    as_checkpoint(model, result, dtype)
    inner.save_pretrained(directory)
