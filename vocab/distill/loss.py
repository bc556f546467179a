"""The distillation loss, as the training path's ``loss`` (Trainer's public ``compute_loss_func``).

A forward pre-hook on the student takes the batch's ``distill_*`` tensors out of the model's inputs
and asks for hidden states; :meth:`DistillLoss.__call__` then compares the student's states with
the teacher's cached ones:

- same text: MSE (mean over the hidden width) at every aligned position, summed over positions and
  divided by Trainer's count of them over the whole accumulated batch (``labels`` holds one entry
  per position), so gradient accumulation equals one large batch;
- parallel text: MSE between pooled sentence vectors (each item weighted: the student's reading of
  the source sentence counts ``source_side_weight``);
- optionally KL(teacher || student) over the shared vocabulary at aligned positions (the teacher
  runs here, ``no_grad``) and the student's next-token cross-entropy (alpha-NTP).
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator, Sequence

import torch

from langgraft.models import unwrap

from .data import layer_states, pool

KEYS = ("distill_targets", "distill_pool_mask", "distill_weights", "distill_teacher_ids", "distill_teacher_mask",
        "distill_teacher_positions", "shift_labels", "num_items_in_batch")


class DistillLoss:
    """See the module docstring. ``teacher`` and ``shared`` (student ids, teacher ids) only for the logit KL."""

    def __init__(self, layers: Sequence[int], *, hidden_weight: float = 1.0, pooling: str = "mean",
                 ntp_weight: float = 0.0, ntp_scaling: str = "alpha", logit_kl_weight: float = 0.0,
                 teacher: Any = None, shared: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.layers, self.hidden_weight, self.pooling = list(layers), hidden_weight, pooling
        self.ntp_weight, self.ntp_scaling = ntp_weight, ntp_scaling
        self.logit_kl_weight, self.teacher, self.shared = logit_kl_weight, teacher, shared
        self.batch: dict[str, Any] = {}

    @property
    def needs_logits(self) -> bool:
        return self.ntp_weight > 0 or self.logit_kl_weight > 0

    @contextlib.contextmanager
    def attached(self, model: torch.nn.Module) -> Iterator["DistillLoss"]:
        inner = unwrap(model)
        keeps = "logits_to_keep" in inspect.signature(inner.forward).parameters

        def take(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            self.batch = {key: kwargs.pop(key) for key in KEYS if key in kwargs}
            self.batch["input_ids"], self.batch["attention_mask"] = kwargs.get("input_ids"), kwargs.get("attention_mask")
            kwargs["output_hidden_states"] = True
            if keeps and not self.needs_logits:
                kwargs["logits_to_keep"] = 1  # the loss reads hidden states only: skip the vocabulary projection
            return args, kwargs

        handle = inner.register_forward_pre_hook(take, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        states = layer_states(outputs.hidden_states, self.layers)
        targets = self.batch["distill_targets"].to(states.device)
        if "distill_pool_mask" in self.batch:
            pooled = pool(states, self.batch["distill_pool_mask"].to(states.device), self.pooling)
            weights = self.batch["distill_weights"].to(states.device)
            squared = ((pooled.float() - targets[:, 0].float()) ** 2).mean(-1) * weights
            valid = torch.ones_like(weights, dtype=torch.bool)
        else:
            valid = labels >= 0
            picked = states.gather(1, labels.clamp(min=0).unsqueeze(-1).expand(-1, -1, states.shape[-1]))
            squared = ((picked.float() - targets.float()) ** 2).mean(-1) * valid
        count = num_items_in_batch if num_items_in_batch is not None else valid.sum()
        count = torch.as_tensor(count, device=states.device).clamp(min=1)
        share = valid.sum() / count  # this micro-batch's share of the accumulated batch
        mse = squared.sum() / count
        loss = self.hidden_weight * mse
        if self.logit_kl_weight > 0:
            kl = self._kl(outputs.logits, labels, valid) * share
            loss = loss + self.logit_kl_weight * kl
        if self.ntp_weight > 0:
            ce = self._next_token(outputs.logits) * share
            scale = (mse.detach() / ce.detach().clamp(min=1e-12)) if self.ntp_scaling == "alpha" else 1.0
            loss = loss + self.ntp_weight * scale * ce
        return loss

    def _next_token(self, logits: torch.Tensor) -> torch.Tensor:
        ids, mask = self.batch["input_ids"], self.batch["attention_mask"]
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                                 ignore_index=-100)

    def _kl(self, logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        student_ids, teacher_ids = (t.to(logits.device) for t in self.shared)
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids=self.batch["distill_teacher_ids"].to(logits.device),
                                          attention_mask=self.batch["distill_teacher_mask"].to(logits.device)).logits
            positions = self.batch["distill_teacher_positions"].to(logits.device)
            teacher_at = teacher_logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, teacher_logits.shape[-1]))
            teacher_log = torch.log_softmax(teacher_at[..., teacher_ids].float(), dim=-1)
        student_at = logits.gather(1, labels.clamp(min=0).unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        student_log = torch.log_softmax(student_at[..., student_ids].float(), dim=-1)
        kl = (teacher_log.exp() * (teacher_log - student_log)).sum(-1)
        return (kl * valid).sum() / valid.sum().clamp(min=1)
