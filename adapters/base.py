"""The one interface every module kind implements, and the registry that finds kinds by name.

A *module* is a directory: ``langgraft_module.json`` (:class:`~.metadata.ModuleMetadata`), the
kind's own weight files, and for task modules the classification head. A kind (``lora``,
``sft``, ``madx``) is a :class:`ModuleKind` subclass with a config dataclass in a module of its
own, registered there with :func:`register_kind` — the same shape as PEFT's ``tuners/<method>/``.
This file never imports a kind: the package (``adapters/__init__.py``, the edge) imports them.

Composition state (which modules are applied, the model's identity before any of them, backups of
replaced heads) lives on the underlying transformers model as ``model.langgraft_state`` so
``revert`` can undo exactly what ``apply`` did.
"""
from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from langgraft.errors import UserError
from langgraft.models import unwrap
from langgraft.options import validate

from .metadata import ModelIdentity, ModuleMetadata, embedding_digest

HEAD_FILE = "head.safetensors"
VOCABULARY_DIR = "vocabulary"  # a language module's own tokenizer + input-embedding table
ROLES = ("language", "task")
SEEDS_FILE = "langgraft_seeds.json"  # a seed set: the same module trained once per seed, in seed-<n>/ folders


@dataclass
class ModuleKindConfig:
    """Base of every kind's config dataclass (each kind adds its own fields)."""


@dataclass
class TrainedModule:
    """What a kind's ``train`` hands to its ``save``: the trained model and training statistics.

    A kind that hands more to its ``save`` subclasses this with declared fields.
    """

    model: Any
    trainable_parameters: int
    stats: dict[str, float] = field(default_factory=dict)


# fit(model, learning_rate, callbacks, phase) -> {"train_seconds": ..., "train_loss": ...}; ``phase``
# names the checkpoint sub-directory, so multi-phase kinds (sft) resume each phase separately.
Fit = Callable[[Any, float, Sequence[Any], str], dict[str, float]]


class ModuleKind(ABC):
    """One module method: train, save, apply (compose) and revert.

    ``parameter_markers``: substrings of the names of the parameters the kind adds to a model
    (``lora_``, ``madx_``), so :func:`body_parameters` can tell them from the base model's.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModuleKindConfig]]
    default_learning_rate: ClassVar[float]
    parameter_markers: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def train(self, model: Any, config: ModuleKindConfig, role: str, head_names: list[str], fit: Fit) -> TrainedModule:
        """Make ``model`` trainable the kind's way (base frozen), run ``fit``, return the result."""

    @abstractmethod
    def save(self, trained: TrainedModule, config: ModuleKindConfig, role: str, head_names: list[str],
             directory: Path) -> dict[str, Any]:
        """Write the kind's files into ``directory``; return metadata fields (``size``, ``touches_embeddings``)."""

    @abstractmethod
    def apply(self, model: Any, module: "Module", name: str) -> Any:
        """Add ``module`` to ``model`` under ``name``; return the (possibly wrapped) model."""

    @abstractmethod
    def revert(self, model: Any, module: "Module", name: str) -> Any:
        """Undo :meth:`apply`; return the (possibly unwrapped) model."""

    def merge(self, model: Any) -> Any:
        """A plain transformers model computing the same function (for stock checkpoints)."""
        return model

    def validate(self, module: "Module", model: Any) -> None:
        """Check the module's files against ``model`` before anything changes (default: nothing)."""

    def combine(self, model: Any, parts: list[tuple[str, "Module"]], directory: Path) -> dict[str, Any]:
        """Write ``parts`` (composed onto ``model``, as ``(name, module)``) as ONE module of this kind.

        Writes the kind's files into ``directory`` and returns metadata fields (``size``,
        ``touches_embeddings``, ``config``). Kinds without a combined format keep this default.
        """
        raise UserError(f"{self.name} modules cannot be combined into one module; "
                        "write a merged checkpoint instead (--merge)")


MODULE_KINDS: dict[str, type[ModuleKind]] = {}  # filled by the kinds' modules, imported by the package (the edge)


def register_kind(cls: type[ModuleKind]) -> type[ModuleKind]:
    """Class decorator: make a kind available by its ``name``; a name registered twice is a ``ValueError``."""
    if cls.name in MODULE_KINDS:
        taken = MODULE_KINDS[cls.name]
        raise ValueError(f"module kind {cls.name!r} is registered twice: by {taken.__module__}.{taken.__qualname__} "
                         f"and by {cls.__module__}.{cls.__qualname__}; give one of them another name")
    MODULE_KINDS[cls.name] = cls
    return cls


def get_kind(name: str) -> ModuleKind:
    if name not in MODULE_KINDS:
        raise UserError(f"unknown module kind {name!r}; choose one of {', '.join(sorted(MODULE_KINDS))}")
    return MODULE_KINDS[name]()


def make_config(kind: str, **overrides: Any) -> ModuleKindConfig:
    """The kind's config with ``overrides`` (unknown fields, wrong types and values out of range are a :class:`UserError`)."""
    config_class = get_kind(kind).config_class
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"module kind {kind!r} has no option {unknown[0]!r}; options: {', '.join(sorted(known))}")
    config = config_class(**overrides)
    validate(config)
    return config


@dataclass
class Module:
    """A module directory loaded for composition (weights are read lazily by the kind)."""

    path: Path
    metadata: ModuleMetadata

    @property
    def kind(self) -> ModuleKind:
        return get_kind(self.metadata.kind)

    @property
    def config(self) -> ModuleKindConfig:
        return make_config(self.metadata.kind, **self.metadata.config)

    @property
    def label(self) -> str:
        return f"{self.path} ({self.metadata.kind} {self.metadata.role} module)"


def seed_set_members(path: str | Path) -> list[tuple[int, Path]] | None:
    """``[(seed, member directory), ...]`` of a seed set written by ``train-task --seeds``; None for one module."""
    manifest = Path(path) / SEEDS_FILE
    if not manifest.is_file():
        return None
    try:
        seeds = json.loads(manifest.read_text(encoding="utf-8"))["seeds"]
        members = [(int(seed), Path(path) / f"seed-{int(seed)}") for seed in seeds]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{manifest} is not a seed-set manifest ({{\"seeds\": [0, 1, ...]}}); retrain with "
                        "`langgraft module train-task --seeds N`") from None
    if not members:
        raise UserError(f"{manifest} lists no seeds; retrain with `langgraft module train-task --seeds N`")
    return members


def load_module(path: str | Path) -> Module:
    """Read a module directory's metadata and check that its kind's files are present."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"module directory {path} not found; check the path")
    module = Module(path, ModuleMetadata.load(path))
    if module.metadata.role not in ROLES:
        raise UserError(f"{path}: unknown module role {module.metadata.role!r}; the metadata is corrupted")
    get_kind(module.metadata.kind)
    if module.metadata.role == "task" and not module.metadata.has_head:
        raise UserError(f"task module {path} has no classification head; retrain it with `langgraft module train-task`")
    return module


@dataclass
class CompositionState:
    """What has been composed onto a model, so it can be checked and reverted."""

    identity: ModelIdentity
    applied: dict[str, Module] = field(default_factory=dict)
    head_backups: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (module path, replaced embedding module, replaced vocab_size, replaced embedding digest)
    vocabulary_backup: tuple[Path, Any, int, str] | None = None


def composition_state(model: Any) -> CompositionState:
    inner = unwrap(model)
    state = getattr(inner, "langgraft_state", None)
    if state is None:
        state = CompositionState(ModelIdentity.of(inner))
        inner.langgraft_state = state
    return state


def relative_name(model: Any, name: str) -> str | None:
    """``name`` relative to the base model (``bert.encoder...`` -> ``encoder...``), None outside it."""
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and name.startswith(prefix + "."):
        return name[len(prefix) + 1:]
    if not prefix or not hasattr(model, prefix):
        return name
    return None


# ----- task heads, stored whole (shared by the kinds that do not keep heads in their own format)

def save_head(model: Any, head_names: list[str], directory: Path) -> None:
    # deferred: keeps torch and safetensors off `langgraft --help`
    from safetensors.torch import save_file

    parameters = dict(model.named_parameters())
    save_file({name: parameters[name].detach().contiguous().cpu() for name in head_names}, str(directory / HEAD_FILE))


def read_module_tensors(module: Module, filename: str, *, owner: str, missing: str, what: str,
                        fix: str) -> dict[str, Any]:
    """A module's safetensors file, or one clear line when it is missing or unreadable."""
    # deferred: keeps torch and safetensors off `langgraft --help`
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = module.path / filename
    if not path.is_file():
        raise UserError(f"{owner} module {module.path} has no {filename}; {missing}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: corrupted {what} file ({exc}); {fix}") from None


def check_head(module: Module, model: Any) -> dict[str, Any]:
    """The module's head tensors, checked against ``model`` (names and shapes)."""
    head = read_module_tensors(module, HEAD_FILE, owner="task", missing="the head is missing, retrain the module",
                               what="head", fix="retrain the module")
    parameters = dict(unwrap(model).named_parameters())
    for key, value in head.items():
        if key not in parameters or parameters[key].shape != value.shape:
            raise UserError(
                f"task module {module.path} has head tensor {key} {tuple(value.shape)} that this model lacks; "
                f"load the model with the module's task ({module.metadata.task}) and "
                f"{len(module.metadata.labels)} labels")
    return head


def apply_head(model: Any, module: Module, state: CompositionState, name: str) -> None:
    """Copy the module's head into ``model`` (backing up the current values for revert)."""
    # deferred: keeps torch off `langgraft --help`
    import torch

    head = check_head(module, model)
    parameters = dict(unwrap(model).named_parameters())
    backup = {}
    with torch.no_grad():
        for key, value in head.items():
            backup[key] = parameters[key].detach().clone()
            parameters[key].copy_(value)
    state.head_backups[name] = backup


def revert_head(model: Any, state: CompositionState, name: str) -> None:
    # deferred: keeps torch off `langgraft --help`
    import torch

    parameters = dict(unwrap(model).named_parameters())
    with torch.no_grad():
        for key, value in state.head_backups.pop(name, {}).items():
            parameters[key].copy_(value)


def body_parameters(model: Any) -> dict[str, Any]:
    """Base-model parameters by name relative to the base model, without any module's own weights.

    A module's own weights are those whose names carry a registered kind's ``parameter_markers``.
    PEFT's ``.base_layer`` segment is dropped, so names are the same with or without LoRA applied.
    """
    inner = unwrap(model)
    markers = tuple(marker for kind in MODULE_KINDS.values() for marker in kind.parameter_markers)
    parameters = {}
    for name, parameter in inner.named_parameters():
        relative = relative_name(inner, name)
        if relative is None or any(marker in relative for marker in markers):
            continue
        parameters[relative.replace(".base_layer", "").replace(".original_module", "")] = parameter
    return parameters


# ----- a language module's own vocabulary (tokenizer + input embeddings), swapped in on composition

def save_vocabulary(tokenizer: Any, input_embeddings: Any, directory: Path) -> None:
    # deferred: keeps torch and safetensors off `langgraft --help`
    from safetensors.torch import save_file

    target = directory / VOCABULARY_DIR
    target.mkdir()
    tokenizer.save_pretrained(str(target))
    save_file({"input_embeddings": input_embeddings.detach().contiguous().cpu()}, str(target / "embeddings.safetensors"))


def swap_vocabulary(model: Any, module: Module, state: CompositionState) -> bool:
    """Install ``module``'s embedding table if it carries one the model lacks; return whether it did."""
    # deferred: keeps torch and safetensors off `langgraft --help`
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not module.metadata.has_vocabulary or state.identity.embedding_digest == module.metadata.embedding_digest:
        return False
    if state.vocabulary_backup is not None:
        raise UserError(f"{module.path} brings its own vocabulary but {state.vocabulary_backup[0]} already replaced "
                        "the embeddings; compose one vocabulary-carrying language module at a time")
    inner = unwrap(model)
    if inner.get_output_embeddings() is not None:
        raise UserError(f"{module.path} brings its own vocabulary, which is swapped into task models only; for "
                        "language modelling load the checkpoint the module was trained on")
    path = module.path / VOCABULARY_DIR / "embeddings.safetensors"
    try:
        table = load_file(str(path))["input_embeddings"]
    except (SafetensorError, OSError, KeyError) as exc:
        raise UserError(f"{path}: missing or corrupted vocabulary ({exc}); retrain the module") from None
    old = inner.get_input_embeddings()
    if table.dim() != 2 or table.shape[1] != old.embedding_dim:
        raise UserError(f"{path}: embedding width {tuple(table.shape)} does not fit this model "
                        f"({old.embedding_dim}); use the base the module was trained on")
    new = torch.nn.Embedding(table.shape[0], table.shape[1], padding_idx=old.padding_idx, dtype=old.weight.dtype,
                             device=old.weight.device)
    with torch.no_grad():
        new.weight.copy_(table)
    new.requires_grad_(old.weight.requires_grad)
    inner.set_input_embeddings(new)
    state.vocabulary_backup = (module.path, old, inner.config.vocab_size, state.identity.embedding_digest)
    inner.config.vocab_size = table.shape[0]
    state.identity.embedding_digest = embedding_digest(inner)
    return True


def restore_vocabulary(model: Any, state: CompositionState) -> None:
    """Undo :func:`swap_vocabulary`."""
    if state.vocabulary_backup is None:
        return
    _, old, vocab_size, digest = state.vocabulary_backup
    inner = unwrap(model)
    inner.set_input_embeddings(old)
    inner.config.vocab_size = vocab_size
    state.identity.embedding_digest = digest
    state.vocabulary_backup = None
