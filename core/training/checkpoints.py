"""Sealed Trainer checkpoints: a resume never starts from a half-written folder.

Trainer writes ``checkpoint-N`` folders in place; a run killed (or out of disk) mid-save leaves
a folder with some files missing or truncated. After Trainer finishes a folder,
:class:`SealCheckpointCallback` fsyncs its files and writes ``langgraft_complete.json`` (names and
sizes) atomically; :func:`latest_checkpoint` resumes only from a folder whose seal matches its
files and removes the others.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers import TrainerCallback, TrainerState
from transformers.trainer_pt_utils import safe_globals

from langgraft.atomic import atomic_file, match_umask
from langgraft.errors import UserError
from langgraft.sidecars import read_sidecar

SEAL_FILE = "langgraft_complete.json"


class SealCheckpointCallback(TrainerCallback):
    """After Trainer finished writing ``checkpoint-N``, record its files and sizes in a seal file."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            seal_checkpoint(Path(args.output_dir) / f"checkpoint-{state.global_step}")


def seal_checkpoint(folder: Path) -> None:
    """fsync every file of ``folder``, then write the seal (file names and sizes) atomically."""
    match_umask(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != SEAL_FILE:
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            files[str(path.relative_to(folder))] = path.stat().st_size
    with atomic_file(folder / SEAL_FILE) as handle:
        json.dump({"files": files}, handle)


def is_sealed(folder: Path) -> bool:
    """True when ``folder`` has a seal and every sealed file is present with its recorded size."""
    try:
        files = json.loads((folder / SEAL_FILE).read_text(encoding="utf-8"))["files"]
        return all((folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable, or not the seal's shape
        return False


def checkpoint_step(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[1])


def valid_checkpoints(output_dir: Path) -> tuple[list[Path], list[Path]]:
    """``(sealed, broken)`` checkpoint folders in ``output_dir``, sealed ones sorted by step."""
    folders = [f for f in Path(output_dir).glob("checkpoint-*") if f.is_dir() and f.name.split("-")[-1].isdigit()]
    sealed = sorted((f for f in folders if is_sealed(f)), key=checkpoint_step)
    return sealed, [f for f in folders if f not in sealed]


def latest_checkpoint(output_dir: Path, remove_broken: bool) -> Path | None:
    """The sealed checkpoint with the highest step; ``remove_broken`` deletes unsealed folders (main process)."""
    sealed, broken = valid_checkpoints(output_dir)
    if remove_broken:
        for folder in broken:
            shutil.rmtree(folder, ignore_errors=True)
    if not sealed:
        return None
    check_resumable(sealed[-1])
    return sealed[-1]


# The pickles Trainer reads on resume (with ``weights_only=True``): RNG states, optimizer, scheduler, grad scaler.
RESUME_PICKLES = ("rng_state*.pth", "optimizer.pt", "scheduler.pt", "scaler.pt")
# The weights Trainer (or langgraft, for a finished run) loads from a checkpoint: one of them must be there.
CHECKPOINT_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
                      "pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin")
# Trainer computes with these fields of ``trainer_state.json`` when it resumes.
STATE_FIELDS = {"global_step": int, "max_steps": int, "train_batch_size": int, "log_history": list}


def check_resumable(checkpoint: Path) -> None:
    """Refuse, in one line, a sealed checkpoint Trainer would fail on mid-``train()`` with a traceback.

    The seal only says the files are the size they were written at: one replaced or edited since
    (a pickle holding more than tensors and plain values, which ``weights_only`` refuses; damaged
    weights; a ``trainer_state.json`` that is not Trainer's) is read here first, the way Trainer reads it."""
    fix = f"delete {checkpoint} to resume from the checkpoint before it, or start afresh without --resume"
    for pattern in RESUME_PICKLES:
        for path in sorted(checkpoint.glob(pattern)):
            try:
                with safe_globals():  # the numpy types Trainer allows in its RNG states
                    try:
                        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                    except (RuntimeError, OSError):  # a legacy (non-zip) or damaged file cannot be memory-mapped
                        torch.load(path, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError):
                raise UserError(f"{path} holds more than tensors and plain values (torch.load with weights_only "
                                f"refuses it) or is damaged; {fix}") from None
    weights = [checkpoint / name for name in CHECKPOINT_WEIGHTS if (checkpoint / name).is_file()]
    if not weights and not any(checkpoint.glob("pytorch_model_fsdp*")):  # FSDP keeps its shards in a folder
        raise UserError(f"{checkpoint} holds no model weights ({', '.join(CHECKPOINT_WEIGHTS[:3])}, ...); {fix}")
    for path in weights:
        if path.suffix == ".safetensors":
            try:
                with safe_open(str(path), framework="pt") as handle:
                    handle.keys()
            except (SafetensorError, OSError) as exc:
                raise UserError(f"{path}: damaged weights ({exc}); {fix}") from None
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        raise UserError(f"{checkpoint} has no trainer_state.json, which Trainer resumes from; {fix}")
    data = read_sidecar(state, "Trainer's state", fix, STATE_FIELDS)
    if not all(isinstance(record, dict) for record in data["log_history"]):
        raise UserError(f"{state}: Trainer's state: every 'log_history' entry must be an object; {fix}")
    try:
        TrainerState(**data)
    except TypeError as exc:
        raise UserError(f"{state}: Trainer's state does not fit this transformers version ({exc}); {fix}") from None


def logged_losses(checkpoint: Path) -> list[float]:
    """The training losses Trainer logged up to ``checkpoint`` (its ``trainer_state.json``)."""
    history = read_sidecar(checkpoint / "trainer_state.json", "Trainer's state", f"delete {checkpoint} to resume from "
                           "the checkpoint before it", {"log_history": list})["log_history"]
    return [record["loss"] for record in history if "loss" in record]
