"""``madx``: MAD-X bottleneck adapters (Pfeiffer et al., EMNLP 2020) on stock transformers 5 models.

A bottleneck ``h + up(act(down(h)))`` (``up`` zero-initialised, so a new adapter is the identity)
follows each layer's feed-forward output: BERT/XLM-R ``layer.output.dense`` (before dropout,
residual and LayerNorm), GPT-2/Llama ``layer.mlp``, DistilBERT ``layer.ffn``. Language adapters
(reduction 2) add an invertible NICE coupling on the word embeddings, whose inverse runs right
before the (tied) output embeddings; task adapters (reduction 16) stack on top: language → task.

Nothing is forked: adapters are child modules named ``madx_adapters`` on the feed-forward modules,
run by one forward hook per module (insertion order = stacking order); the invertible adapter
uses a forward hook on the input embeddings and a pre-hook on the output embeddings.

Format (self-contained; PEFT's custom-method registration would still need langgraft to load,
so it would not give users a stock format): ``madx.safetensors`` with ``layers.<i>.down.weight``...
and ``invertible.*``, the config in ``langgraft_module.json``, the head in ``head.safetensors``.
A stacked module (``langgraft module compose --no-merge``) holds several adapter sets: their configs
and roles in ``config.stack`` (bottom first), their weights under ``stack.<j>.`` in the same file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraft.errors import UserError
from langgraft.options import option

from .base import (HEAD_FILE, Fit, Module, ModuleKindConfig, ModuleKind, TrainedModule, apply_head, check_head,
                   composition_state, make_config, unwrap, read_module_tensors, register_kind, revert_head,
                   save_head)
from .metadata import find_layer_stack
from .training import count_trainable, freeze

WEIGHTS_FILE = "madx.safetensors"
TRAINING_ADAPTER = "default"
_FFN_PATHS = ("mlp", "ffn", "feed_forward", "output.dense")


@dataclass
class MadxConfig(ModuleKindConfig):
    reduction_factor: int | None = option(None, help="madx: bottleneck reduction (default: 2 for language "
                                          "modules, 16 for task modules)", gt=0)
    invertible: bool | None = option(None, help="madx: invertible embedding adapter (default: yes for language "
                                     "modules)")
    invertible_reduction_factor: int = option(2, help="madx: bottleneck reduction of the invertible adapter", gt=0)
    non_linearity: str = option("relu", help="madx: activation of the bottlenecks (a transformers ACT2FN name)")
    # Set by ``compose`` for a stacked module: each stacked adapter set's config plus its "role", bottom
    # (language) first, weights under ``stack.<j>.`` in the file. Empty for a trained module.
    stack: list[dict[str, Any]] = option(default_factory=list, help="set by compose for a stacked module", cli=False)


def _torch_modules() -> Any:
    # deferred: keeps torch, transformers and accelerate off `langgraft --help`
    import torch
    import torch.nn as nn
    from transformers.activations import ACT2FN

    class Bottleneck(nn.Module):
        """h + up(act(down(h))): the identity at initialisation."""

        def __init__(self, size: int, reduction: int, activation: str) -> None:
            super().__init__()
            inner = max(1, size // reduction)
            self.down = nn.Linear(size, inner)
            self.activation = ACT2FN[activation]
            self.up = nn.Linear(inner, size)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return hidden + self.up(self.activation(self.down(hidden)))

    def coupling_function(size_in: int, size_out: int, reduction: int, activation: str) -> nn.Module:
        hidden = max(1, size_in // reduction)
        last = nn.Linear(hidden, size_out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return nn.Sequential(nn.Linear(size_in, hidden), ACT2FN[activation], last)

    class InvertibleCoupling(nn.Module):
        """NICE additive coupling: y1 = x1 + F(x2), y2 = x2 + G(y1); exactly invertible, identity at init."""

        def __init__(self, size: int, reduction: int, activation: str) -> None:
            super().__init__()
            self.split = size // 2
            self.f = coupling_function(size - self.split, self.split, reduction, activation)
            self.g = coupling_function(self.split, size - self.split, reduction, activation)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x1, x2 = x[..., :self.split], x[..., self.split:]
            y1 = x1 + self.f(x2)
            return torch.cat([y1, x2 + self.g(y1)], dim=-1)

        def inverse(self, y: torch.Tensor) -> torch.Tensor:
            y1, y2 = y[..., :self.split], y[..., self.split:]
            x2 = y2 - self.g(y1)
            return torch.cat([y1 - self.f(x2), x2], dim=-1)

    return Bottleneck, InvertibleCoupling


def _ffn_modules(model: Any) -> list[Any]:
    """The feed-forward output module of every layer, found by the attribute paths of known families."""
    modules = []
    for layer in find_layer_stack(unwrap(model)):
        for path in _FFN_PATHS:
            found = layer
            for part in path.split("."):
                found = getattr(found, part, None)
                if found is None:
                    break
            if found is not None:
                modules.append(found)
                break
        else:
            raise UserError(f"cannot find the feed-forward output of {type(layer).__name__} (looked for "
                            f"{', '.join(_FFN_PATHS)}); madx supports BERT/XLM-R/GPT-2/Llama-style layers")
    return modules


def _stack_hook(module: Any, inputs: Any, output: Any) -> Any:
    """Run every adapter attached to this feed-forward module, in stacking order."""
    hidden, rest = (output[0], output[1:]) if isinstance(output, tuple) else (output, None)
    for adapter in module.madx_adapters.values():
        hidden = adapter(hidden)
    return (hidden, *rest) if rest is not None else hidden


def _embedding_hook(module: Any, inputs: Any, output: Any) -> Any:
    for coupling in module.madx_invertible.values():
        output = coupling(output)
    return output


def _inverse_pre_hook(module: Any, inputs: Any) -> Any:
    hidden = inputs[0]
    for coupling in reversed(list(module.madx_invertible_owner.madx_invertible.values())):
        hidden = coupling.inverse(hidden)
    return (hidden, *inputs[1:])


def _attach(host: Any, attribute: str, name: str, child: Any, hook: Any, pre: bool = False) -> None:
    """Add ``child`` to ``host.<attribute>`` (a ModuleDict), registering ``hook`` on first use."""
    # deferred: keeps torch off `langgraft --help`
    import torch.nn as nn

    if not hasattr(host, attribute):
        host.add_module(attribute, nn.ModuleDict())
        register = host.register_forward_pre_hook if pre else host.register_forward_hook
        host.__dict__[f"_{attribute}_handle"] = register(hook)
    if name in getattr(host, attribute):
        raise UserError(f"a madx module named {name!r} is already applied; revert it first")
    getattr(host, attribute)[name] = child


def _detach(host: Any, attribute: str, name: str) -> None:
    container = getattr(host, attribute, None)
    if container is None or name not in container:
        return
    del container[name]
    if len(container) == 0:
        host.__dict__.pop(f"_{attribute}_handle").remove()
        delattr(host, attribute)


def _resolved(config: MadxConfig, role: str) -> tuple[int, bool]:
    reduction = config.reduction_factor or (2 if role == "language" else 16)
    invertible = config.invertible if config.invertible is not None else role == "language"
    return reduction, invertible


def _size(config: MadxConfig, role: str) -> dict[str, Any]:
    reduction, invertible = _resolved(config, role)
    return {"reduction_factor": reduction, "invertible": invertible}


def install(model: Any, name: str, config: MadxConfig, role: str) -> dict[str, Any]:
    """Attach a fresh adapter set named ``name``; returns ``{state-dict key: module}`` for saving/loading."""
    # deferred: keeps torch off `langgraft --help`
    import torch.nn as nn

    Bottleneck, InvertibleCoupling = _torch_modules()
    inner = unwrap(model)
    reduction, invertible = _resolved(config, role)
    hidden = inner.config.hidden_size
    parts: dict[str, nn.Module] = {}
    for index, ffn in enumerate(_ffn_modules(inner)):
        adapter = Bottleneck(hidden, reduction, config.non_linearity)
        _attach(ffn, "madx_adapters", name, adapter, _stack_hook)
        parts[f"layers.{index}"] = adapter
    if invertible:
        embeddings = inner.get_input_embeddings()
        if getattr(embeddings, "madx_invertible", None) is not None and len(embeddings.madx_invertible):
            raise UserError("a madx module with invertible adapters is already applied; only one language "
                            "module can own the embeddings")
        coupling = InvertibleCoupling(embeddings.embedding_dim, config.invertible_reduction_factor,
                                      config.non_linearity)
        _attach(embeddings, "madx_invertible", name, coupling, _embedding_hook)
        output = inner.get_output_embeddings()
        if output is not None and not hasattr(output, "madx_invertible_owner"):
            output.__dict__["madx_invertible_owner"] = embeddings
            output.__dict__["_madx_inverse_handle"] = output.register_forward_pre_hook(_inverse_pre_hook)
        parts["invertible"] = coupling
    return parts


def uninstall(model: Any, name: str) -> None:
    inner = unwrap(model)
    for ffn in _ffn_modules(inner):
        _detach(ffn, "madx_adapters", name)
    embeddings = inner.get_input_embeddings()
    _detach(embeddings, "madx_invertible", name)
    output = inner.get_output_embeddings()
    if output is not None and "madx_invertible_owner" in output.__dict__ and not hasattr(embeddings, "madx_invertible"):
        output.__dict__.pop("_madx_inverse_handle").remove()
        output.__dict__.pop("madx_invertible_owner")


def _state(parts: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{key}": value.detach().contiguous().cpu()
            for prefix, module in parts.items() for key, value in module.state_dict().items()}


def _adapter_sets(module: Module) -> list[tuple[str, MadxConfig, str]]:
    """``(weight-key prefix, config, role)`` of each adapter set in ``module``, bottom first."""
    config = module.config
    if not config.stack:
        return [("", config, module.metadata.role)]
    return [(f"stack.{index}.", make_config("madx", **{k: v for k, v in entry.items() if k != "role"}),
             entry.get("role", "task")) for index, entry in enumerate(config.stack)]


def _adapter_set_name(name: str, index: int, count: int) -> str:
    """The name a stacked module's ``index``-th adapter set has on the model (``name`` when unstacked)."""
    return name if count == 1 else f"{name}_stack{index}"


def _expected_shapes(model: Any, config: MadxConfig, role: str) -> dict[str, tuple[int, ...]]:
    """The weight shapes an adapter set of ``config`` has on ``model`` (built on throw-away modules)."""
    Bottleneck, InvertibleCoupling = _torch_modules()
    reduction, invertible = _resolved(config, role)
    inner = unwrap(model)
    hidden = inner.config.hidden_size
    expected = {f"layers.{i}": Bottleneck(hidden, reduction, config.non_linearity)
                for i in range(len(_ffn_modules(inner)))}
    if invertible:
        expected["invertible"] = InvertibleCoupling(inner.get_input_embeddings().embedding_dim,
                                                    config.invertible_reduction_factor, config.non_linearity)
    return {key: tuple(value.shape) for key, value in _state(expected).items()}


@dataclass(kw_only=True)
class MadxTrainedModule(TrainedModule):
    """A trained madx module: also the adapters it installed (what ``save`` writes)."""

    parts: Any


@register_kind
class MadxKind(ModuleKind):
    name = "madx"
    config_class = MadxConfig
    default_learning_rate = 1e-3
    parameter_markers = ("madx_",)  # the madx_adapters / madx_invertible child modules

    def train(self, model: Any, config: MadxConfig, role: str, head_names: list[str], fit: Fit) -> TrainedModule:
        if config.stack:
            raise UserError("madx config 'stack' is written by `langgraft module compose`; train without it")
        freeze(model)
        parts = install(model, TRAINING_ADAPTER, config, role)
        parameters = dict(unwrap(model).named_parameters())
        for name in head_names:
            parameters[name].requires_grad_(True)
        trainable = count_trainable(model)
        stats = fit(model, self.default_learning_rate, [], "train")
        return MadxTrainedModule(model, trainable, stats, parts=parts)

    def save(self, trained: MadxTrainedModule, config: MadxConfig, role: str, head_names: list[str],
             directory: Path) -> dict[str, Any]:
        # deferred: keeps torch and safetensors off `langgraft --help`
        from safetensors.torch import save_file

        save_file(_state(trained.parts), str(directory / WEIGHTS_FILE), metadata={"format": "langgraft-madx"})
        if head_names:
            save_head(unwrap(trained.model), head_names, directory)
        return {"size": _size(config, role), "touches_embeddings": False}

    def _weights(self, module: Module) -> dict[str, Any]:
        return read_module_tensors(module, WEIGHTS_FILE, owner="madx", missing="the module is incomplete",
                                   what="adapter", fix="retrain or restore the module")

    def validate(self, module: Module, model: Any) -> None:
        sets = _adapter_sets(module)
        if sum(_resolved(config, role)[1] for _, config, role in sets) > 1:
            raise UserError(f"madx module {module.path} stacks several invertible adapters; only one language "
                            "module can own the embeddings")
        shapes = {prefix + key: shape for prefix, config, role in sets
                  for key, shape in _expected_shapes(model, config, role).items()}
        found = {key: tuple(value.shape) for key, value in self._weights(module).items()}
        if shapes != found:
            missing = sorted(set(shapes) ^ set(found)) or [k for k in shapes if shapes[k] != found[k]]
            raise UserError(f"madx module {module.path} does not fit this model (tensor {missing[0]}); "
                            "use the base model the module was trained on")
        if module.metadata.has_head:
            check_head(module, model)

    def apply(self, model: Any, module: Module, name: str) -> Any:
        # deferred: keeps torch off `langgraft --help`
        import torch

        weights = self._weights(module)
        sets = _adapter_sets(module)
        for index, (set_prefix, config, role) in enumerate(sets):
            parts = install(model, _adapter_set_name(name, index, len(sets)), config, role)
            with torch.no_grad():
                for prefix, part in parts.items():
                    start = f"{set_prefix}{prefix}."
                    part.load_state_dict({key[len(start):]: value for key, value in weights.items()
                                          if key.startswith(start)})
                    part.requires_grad_(False)
                    part.eval()
        if (module.path / HEAD_FILE).is_file():
            apply_head(model, module, composition_state(model), name)
        return model

    def revert(self, model: Any, module: Module, name: str) -> Any:
        sets = _adapter_sets(module)
        for index in range(len(sets)):
            uninstall(model, _adapter_set_name(name, index, len(sets)))
        revert_head(model, composition_state(model), name)
        return model

    def combine(self, model: Any, parts: list[tuple[str, Module]], directory: Path) -> dict[str, Any]:
        """One stacked module: every part's adapter sets in composition order (language → task), one file.

        Stacked bottlenecks are non-linear in each other, so they stay separate sets (``stack.<j>.``)
        run in the same order as the parts composed one by one.
        """
        # deferred: keeps torch and safetensors off `langgraft --help`
        from safetensors.torch import save_file

        weights, stack, sizes = {}, [], []
        for _, module in parts:
            source = self._weights(module)
            for prefix, config, role in _adapter_sets(module):
                target = f"stack.{len(stack)}."
                weights.update({target + key[len(prefix):]: value for key, value in source.items()
                                if key.startswith(prefix)})
                entry = {**dataclasses.asdict(config), "role": role}
                del entry["stack"]
                stack.append(entry)
                sizes.append(_size(config, role))
        save_file(weights, str(directory / WEIGHTS_FILE), metadata={"format": "langgraft-madx"})
        return {"size": {"stack": sizes}, "touches_embeddings": False,
                "config": dataclasses.asdict(MadxConfig(stack=stack))}

    def merge(self, model: Any) -> Any:
        raise UserError("madx adapters are non-linear and cannot be merged into a stock checkpoint; write one "
                        "stacked madx module instead (`langgraft module compose --no-merge`) or load the "
                        "composition with langgraft.adapters.load_composed(model, modules)")
