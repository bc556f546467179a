"""The one training path: every langgraft run that updates weights goes through :func:`train`.

Head recovery (:mod:`langgraft.adapt.pretrain.head`), continued pretraining and its language-module stage
(:mod:`langgraft.adapt.pretrain.run`) and task modules (:mod:`langgraft.adapters.training`) hand it a
model, a dataset and collator, a loss, which parameters train and :class:`TrainingOptions`; it
builds the only ``transformers.Trainer`` of the code base and owns what they share: device
detection, fp32 master weights for low-precision checkpoints (:mod:`.precision`), training only
the new rows of an extended vocabulary (:mod:`.rows`), the chunked LM loss (:mod:`.loss`), sealed
checkpoints and resume (:mod:`.checkpoints`), FSDP/DeepSpeed through Accelerate, and a full disk
as one error line.

``from langgraft.training import TrainingOptions`` does not import torch (CLIs build their
arguments from it); the other names load their module on first use.
"""
from __future__ import annotations

from langgraft.lazy import lazy_exports

from .options import OWN_REPORTERS, TrainingOptions

# The training log every run writes (langgraft.adapt.pretrain.callbacks.MetricsLog) and reports read
# (langgraft.eval.report, the pipeline's report stage): one name for writer and readers.
METRICS_FILE = "metrics.jsonl"

_LAZY = {
    "train": "run", "save_trained": "run", "check_options": "run", "TrainResult": "run",
    "world_size": "run", "training_arguments": "run", "as_checkpoint": "run", "autocast": "precision",
    "LMLoss": "loss", "NewRows": "rows",
    "has_accelerator": "precision", "checkpoint_dtype": "precision", "load_dtype": "precision",
    "SEAL_FILE": "checkpoints", "SealCheckpointCallback": "checkpoints", "seal_checkpoint": "checkpoints",
    "is_sealed": "checkpoints", "valid_checkpoints": "checkpoints", "latest_checkpoint": "checkpoints",
    "checkpoint_step": "checkpoints", "MetricsLog": "metrics", "MetricsCallback": "metrics",
}

__all__ = ["METRICS_FILE", "OWN_REPORTERS", "TrainingOptions", *_LAZY]
__getattr__ = lazy_exports(__name__, _LAZY)
