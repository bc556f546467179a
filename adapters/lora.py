"""``lora``: PEFT LoRA modules; the saved directory is a stock PEFT adapter.

Targets are every linear layer of the transformer layer stack, written as one regex in
``adapter_config.json`` so the same adapter attaches to the MLM/CLM model it was trained with and
to a classifier built on the same body. Task heads are PEFT ``modules_to_save``. Several modules
are active at once through ``model.base_model.set_adapter([...])`` — LoRA updates add up.

The module being trained is PEFT's ``default`` adapter and is saved alone
(``selected_adapters=["default"]``), so the directory has the top-level layout
``PeftModel.from_pretrained`` expects. langgraft never uses ``trainable_token_indices``, which
avoids PEFT 0.21's ``save_pretrained`` KeyError when only one of two adapters has them.
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from langgraft.errors import UserError
from langgraft.options import option
from langgraft.sidecars import read_sidecar

from .base import Fit, Module, ModuleKindConfig, ModuleKind, TrainedModule, composition_state, unwrap, register_kind
from .metadata import find_layer_stack
from .training import count_trainable, freeze

TRAINING_ADAPTER = "default"
_PEFT_TASK_TYPES = {"seq-cls": "SEQ_CLS", "token-cls": "TOKEN_CLS"}


@dataclass
class LoraModuleConfig(ModuleKindConfig):
    rank: int = option(8, help="lora: rank of the update matrices", gt=0)
    alpha: int = option(16, help="lora: scaling numerator (update scaled by alpha / rank)", gt=0)
    dropout: float = option(0.05, help="lora: dropout on the adapter input", ge=0, lt=1)


def _is_linear(module: Any) -> bool:
    # deferred: keeps torch, transformers and safetensors off `langgraft --help`
    import torch.nn as nn
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def target_regex(model: Any) -> str:
    """A regex matching every linear layer inside the layer stack, by its path from the stack."""
    inner = unwrap(model)
    stack = find_layer_stack(inner)
    stack_path = next(name for name, module in inner.named_modules() if module is stack)
    prefix = getattr(inner, "base_model_prefix", "")
    if prefix and stack_path.startswith(prefix + "."):
        stack_path = stack_path[len(prefix) + 1:]
    leaves = sorted({name.replace(".base_layer", "") for name, module in stack[0].named_modules()
                     if _is_linear(module) and "lora_" not in name})
    if not leaves:
        raise UserError(f"{type(inner).__name__} has no linear layers in its layer stack for LoRA")
    return rf"^(.*\.)?{re.escape(stack_path)}\.\d+\.({'|'.join(map(re.escape, leaves))})$"


# The heads PEFT's SEQ_CLS / TOKEN_CLS task types put in ``modules_to_save`` on their own.
_PEFT_TASK_HEADS = ("classifier", "score")


def _head_modules(head_names: list[str]) -> list[str]:
    """The outermost modules holding the head's parameters.

    PEFT wraps every listed module in its own copy; a module inside another listed one (RoBERTa's
    ``classifier.dense`` inside ``classifier``, which PEFT's task types list themselves) would be
    wrapped twice, and the saved adapter would not load (KeyError in ``set_peft_model_state_dict``).
    """
    modules = {name.rpartition(".")[0] for name in head_names}
    outer = modules | set(_PEFT_TASK_HEADS)
    return sorted(m for m in modules if not any(m.startswith(f"{other}.") for other in outer))


@contextmanager
def _peft_wrapping() -> Iterator[None]:
    """PEFT 0.21 reads transformers 5's deprecated ``is_gradient_checkpointing`` each time it wraps a model;
    that FutureWarning is theirs and says nothing a langgraft user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def lora_adapter_names(model: Any) -> list[str]:
    return list(getattr(model, "peft_config", {}))


def _delete_adapter(model: Any, name: str) -> Any:
    """Remove one adapter; once none is left, the plain model with its original heads.

    PEFT hands the adapters still active to every head wrapper (``modules_to_save``), which takes one
    at most, and ``unload()`` keeps an active adapter's copy of the head: so delete with at most one
    other adapter active, and unload only when no adapter is left.
    """
    remaining = [other for other in lora_adapter_names(model) if other != name]
    if remaining:
        model.base_model.set_adapter(remaining[0], inference_mode=True)
    model.delete_adapter(name)
    if not remaining:
        return model.unload()
    model.base_model.set_adapter(remaining, inference_mode=True)
    return model


def _layer_features(layer: Any) -> tuple[int, int]:
    """(in, out) features of a linear layer (``Conv1D`` stores its weight as in x out)."""
    # deferred: keeps torch off `langgraft --help`
    import torch.nn as nn

    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return tuple(layer.weight.shape)  # type: ignore[return-value]


def _check_shapes(module: Module, shapes: dict[str, tuple[int, ...]], model: Any) -> None:
    """Every ``lora_A`` (r x in) / ``lora_B`` (out x r) must fit the layer it targets in ``model``."""
    layers = {name.replace(".base_layer", ""): layer for name, layer in unwrap(model).named_modules()
              if _is_linear(layer)}
    for key, shape in shapes.items():
        stem, separator, suffix = key.rpartition(".lora_")
        if not separator or suffix not in ("A.weight", "B.weight"):
            continue
        target = stem.removeprefix("base_model.model.")
        if target not in layers:
            raise UserError(f"lora module {module.path} targets {target}, which this model lacks; "
                            "use the base model the module was trained on")
        features_in, features_out = _layer_features(layers[target])
        partner = shapes.get(f"{stem}.lora_{'B' if suffix[0] == 'A' else 'A'}.weight", ())
        rank = shape[0] if suffix[0] == "A" else shape[1]
        expected = (rank, features_in) if suffix[0] == "A" else (features_out, rank)
        if shape != expected or (partner and rank != (partner[1] if suffix[0] == "A" else partner[0])):
            raise UserError(f"lora module {module.path} has {key} of shape {list(shape)} but layer {target} is "
                            f"{features_in} -> {features_out} in this model; the module was trained on another base")


@register_kind
class LoraKind(ModuleKind):
    name = "lora"
    config_class = LoraModuleConfig
    default_learning_rate = 5e-4
    parameter_markers = ("lora_", "modules_to_save")  # PEFT's adapter weights and its copies of task heads

    def train(self, model: Any, config: LoraModuleConfig, role: str, head_names: list[str], fit: Fit) -> TrainedModule:
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from peft import LoraConfig, PeftModel, get_peft_model

        task = getattr(model, "langgraft_task", None) or getattr(unwrap(model), "langgraft_task", None)
        peft_config = LoraConfig(
            r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=target_regex(model),
            modules_to_save=_head_modules(head_names) or None,
            task_type=_PEFT_TASK_TYPES.get(task) if role == "task" else None,
        )
        if isinstance(model, PeftModel):
            if TRAINING_ADAPTER in model.peft_config:
                raise UserError("a LoRA module named 'default' is already applied; compose it under another name")
            model.add_adapter(TRAINING_ADAPTER, peft_config)
            model.base_model.set_adapter(lora_adapter_names(model))
        else:
            with _peft_wrapping():
                model = get_peft_model(model, peft_config)
        freeze(model)
        for name, parameter in model.named_parameters():
            if f".{TRAINING_ADAPTER}." in name or name.endswith(f".{TRAINING_ADAPTER}"):
                parameter.requires_grad_(True)
        trainable = count_trainable(model)
        stats = fit(model, self.default_learning_rate, [], "train")
        return TrainedModule(model, trainable, stats)

    def save(self, trained: TrainedModule, config: LoraModuleConfig, role: str, head_names: list[str],
             directory: Path) -> dict[str, Any]:
        trained.model.save_pretrained(str(directory), selected_adapters=[TRAINING_ADAPTER])
        return {"size": {"rank": config.rank, "alpha": config.alpha}, "touches_embeddings": False}

    def validate(self, module: Module, model: Any) -> None:
        # deferred: keeps safetensors off `langgraft --help`
        from safetensors import SafetensorError, safe_open

        path = module.path / "adapter_model.safetensors"
        if not path.is_file() or not (module.path / "adapter_config.json").is_file():
            raise UserError(f"lora module {module.path} lacks adapter_config.json/adapter_model.safetensors; "
                            "the module is incomplete")
        try:
            with safe_open(str(path), framework="pt") as handle:
                keys = list(handle.keys())
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in keys}
        except (SafetensorError, OSError) as exc:
            raise UserError(f"{path}: corrupted adapter file ({exc}); retrain or restore the module") from None
        _check_shapes(module, shapes, model)
        if module.metadata.role == "task" and all("lora_" in key for key in keys):
            raise UserError(f"task module {module.path} has no head in its adapter; retrain it with "
                            "`langgraft module train-task`")
        if module.metadata.role == "task":
            labels = len(unwrap(model).config.id2label or {})
            if labels != len(module.metadata.labels):
                raise UserError(f"task module {module.path} has {len(module.metadata.labels)} labels but the model "
                                f"has a head with {labels}; load the model for the module's labels")
        self._check_ranks(module, model)

    def _check_ranks(self, module: Module, model: Any) -> None:
        """Overlapping targets must agree on rank with any LoRA module already applied (PEFT merges per layer)."""
        config = read_adapter_config(module.path)
        for name, other in composition_state(model).applied.items():
            if other.metadata.kind != "lora":
                continue
            other_config = read_adapter_config(other.path)
            if other_config.get("target_modules") == config.get("target_modules") and \
                    other_config.get("use_dora", False) != config.get("use_dora", False):
                raise UserError(f"lora module {module.path} and {other.path} target the same layers but one uses "
                                "DoRA, whose updates do not add; retrain one without DoRA")
            if other_config.get("target_modules") == config.get("target_modules") and \
                    other_config.get("fan_in_fan_out") != config.get("fan_in_fan_out"):
                raise UserError(f"lora module {module.path} and {other.path} store the same layers with different "
                                "fan_in_fan_out; they were trained on different model families")

    def apply(self, model: Any, module: Module, name: str) -> Any:
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from peft import PeftModel

        state = composition_state(model)
        headed = [(n, m) for n, m in state.applied.items() if m.metadata.kind == "lora" and m.metadata.has_head]
        if isinstance(model, PeftModel) and headed and not module.metadata.has_head:
            # PEFT raises KeyError loading a headless adapter after one with modules_to_save: rebuild,
            # headless (language) adapters first.
            others = [(n, m) for n, m in state.applied.items() if m.metadata.kind == "lora"]
            for other_name, _ in others:
                model = _delete_adapter(model, other_name)  # not unload(): it would keep the task's head
            for other_name, other in sorted([(name, module), *others], key=lambda item: item[1].metadata.has_head):
                model = self._load(model, other, other_name)
            return model
        return self._load(model, module, name)

    @staticmethod
    def _load(model: Any, module: Module, name: str) -> Any:
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model.load_adapter(str(module.path), adapter_name=name, is_trainable=False)
        else:
            with _peft_wrapping():
                model = PeftModel.from_pretrained(model, str(module.path), adapter_name=name, is_trainable=False)
        model.base_model.set_adapter(lora_adapter_names(model), inference_mode=True)
        return model

    def revert(self, model: Any, module: Module, name: str) -> Any:
        return _delete_adapter(model, name)

    def combine(self, model: Any, parts: list[tuple[str, Module]], directory: Path) -> dict[str, Any]:
        """One PEFT adapter for the ``parts`` active on ``model``: PEFT's ``add_weighted_adapter(..., "cat")``.

        Ranks are concatenated with each adapter's scaling folded in (B·A = Σ s_i·B_i·A_i, a layer
        targeted by only some parts gets zero blocks for the others), so the one adapter computes
        exactly what the parts compute together. The head-carrying adapter goes first: PEFT copies its
        config (``modules_to_save``, task type); its trained head is then copied into the new adapter.
        """

        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from peft.utils import ModulesToSaveWrapper

        configs = {name: model.peft_config[name] for name, _ in parts}
        for name, module in parts:
            if configs[name].use_dora or configs[name].use_rslora:
                raise UserError(f"lora module {module.path} uses {'DoRA' if configs[name].use_dora else 'rsLoRA'}, "
                                "which PEFT's rank concatenation does not reproduce; merge instead (--merge)")
        if TRAINING_ADAPTER in model.peft_config:
            raise UserError(f"a LoRA adapter named {TRAINING_ADAPTER!r} is already on this model; "
                            "compose the modules onto a freshly loaded base")
        names = [name for name, _ in sorted(parts, key=lambda part: not part[1].metadata.has_head)]
        model.add_weighted_adapter(names, [1.0] * len(names), TRAINING_ADAPTER, combination_type="cat")
        try:
            combined = model.peft_config[TRAINING_ADAPTER]
            if len({str(config.target_modules) for config in configs.values()}) == 1:
                combined.target_modules = configs[names[0]].target_modules  # not "(re)|(re)"
            for wrapper in model.modules():
                if isinstance(wrapper, ModulesToSaveWrapper) and TRAINING_ADAPTER in wrapper.modules_to_save:
                    trained = wrapper.modules_to_save[next(name for name in names if name in wrapper.modules_to_save)]
                    wrapper.modules_to_save[TRAINING_ADAPTER].load_state_dict(trained.state_dict())
            model.save_pretrained(str(directory), selected_adapters=[TRAINING_ADAPTER])
        finally:
            _delete_adapter(model, TRAINING_ADAPTER)  # the parts stay, active together
        config = LoraModuleConfig(rank=combined.r, alpha=combined.lora_alpha, dropout=combined.lora_dropout)
        return {"size": {"rank": config.rank, "alpha": config.alpha}, "touches_embeddings": False,
                "config": dataclasses.asdict(config)}

    def merge(self, model: Any) -> Any:
        # deferred: keeps torch, transformers and peft off `langgraft --help`
        from peft import PeftModel

        return model.merge_and_unload() if isinstance(model, PeftModel) else model


def read_adapter_config(module_dir: Path) -> dict[str, Any]:
    """The PEFT ``adapter_config.json`` of a LoRA module, or one line saying what is wrong with it."""
    return read_sidecar(module_dir / "adapter_config.json", "the LoRA adapter config",
                        "retrain the module with `langgraft module train-language/train-task`")
