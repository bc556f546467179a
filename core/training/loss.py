"""The language-modelling loss of the training path: head on the scored rows only, in chunks.

The collator marks the positions a loss needs with a boolean ``lm_rows`` mask (MLM: ~15% masked
positions; CLM: every position whose next token is a target). :class:`LMLoss` hooks the model so
that its forward pass stops short of the vocabulary projection: a pre-hook on the head module
keeps the hidden states of the scored rows and hands the head an empty batch. Trainer's public
``compute_loss_func`` then computes the cross-entropy ``chunk_tokens`` rows at a time, each chunk
under activation checkpointing, so no more than one chunk's ``[chunk, vocab]`` logits (and their
gradient) exist at once: at a 128k vocabulary the ``batch × sequence × vocabulary`` fp32 logits
tensor (4.2 GB for 8,192 tokens) is never built. With ``chunk_tokens=0`` (or fewer scored rows
than a chunk) the head runs once over all scored rows, as before chunking existed.

A plain ``nn.Linear`` head that nothing else hooks (no new-rows hook, no FSDP sharding) takes a
fused path instead (:class:`LinearCrossEntropy`): each chunk's logits give their gradients at once,
the head's weight gradient is accumulated in place in one float32 buffer, and nothing is recomputed
in the backward pass. Through autograd, every chunk's weight gradient would be a separate
``vocab × hidden`` tensor summed into the last, which at batch 1 costs more than the logits saved.

Models that post-process logits after their head (Gemma-2's ``final_logit_softcapping``,
Cohere's ``logit_scale``) keep the plain selected-rows head (:class:`langgraft.lm.SelectedRowsHead`):
their logits are only right as the model computes them.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.utils.checkpoint import checkpoint

from langgraft.lm import LM_ROWS_KEY, SelectedRowsHead, head_module, selected_rows_loss
from langgraft.models import unwrap

POST_HEAD_ATTRIBUTES = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def post_processes_logits(config: Any) -> bool:
    """True when the model changes its head's output before returning logits (see the module docstring)."""
    configs = [config, getattr(config, "text_config", None)]
    return any(getattr(c, name, None) not in (None, 1, 1.0) for c in configs if c is not None
               for name in POST_HEAD_ATTRIBUTES)


class _ScoredRows:
    """Hooks: take ``lm_rows`` out of the inputs; keep the head's input at those rows; give the head no rows.

    In eval mode (held-out evaluation during training) the head runs on the scored rows as
    :class:`~langgraft.lm.SelectedRowsHead` does, so evaluation code sees ``[rows, vocab]`` logits.
    """

    def __init__(self, model: torch.nn.Module):
        self.head = head_module(model)
        self.rows: torch.Tensor | None = None
        self.hidden: torch.Tensor | None = None
        self.bypass = False
        self.select_only = False
        self.handles = [model.register_forward_pre_hook(self._take_rows, with_kwargs=True),
                        self.head.register_forward_pre_hook(self._keep_hidden, with_kwargs=True)]

    def _take_rows(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        self.rows = kwargs.pop(LM_ROWS_KEY, None)
        self.hidden = None
        self.select_only = not module.training
        return args, kwargs

    def _keep_hidden(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.bypass or self.rows is None:
            return None
        name = None if args else next(key for key, value in kwargs.items() if torch.is_tensor(value))
        selected = (args[0] if args else kwargs[name])[self.rows]
        if not self.select_only:
            self.hidden, selected = selected, selected[:0]
        return ((selected, *args[1:]), kwargs) if args else (args, {**kwargs, name: selected})

    def plain_linear(self) -> bool:
        """The head is an ``nn.Linear`` on a plain weight that no hook but ours changes (fused path)."""
        return (type(self.head) is torch.nn.Linear and not self.head._forward_hooks
                and len(self.head._forward_pre_hooks) == 1 and type(self.head.weight.data) is torch.Tensor)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head on ``hidden`` (its other hooks, e.g. new rows, still apply)."""
        self.bypass = True
        try:
            return self.head(hidden)
        finally:
            self.bypass = False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class LMLoss:
    """Trainer ``compute_loss_func`` for MLM/CLM on the ``lm_rows`` positions, chunked (module docstring).

    Use :meth:`attached` around training; the loss is normalised by Trainer's
    ``num_items_in_batch`` so gradient accumulation and multi-process runs match one big batch.
    """

    def __init__(self, objective: str, chunk_tokens: int):
        self.objective, self.chunk_tokens = objective, chunk_tokens
        self.rows: _ScoredRows | None = None
        self._plain = selected_rows_loss(objective)

    @contextlib.contextmanager
    def attached(self, model: torch.nn.Module) -> Iterator["LMLoss"]:
        if post_processes_logits(unwrap(model).config):
            with SelectedRowsHead(model):
                yield self
            return
        self.rows = _ScoredRows(model)
        try:
            yield self
        finally:
            self.rows.remove()
            self.rows = None

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Target ids in the row-major order of the scored rows."""
        targets = labels[:, 1:] if self.objective == "clm" else labels
        return targets[targets != -100]

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        hidden = self.rows.hidden if self.rows is not None else None
        if hidden is None:
            return self._plain(outputs, labels, num_items_in_batch)
        targets = self.targets(labels)
        total = self.summed_loss(hidden, targets)
        if num_items_in_batch is None:
            return total / max(int(targets.numel()), 1)
        return total / num_items_in_batch

    def summed_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Σ cross-entropy over the rows, ``chunk_tokens`` rows of logits at a time."""
        size = self.chunk_tokens if 0 < self.chunk_tokens < hidden.shape[0] else hidden.shape[0]
        if size == hidden.shape[0]:
            return _cross_entropy_sum(self.rows, hidden, targets)
        if self.rows.plain_linear():
            head = self.rows.head
            return LinearCrossEntropy.apply(hidden, head.weight, head.bias, targets, size)
        total = hidden.new_zeros((), dtype=torch.float32)
        for begin in range(0, hidden.shape[0], size):
            total = total + checkpoint(_cross_entropy_sum, self.rows, hidden[begin:begin + size],
                                       targets[begin:begin + size], use_reentrant=False)
        return total


class LinearCrossEntropy(torch.autograd.Function):
    """Σ cross-entropy of ``hidden @ weight.T + bias`` against ``targets``, ``chunk`` rows at a time.

    The forward pass computes the gradients too (softmax minus one-hot, per chunk, in float32):
    the hidden rows' gradient chunk by chunk, the weight's and bias's accumulated in place, so at
    most one chunk's logits and one weight-sized float32 (float64 for a float64 head) buffer exist.
    Backward only scales them.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, chunk: int) -> torch.Tensor:
        wide = torch.promote_types(weight.dtype, torch.float32)  # float32, or float64 for a float64 head
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros(weight.shape, dtype=wide, device=weight.device) if ctx.needs_input_grad[1] else None
        grad_bias = torch.zeros(bias.shape, dtype=wide, device=bias.device) \
            if bias is not None and ctx.needs_input_grad[2] else None
        total = torch.zeros((), dtype=wide, device=hidden.device)
        for begin in range(0, hidden.shape[0], chunk):
            rows, wanted = hidden[begin:begin + chunk], targets[begin:begin + chunk]
            picked = torch.arange(len(wanted), device=wanted.device)
            log_probabilities = torch.nn.functional.linear(rows, weight, bias).to(wide).log_softmax(dim=-1)
            total -= log_probabilities[picked, wanted].sum()
            probabilities = log_probabilities.exp_()  # d(Σ cross-entropy)/d logits = softmax - one-hot, in place
            probabilities[picked, wanted] -= 1
            if grad_hidden is not None:
                grad_hidden[begin:begin + chunk] = (probabilities.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight.addmm_(probabilities.T, rows.to(wide))
            if grad_bias is not None:
                grad_bias += probabilities.sum(dim=0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, scale: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        return (None if grad_hidden is None else grad_hidden * scale.to(grad_hidden.dtype),
                None if grad_weight is None else grad_weight.mul_(scale).to(ctx.dtypes[0]),
                None if grad_bias is None else grad_bias.mul_(scale).to(ctx.dtypes[1]), None, None)


def _cross_entropy_sum(rows: _ScoredRows, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = rows.logits(hidden)
    return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
