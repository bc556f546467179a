"""The training log every langgraft run writes: ``metrics.jsonl`` (and TensorBoard), from Trainer's logs.

Shared by every run that trains (pretraining, head recovery, embedding distillation), so it lives
on the one training path; :mod:`langgraft.adapt.pretrain.callbacks` re-exports it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from langgraft.atomic import atomic_file

from . import METRICS_FILE

TENSORBOARD_DIR = "runs"


class MetricsLog:
    """Append-only ``metrics.jsonl`` (one object per record, with ``step`` and ``phase``), optionally in TensorBoard.

    With ``tensorboard`` the same records go to ``<out>/runs`` at run-level steps (one log for all
    phases, held-out bpc included). The event file is opened at the first record, so a run that
    fails its input checks leaves ``out`` untouched.
    """

    def __init__(self, out: Path, enabled: bool, tensorboard: bool = False):
        self.path = out / METRICS_FILE
        self.enabled = enabled
        self.tensorboard_dir = out / TENSORBOARD_DIR if enabled and tensorboard else None
        self.writer: Any = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard_dir is not None:
            # deferred: keeps tensorboard off `import langgraft.training.metrics`
            from torch.utils.tensorboard import SummaryWriter

            self.writer = self.writer or SummaryWriter(log_dir=str(self.tensorboard_dir))
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(f"{record.get('phase', 'run')}/{key}", value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step``: a resumed run recomputes them (no duplicated steps)."""
        if not self.enabled or not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            kept = [line for line in handle if line.strip() and json.loads(line)["step"] <= step]
        with atomic_file(self.path) as handle:
            handle.writelines(kept)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]



class MetricsCallback(TrainerCallback):
    """Write Trainer's training logs (loss, learning rate, grad norm) to the metrics log."""

    def __init__(self, log: MetricsLog, phase: str, step_offset: int):
        self.log, self.phase, self.step_offset = log, phase, step_offset

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.log.write({"step": self.step_offset + state.global_step, "phase": self.phase,
                            **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})
