"""Trainer callbacks of continued pretraining: metrics, held-out bpc, loss curve.

(Sealed checkpoints belong to every training run: :mod:`langgraft.training.checkpoints`.)

Each run phase (embeddings, full/module) is its own ``Trainer`` whose ``global_step`` starts at
0, so every callback takes ``step_offset`` and reports run-level steps.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from langgraft.atomic import atomic_file
from langgraft.eval.bpc import compute_bpc
from langgraft.training import METRICS_FILE, autocast
from langgraft.training.metrics import TENSORBOARD_DIR, MetricsCallback, MetricsLog  # noqa: F401 (their home is the training path)

CURVE_FILE = "loss_curve.png"


def tensorboard_installed() -> bool:
    """TensorBoard logging is optional: it needs the ``tensorboard`` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


class HeldOutEvalCallback(TrainerCallback):
    """Every ``eval_steps`` run steps (and at the end of the phase): loss and bpc on held-out text.

    Uses :func:`langgraft.eval.bpc.compute_bpc`, so MLM masks are the fixed word masks and the
    numbers are comparable with ``langgraft eval bpc``. Computed by the main process only; a
    sharded model (FSDP, DeepSpeed ZeRO-3) needs every process in its forward pass, so there all
    processes compute it and the main one writes it.
    """

    def __init__(self, log: MetricsLog, phase: str, step_offset: int, tokenizer: Any, corpus: Path,
                 eval_steps: int, objective: str, max_length: int, batch_size: int):
        self.log, self.phase, self.step_offset = log, phase, step_offset
        self.tokenizer, self.corpus, self.eval_steps = tokenizer, corpus, eval_steps
        self.objective, self.max_length, self.batch_size = objective, max_length, batch_size

    def evaluate(self, model: Any, step: int) -> None:
        result = compute_bpc(model, self.tokenizer, self.corpus, objective=self.objective,
                             max_length=self.max_length, batch_size=self.batch_size)
        self.log.write({"step": step, "phase": self.phase, "eval_loss": result.loss, "eval_bpc": result.bpc})

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        step = self.step_offset + state.global_step
        sharded = bool(args.fsdp) or args.deepspeed is not None
        if (state.is_world_process_zero or sharded) and (step % self.eval_steps == 0
                                                         or state.global_step == state.max_steps):
            with autocast(args):  # fp32 master weights next to frozen bf16 ones
                self.evaluate(model, step)


class LossCurveCallback(TrainerCallback):
    """Redraw ``loss_curve.png`` (train loss, held-out bpc) at every save and at the end."""

    def __init__(self, log: MetricsLog):
        self.log = log

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            plot_loss_curve(self.log)

    on_train_end = on_save


def plot_loss_curve(log: MetricsLog) -> None:
    # deferred: keeps matplotlib off `import langgraft.adapt.pretrain.callbacks`
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = log.records()
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    held_out = [(r["step"], r["eval_bpc"]) for r in records if "eval_bpc" in r]
    if not train and not held_out:
        return
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    if train:
        loss_axis.plot(*zip(*train), color="tab:blue", label="train loss (nats/token)")
    phase_ends = [a["step"] for a, b in zip(records, records[1:]) if a["phase"] != b["phase"]]
    for step in phase_ends:  # e.g. embeddings -> full
        loss_axis.axvline(step, color="grey", linestyle=":")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("train loss", color="tab:blue")
    if held_out:
        bpc_axis = loss_axis.twinx()
        bpc_axis.plot(*zip(*held_out), "o-", color="tab:orange", label="held-out bpc")
        bpc_axis.set_ylabel("held-out bits per character", color="tab:orange")
    figure.tight_layout()
    with atomic_file(log.path.parent / CURVE_FILE, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
