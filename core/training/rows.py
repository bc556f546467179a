"""Train only the new rows of an extended vocabulary (``--train-new-rows-only``).

An extended vocabulary keeps the source's rows (ids below ``start``) and appends new ones. To
train the new rows alone, the full input-embedding, output-embedding and output-bias tensors are
frozen and the rows ``start:`` get their own fp32 parameters (``langgraft_new_rows``,
``langgraft_new_bias``) on the embedding modules; forward hooks put them in place of the frozen
rows (input: where an id is new; output: the new logit columns). Gradients and optimizer state
exist for the new rows only, so AdamW memory is proportional to them, and the source rows are
never touched: bit-identical after training. :meth:`NewRows.fold` writes the trained rows back
into the ordinary tensors and removes the extra parameters, so the saved checkpoint is stock.
Trainer checkpoints hold the extra parameters (with their optimizer state), which is what resume
needs. Pure PyTorch hooks on a stock model: no forked model code.

This is what PEFT's ``trainable_token_indices`` does for the input embedding (and a tied head);
it is done here directly so that an *untied* head (Llama-3 8B, Mistral) and an output bias (XLM-R,
BERT) train their new rows too.
"""
from __future__ import annotations

from typing import Any

import torch

from langgraft.errors import UserError
from langgraft.models import unwrap

ROWS = "langgraft_new_rows"
BIAS = "langgraft_new_bias"


class NewRows:
    """Attach trainable new rows ``start:`` to a model's embeddings and head (see the module docstring)."""

    def __init__(self, model: Any, start: int):
        inner = unwrap(model)
        self.input = inner.get_input_embeddings()
        self.output = inner.get_output_embeddings()
        rows = self.input.weight.shape[0]
        if not 0 < start < rows:
            raise UserError(f"--train-new-rows-only: new rows start at id {start}, but the embedding has {rows} rows; "
                            "the vocabulary has no new rows to train")
        self.start = start
        self.tied = self.output is not None and self.output.weight is self.input.weight
        self._add(self.input, ROWS, self.input.weight)
        if self.output is not None and not self.tied:
            self._add(self.output, ROWS, self.output.weight)
        bias = getattr(self.output, "bias", None) if self.output is not None else None
        if bias is not None:
            self._add(self.output, BIAS, bias)
        self.handles = [self.input.register_forward_hook(self._embed)]
        if self.output is not None:
            self.handles.append(self.output.register_forward_hook(self._project))
        self.output_path = next((n for n, m in inner.named_modules() if m is self.output), "")

    def _add(self, module: torch.nn.Module, name: str, full: torch.nn.Parameter) -> None:
        full.requires_grad_(False)
        module.register_parameter(name, torch.nn.Parameter(full.detach()[self.start:].float().clone()))

    def _owned(self) -> list[tuple[torch.nn.Module, str]]:
        owned = [(self.input, ROWS)]
        if self.output is not None and not self.tied:
            owned.append((self.output, ROWS))
        if self.output is not None and hasattr(self.output, BIAS):
            owned.append((self.output, BIAS))
        return owned

    @property
    def attached(self) -> bool:
        """True until :meth:`fold` has written the rows back."""
        return hasattr(self.input, ROWS)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [getattr(module, name) for module, name in self._owned()]

    def _embed(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        ids = args[0]
        new = ids >= self.start
        rows = torch.nn.functional.embedding((ids - self.start).clamp(min=0), getattr(module, ROWS))
        scale = getattr(module, "embed_scale", None)  # scaled embeddings (Gemma) multiply inside forward
        if scale is not None:
            rows = rows * scale.to(rows.dtype)
        return torch.where(new.unsqueeze(-1), rows.to(output.dtype), output)

    def _project(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        hidden = args[0]
        weight = getattr(self.input if self.tied else module, ROWS)
        bias = getattr(module, BIAS, None)
        new = torch.nn.functional.linear(hidden, weight.to(hidden.dtype), None if bias is None else bias.to(hidden.dtype))
        return torch.cat([output[..., :self.start], new.to(output.dtype)], dim=-1)

    def fold(self) -> None:
        """Write the trained rows into the model's own tensors; remove the hooks and extra parameters."""
        for handle in self.handles:
            handle.remove()
        with torch.no_grad():
            self.input.weight[self.start:] = getattr(self.input, ROWS).to(self.input.weight.dtype)
            if self.output is not None and not self.tied:
                self.output.weight[self.start:] = getattr(self.output, ROWS).to(self.output.weight.dtype)
            if self.output is not None and hasattr(self.output, BIAS):
                self.output.bias[self.start:] = getattr(self.output, BIAS).to(self.output.bias.dtype)
        for module, name in self._owned():
            delattr(module, name)

    def fold_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`fold` for a gathered full state dict (sharded runs): new rows written, extra keys removed."""
        state = dict(state)
        targets = {ROWS: "weight", BIAS: "bias"}
        for key in [k for k in state if k.rsplit(".", 1)[-1] in targets]:
            owner, attribute = key.rsplit(".", 1)
            full_key = f"{owner}.{targets[attribute]}"
            rows = state.pop(key)
            tied = [f"{self.output_path}.weight"] if self.tied and attribute == ROWS else []
            for name in [full_key, *tied]:
                if name in state:
                    full = state[name].clone()
                    full[self.start:] = rows.to(full.dtype)
                    state[name] = full
        return state
