"""Logits only where the loss needs them: the MLM speed-up shared by training and evaluation."""
from __future__ import annotations

from typing import Any, Callable

import torch

# Batch key holding the boolean [batch, seq] mask of positions whose logits the loss needs. It
# is removed from the model's inputs by a forward pre-hook and never reaches the model.
LM_ROWS_KEY = "lm_rows"


def _transformers_model(model: torch.nn.Module) -> torch.nn.Module:
    """The ``PreTrainedModel`` inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def head_module(model: torch.nn.Module) -> torch.nn.Module | None:
    """The top-level sub-module that holds the vocabulary projection (``cls``, ``lm_head``, ...).

    Running it on the selected rows only also skips the head's transform (dense + norm) on the
    others. ``None`` when the model has no output embeddings.
    """
    inner = _transformers_model(model)
    projection = inner.get_output_embeddings()
    if projection is None:
        return None
    for child in inner.children():
        if child is projection or any(module is projection for module in child.modules()):
            return child
    return projection


class SelectedRowsHead:
    """Make an LM compute logits only at the positions a loss needs (a ``[n_rows, vocab]`` tensor).

    On small models the vocabulary projection is most of the compute, and MLM scores only ~15%
    of the positions. Pass the boolean mask as ``model(..., lm_rows=mask)``: a forward pre-hook
    on ``model`` takes it out of the inputs, and a pre-hook on the head keeps only those rows of
    the hidden states. Without ``lm_rows`` the model behaves as usual. Pure PyTorch hooks: the
    model stays a stock ``PreTrainedModel`` (checkpoints and ``save_pretrained`` are unchanged).
    """

    def __init__(self, model: torch.nn.Module):
        self.rows: torch.Tensor | None = None
        head = head_module(model)
        self.handles = [
            model.register_forward_pre_hook(self._take_rows, with_kwargs=True),
            model.register_forward_hook(self._forget_rows, always_call=True),
        ]
        if head is not None:
            self.handles.append(head.register_forward_pre_hook(self._select_rows, with_kwargs=True))

    def _take_rows(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        self.rows = kwargs.pop(LM_ROWS_KEY, None)
        return args, kwargs

    def _select_rows(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.rows is None:
            return None
        if args:
            return (args[0][self.rows], *args[1:]), kwargs
        name = next(key for key, value in kwargs.items() if torch.is_tensor(value))
        return args, {**kwargs, name: kwargs[name][self.rows]}

    def _forget_rows(self, *_: Any) -> None:
        self.rows = None

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def __enter__(self) -> "SelectedRowsHead":
        return self

    def __exit__(self, *_: Any) -> None:
        self.remove()


def logits_at(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              rows: torch.Tensor) -> torch.Tensor:
    """Logits ``[rows.sum(), vocab]`` at the ``True`` positions of ``rows``, in row-major order."""
    with SelectedRowsHead(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **{LM_ROWS_KEY: rows}).logits
    return logits if logits.dim() == 2 else logits[rows]


def selected_rows_loss(objective: str) -> Callable[..., torch.Tensor]:
    """Trainer ``compute_loss_func``: cross-entropy over the logits of the ``lm_rows`` positions.

    Logits arrive as ``[n_rows, vocab]`` (see :class:`~langgraft.adapt.pretrain.SelectedRowsHead`);
    targets are the labels at those rows, in the same row-major order. Normalised by Trainer's
    ``num_items_in_batch`` so gradient accumulation and multi-process runs match one big batch.
    """

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        targets = labels[:, 1:] if objective == "clm" else labels
        keep = targets != -100
        logits = outputs.logits if outputs.logits.dim() == 2 else (
            outputs.logits[:, :-1][keep] if objective == "clm" else outputs.logits[keep])
        total = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
        if num_items_in_batch is None:
            return total / keep.sum().clamp(min=1)
        return total / num_items_in_batch

    return loss
