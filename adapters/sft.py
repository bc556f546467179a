"""``sft``: Lottery-Ticket Sparse Fine-Tuning (Ansell et al., ACL 2022).

Phase 1 fine-tunes every maskable tensor with an L1 pull toward the start θ0 (λ·Σ|θ − θ0| / N); the K entries that
moved most (globally, embeddings included) form the ticket; the model is reset to θ0 and phase 2
trains only those entries with a fresh optimizer. The module stores φ = θ2 − θ0 sparsely.
Composition adds φ, reversion subtracts it.

Trainer is extended only through public means: the L1 (sub)gradient λ·sign(θ − θ0) and the
ticket mask are tensor hooks on the parameters' gradients, each phase is its own ``Trainer``
(fresh optimizer), and weight decay is 0 so untouched entries never move.

File ``sft.safetensors``: per tensor ``indices/<name>`` (int64, flat), ``values/<name>`` and
``shape/<name>`` (int64); names are relative to the base model (``encoder.layer.0...``) so a
module trained with an MLM head applies to a classifier. Dense heads go to ``head.safetensors``.
Composed modules (``langgraft module compose --no-merge``) are the same file holding Σ φ_i.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraft.errors import UserError
from langgraft.options import option

from .base import (HEAD_FILE, Fit, Module, ModuleKindConfig, ModuleKind, TrainedModule, apply_head, body_parameters,
                   check_head, composition_state, unwrap, read_module_tensors, register_kind, relative_name,
                   revert_head, save_head)
from .training import freeze

SPARSE_FILE = "sft.safetensors"


@dataclass
class SftConfig(ModuleKindConfig):
    k: int = option(100_000, help="sft: number of entries in the ticket (paper: ~7.7M language, ~14.2M task on "
                    "base models)", gt=0)
    l1_weight: float = option(0.1, help="sft: L1 weight λ of the pull toward the start, λ·Σ|θ − θ0| / N (N maskable "
                              "entries)", ge=0, aliases=("--l1",), keys=("l1",))
    include_layernorm: bool = option(False, help="sft: LayerNorm weights may enter the ticket")
    train_embeddings: bool | None = option(None, help="sft: embeddings may enter the ticket (default: yes for "
                                           "language modules, no for task modules)")


def _is_norm(name: str, modules: dict[str, Any]) -> bool:
    owner = modules.get(name.rpartition(".")[0])
    return owner is not None and "norm" in type(owner).__name__.lower()


def maskable_parameters(model: Any, config: SftConfig, role: str, head_names: list[str]) -> dict[str, Any]:
    """The tensors a ticket may draw from: the base model's, minus norms, heads, maybe embeddings."""
    inner = unwrap(model)
    body_modules = {name.replace(".base_layer", ""): module for name, module in inner.base_model.named_modules()}
    embeddings = inner.get_input_embeddings().weight
    train_embeddings = config.train_embeddings if config.train_embeddings is not None else role == "language"
    relative_heads = {relative_name(inner, name) for name in head_names}
    chosen = {}
    for name, parameter in body_parameters(inner).items():
        if name in relative_heads:
            continue
        if not config.include_layernorm and _is_norm(name, body_modules):
            continue
        if parameter is embeddings and not train_embeddings:
            continue
        chosen[name] = parameter
    return chosen


def _untie_output_embeddings(model: Any) -> None:
    """Give the LM head its own frozen copy, so embedding updates are input-side only (as in the paper)."""
    # deferred: keeps torch off `langgraft --help`
    import torch

    inner = unwrap(model)
    output = inner.get_output_embeddings()
    if output is not None and output.weight is inner.get_input_embeddings().weight:
        output.weight = torch.nn.Parameter(output.weight.detach().clone(), requires_grad=False)
        inner.config.tie_word_embeddings = False


def _register_gradient_hooks(parameters: dict[str, Any], start: dict[str, Any], l1_weight: float,
                             masks: dict[str, Any] | None) -> list[Any]:
    """grad ← (grad + λ·sign(θ − θ0)) · mask: the L1 pull toward θ0 and the ticket mask."""
    handles = []
    for name, parameter in parameters.items():
        theta0 = start[name]
        mask = None if masks is None else masks[name].to(parameter.dtype)

        def hook(grad: Any, parameter: Any = parameter, theta0: Any = theta0, mask: Any = mask) -> Any:
            grad = grad + l1_weight * (parameter.detach() - theta0).sign()
            return grad if mask is None else grad * mask

        handles.append(parameter.register_hook(hook))
    return handles


def select_ticket(deltas: dict[str, Any], k: int) -> dict[str, Any]:
    """Boolean masks of the global top-``k`` entries by ``|delta|`` (per-tensor top-k first: bounded memory)."""
    # deferred: keeps torch off `langgraft --help`
    import torch

    candidates, owners, offsets = [], [], []
    for index, (name, delta) in enumerate(deltas.items()):
        flat = delta.abs().reshape(-1)
        values, positions = torch.topk(flat, min(k, flat.numel()), sorted=False)
        candidates.append(values)
        offsets.append(positions)
        owners.append(torch.full_like(positions, index))
    values = torch.cat(candidates)
    top = torch.topk(values, k, sorted=False).indices
    owner_of, position_of = torch.cat(owners)[top], torch.cat(offsets)[top]
    masks = {}
    for index, (name, delta) in enumerate(deltas.items()):
        mask = torch.zeros(delta.numel(), dtype=torch.bool)
        mask[position_of[owner_of == index]] = True
        masks[name] = mask.view_as(delta)
    return masks


def write_sparse(entries: dict[str, tuple[Any, Any, list[int]]], path: Path, k: int) -> None:
    """Write ``name -> (flat int64 indices, values, shape)`` in the module file format."""
    # deferred: keeps torch and safetensors off `langgraft --help`
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for name, (indices, values, shape) in entries.items():
        tensors[f"indices/{name}"] = indices.to(torch.int64).contiguous()
        tensors[f"values/{name}"] = values.contiguous()
        tensors[f"shape/{name}"] = torch.tensor(shape, dtype=torch.int64)
    save_file(tensors, str(path), metadata={"format": "langgraft-sft", "k": str(k)})


def sum_sparse(parts: list[dict[str, tuple[Any, Any, list[int]]]]) -> dict[str, tuple[Any, Any, list[int]]]:
    """One sparse difference equal to the sum of ``parts``: union of indices, values added where they overlap."""
    # deferred: keeps torch off `langgraft --help`
    import torch

    total = {}
    for name in dict.fromkeys(name for part in parts for name in part):
        present = [part[name] for part in parts if name in part]
        union, position = torch.unique(torch.cat([indices for indices, _, _ in present]), return_inverse=True)
        values = torch.cat([values for _, values, _ in present])
        total[name] = (union, torch.zeros(len(union), dtype=values.dtype).index_add_(0, position, values),
                       present[0][2])
    return total


@dataclass(kw_only=True)
class SftTrainedModule(TrainedModule):
    """A trained sft module: also each selected parameter's (difference, mask), and the name of the
    input embeddings among them (None when they were not maskable)."""

    difference: dict[str, tuple[Any, Any]]
    embeddings_name: str | None


@register_kind
class SftKind(ModuleKind):
    name = "sft"
    config_class = SftConfig
    default_learning_rate = 5e-5

    def train(self, model: Any, config: SftConfig, role: str, head_names: list[str], fit: Fit) -> TrainedModule:
        # deferred: keeps torch off `langgraft --help`
        import torch

        maskable = maskable_parameters(model, config, role, head_names)
        total = sum(p.numel() for p in maskable.values())
        if config.k <= 0 or config.k > total:
            raise UserError(f"sft k={config.k} must be between 1 and the {total} maskable parameters of this model; "
                            "lower --k")
        if role == "language":
            _untie_output_embeddings(model)
        inner = unwrap(model)
        all_parameters = dict(inner.named_parameters())
        heads = {name: all_parameters[name] for name in head_names}
        start = {name: p.detach().clone() for name, p in maskable.items()}
        head_start = {name: p.detach().clone() for name, p in heads.items()}

        freeze(model)
        for parameter in list(maskable.values()) + list(heads.values()):
            parameter.requires_grad_(True)
        l1 = config.l1_weight / total  # the paper normalises the L1 distance by the maskable parameter count
        handles = _register_gradient_hooks(maskable, start, l1, None)
        phase1 = fit(model, self.default_learning_rate, [], "phase1")
        for handle in handles:
            handle.remove()

        with torch.no_grad():
            masks = select_ticket({name: p.detach() - start[name] for name, p in maskable.items()}, config.k)
            for name, parameter in maskable.items():
                parameter.copy_(start[name])
            for name, parameter in heads.items():
                parameter.copy_(head_start[name])
        selected = {name: p for name, p in maskable.items() if bool(masks[name].any())}
        for name, parameter in maskable.items():
            parameter.requires_grad_(name in selected)
        handles = _register_gradient_hooks(selected, start, l1, masks)
        phase2 = fit(model, self.default_learning_rate, [], "phase2")
        for handle in handles:
            handle.remove()

        difference = {name: ((p.detach() - start[name]), masks[name]) for name, p in selected.items()}
        stats = {"train_seconds": round(phase1["train_seconds"] + phase2["train_seconds"], 2),
                 "train_loss": phase2["train_loss"]}
        embeddings = inner.get_input_embeddings().weight
        return SftTrainedModule(model, config.k + sum(p.numel() for p in heads.values()), stats,
                                difference=difference,
                                embeddings_name=next((n for n, p in maskable.items() if p is embeddings), None))

    def save(self, trained: SftTrainedModule, config: SftConfig, role: str, head_names: list[str],
             directory: Path) -> dict[str, Any]:
        # deferred: keeps torch off `langgraft --help`
        import torch

        entries = {}
        for name, (delta, mask) in trained.difference.items():
            indices = mask.reshape(-1).nonzero().squeeze(1).to(torch.int64)
            entries[name] = (indices, delta.reshape(-1)[indices], list(delta.shape))
        write_sparse(entries, directory / SPARSE_FILE, config.k)
        if head_names:
            save_head(unwrap(trained.model), head_names, directory)
        return {"size": {"k": config.k}, "touches_embeddings": trained.embeddings_name in trained.difference}

    def _read(self, module: Module, model: Any) -> dict[str, tuple[Any, Any, Any]]:
        """``name -> (parameter, flat indices, values)``, every index checked against the model."""
        path = module.path / SPARSE_FILE
        tensors = read_module_tensors(module, SPARSE_FILE, owner="sft", missing="the module is incomplete",
                                      what="sparse", fix="retrain or restore the module")
        parameters = body_parameters(model)
        entries = {}
        for key in tensors:
            if not key.startswith("indices/"):
                continue
            name = key[len("indices/"):]
            indices, values = tensors[key], tensors.get(f"values/{name}")
            shape = tensors.get(f"shape/{name}")
            if values is None or shape is None or values.shape != indices.shape:
                raise UserError(f"{path}: tensor {name} lacks matching values/shape entries; the file is corrupted")
            if name not in parameters or list(parameters[name].shape) != shape.tolist():
                raise UserError(f"{path}: tensor {name} {shape.tolist()} does not exist in this model; "
                                "use the base model the module was trained on")
            numel = parameters[name].numel()
            if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= numel):
                raise UserError(f"{path}: index out of range in {name} (size {numel}); the sparse file is corrupted")
            entries[name] = (parameters[name], indices, values)
        return entries

    def validate(self, module: Module, model: Any) -> None:
        self._read(module, model)
        if module.metadata.has_head:
            check_head(module, model)
        if module.metadata.touches_embeddings:
            state = composition_state(model)
            if state.identity.embedding_digest != module.metadata.embedding_digest:
                raise UserError(f"sft module {module.path} changes embedding rows of another vocabulary; compose it "
                                "onto the checkpoint (tokenizer + embeddings) it was trained with")

    def _add(self, model: Any, module: Module, sign: float) -> None:
        # deferred: keeps torch off `langgraft --help`
        import torch

        with torch.no_grad():
            for parameter, indices, values in self._read(module, model).values():
                parameter.view(-1).index_add_(0, indices, values.to(parameter.dtype), alpha=sign)

    def apply(self, model: Any, module: Module, name: str) -> Any:
        self._add(model, module, 1.0)
        if (module.path / HEAD_FILE).is_file():
            apply_head(model, module, composition_state(model), name)
        return model

    def revert(self, model: Any, module: Module, name: str) -> Any:
        self._add(model, module, -1.0)
        revert_head(model, composition_state(model), name)
        return model

    def combine(self, model: Any, parts: list[tuple[str, Module]], directory: Path) -> dict[str, Any]:
        """One sparse file for ``parts`` (composed onto ``model``): φ = Σ φ_i, so it composes and reverts alike."""
        summed = sum_sparse([{name: (indices, values, list(parameter.shape))
                              for name, (parameter, indices, values) in self._read(module, model).items()}
                             for _, module in parts])
        k = sum(int(indices.numel()) for indices, _, _ in summed.values())
        write_sparse(summed, directory / SPARSE_FILE, k)
        config = dataclasses.replace(parts[0][1].config, k=k)
        return {"size": {"k": k}, "touches_embeddings": any(m.metadata.touches_embeddings for _, m in parts),
                "config": dataclasses.asdict(config)}


