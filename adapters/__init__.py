"""Composable language and task modules: LoRA, Lottery-Ticket sparse fine-tuning, MAD-X adapters.

Train a task module once on the source language, a language module once per language
(:mod:`langgraft.adapt.pretrain.language_modules`: language modules train through continued pretraining),
and compose them at inference. See ``docs/adapters.md``. Importing this package does not import
torch; the kinds import it when they run.
"""
from __future__ import annotations

from .base import (MODULE_KINDS, Module, ModuleKindConfig, ModuleKind, get_kind, load_module, make_config, register_kind,
                   seed_set_members)
from .compose import (compose, export_merged, export_module, load_composed, merge_composed, module_info, revert,
                      train_task_module, train_task_module_seeds, write_composition)
# The edge: each kind's module registers the kind when imported; base.py never imports a kind.
# Adding a kind: one new module beside these that subclasses ModuleKind under @register_kind, imported here.
from .lora import LoraModuleConfig
from .madx import MadxConfig
from .metadata import ModuleMetadata
from .sft import SftConfig
from .training import TrainOptions

__all__ = [
    "MODULE_KINDS", "LoraModuleConfig", "MadxConfig", "Module", "ModuleKindConfig", "ModuleKind", "ModuleMetadata",
    "SftConfig", "TrainOptions", "compose", "export_merged", "export_module", "get_kind", "load_composed",
    "load_module", "make_config", "merge_composed", "module_info", "register_kind", "revert", "seed_set_members",
    "train_task_module", "train_task_module_seeds", "write_composition",
]
