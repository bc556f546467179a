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
from transformers import TrainerCallback
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
    except (OSError, ValueError, KeyError):
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items())


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
    check_pickles(sealed[-1])
    return sealed[-1]


# The pickles Trainer reads on resume (with ``weights_only=True``): RNG states and the optimizer's state.
RESUME_PICKLES = ("rng_state*.pth", "optimizer.pt")


def check_pickles(checkpoint: Path) -> None:
    """Refuse, in one line, a checkpoint whose RNG or optimizer pickle holds more than tensors and plain values.

    Trainer loads them with ``weights_only=True`` too, but its refusal is a traceback in the middle of
    ``train()``; this reads them the same way first (memory-mapped where the file allows)."""
    for pattern in RESUME_PICKLES:
        for path in sorted(checkpoint.glob(pattern)):
            try:
                with safe_globals():  # the numpy types Trainer allows in its RNG states
                    try:
                        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                    except RuntimeError:  # a legacy (non-zip) file cannot be memory-mapped
                        torch.load(path, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError):
                raise UserError(f"{path} holds more than tensors and plain values (torch.load with weights_only "
                                f"refuses it) or is damaged; "
                                f"delete {checkpoint} to resume from the checkpoint before it, or start afresh "
                                "without --resume") from None


def logged_losses(checkpoint: Path) -> list[float]:
    """The training losses Trainer logged up to ``checkpoint`` (its ``trainer_state.json``)."""
    history = read_sidecar(checkpoint / "trainer_state.json", "Trainer's state", f"delete {checkpoint} to resume from "
                           "the checkpoint before it", {"log_history": list})["log_history"]
    return [record["loss"] for record in history if "loss" in record]
