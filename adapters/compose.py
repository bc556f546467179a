"""The Python API: train language and task modules, compose them onto a model, revert, export.

    lang = train_language_module("sft", "english-model", ["ny.txt"], language="ny", out="ny-sft")
    task = train_task_module("sft", "english-model", "genre.tsv", task="seq-cls", out="genre-sft")
    model, tokenizer = load_composed("english-model", [lang, task])   # θ0 + φ_ny + φ_genre
    model = revert(model, lang)                                        # back to θ0 + φ_genre

Every module is checked against the model (architecture fingerprint, body weights, files, head)
before anything changes, so a bad module leaves the model untouched.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Sequence

from langgraft.errors import UserError

from .base import (ROLES, VOCABULARY_DIR, Module, ModuleConfig, composition_state, get_kind, load_module,
                   make_config, plain_model, restore_vocabulary, save_vocabulary, swap_vocabulary)
from .metadata import ModuleMetadata, check_compatible, tokenizer_hash
from .training import TrainOptions


def _work_dir(out: Path) -> Path:
    """Checkpoints of an unfinished run live beside the output, so a rerun resumes from them."""
    return out.with_name(f".{out.name}.work")


def _fit_with(dataset: Any, collator: Any, options: TrainOptions, work_dir: Path, callbacks: Sequence[Any]) -> Any:
    from .training import fit

    def run(model: Any, learning_rate: float, kind_callbacks: Sequence[Any], stage: str) -> dict[str, float]:
        return fit(model, dataset, collator, options, work_dir / stage, options.learning_rate or learning_rate,
                   [*kind_callbacks, *callbacks])

    return run


def _seed(seed: int) -> None:
    """Module weights are initialised before the Trainer seeds itself: seed them too (determinism)."""
    from transformers import set_seed

    set_seed(seed)


def _resolve_config(kind: str, config: ModuleConfig | dict[str, Any] | None) -> ModuleConfig:
    if config is None:
        return make_config(kind)
    if isinstance(config, dict):
        return make_config(kind, **config)
    if not isinstance(config, get_kind(kind).config_class):
        raise UserError(f"config {type(config).__name__} does not belong to module kind {kind!r}")
    return config


def _write_module(kind_name: str, trained: Any, config: ModuleConfig, role: str, head_names: list[str], out: Path,
                  identity: Any, tokenizer: Any, embedding_digest: str, options: TrainOptions,
                  vocabulary: Any = None, **fields: Any) -> Path:
    from langgraft.atomic import atomic_dir

    kind = get_kind(kind_name)
    with atomic_dir(out) as tmp:
        saved = kind.save(trained, config, role, head_names, tmp)
        if vocabulary is not None:
            save_vocabulary(tokenizer, vocabulary, tmp)
        ModuleMetadata(
            kind=kind_name, role=role, base_fingerprint=identity.base_fingerprint, body_digest=identity.body_digest,
            embedding_digest=embedding_digest, tokenizer_hash=tokenizer_hash(tokenizer),
            trainable_parameters=trained.trainable_parameters, has_head=bool(head_names),
            has_vocabulary=vocabulary is not None,
            config=dataclasses.asdict(config), training={**dataclasses.asdict(options), **trained.stats},
            **saved, **fields,
        ).save(tmp)
    shutil.rmtree(_work_dir(out), ignore_errors=True)
    return out


def train_language_module(kind: str, model: str | Path, corpus: Sequence[str | Path], *, language: str,
                          out: str | Path, config: ModuleConfig | dict[str, Any] | None = None,
                          options: TrainOptions | None = None, callbacks: Sequence[Any] = (),
                          carry_vocabulary: bool = False) -> Path:
    """Train a language module by MLM/CLM on ``corpus`` with the base frozen; returns ``out``.

    ``model`` may be a checkpoint with transferred embeddings (``langgraft init``): the module then
    records that vocabulary, and modules touching embedding rows only compose onto it.
    """
    from langgraft.models import load_tokenizer, resolve_model_path

    from .metadata import embedding_digest
    from .training import is_causal_lm, language_collator, language_dataset, load_lm

    options = options or TrainOptions()
    config = _resolve_config(kind, config)
    out = Path(out)
    tokenizer = load_tokenizer(resolve_model_path(model))
    lm = load_lm(model)
    identity = composition_state(lm).identity
    digest = embedding_digest(lm)
    vocabulary = lm.get_input_embeddings().weight.detach().clone() if carry_vocabulary else None
    dataset = language_dataset(tokenizer, list(corpus), options.max_length)
    collator = language_collator(tokenizer, is_causal_lm(lm.config), options)
    fit = _fit_with(dataset, collator, options, _work_dir(out), callbacks)
    _seed(options.seed)
    trained = get_kind(kind).train(lm, config, "language", [], fit)
    return _write_module(kind, trained, config, "language", [], out, identity, tokenizer, digest, options,
                         vocabulary=vocabulary, language=language)


def train_task_module(kind: str, model: str | Path, train: str | Path, *, task: str, out: str | Path,
                      language_module: str | Path | Module | None = None, language: str | None = None,
                      labels: Sequence[str] | None = None, config: ModuleConfig | dict[str, Any] | None = None,
                      options: TrainOptions | None = None, callbacks: Sequence[Any] = ()) -> Path:
    """Train a task module (and its head) on labelled ``train`` data; returns ``out``.

    With ``language_module`` (the source language's), it is composed first and stays frozen, so the
    task module learns on top of it (MAD-X stacking; LoRA/SFT additive composition).
    """
    from langgraft.models import load_tokenizer, resolve_model_path

    from .metadata import embedding_digest
    from .tasks import collect_labels, load_task_model, task_collator, task_dataset

    options = options or TrainOptions()
    config = _resolve_config(kind, config)
    out = Path(out)
    labels = list(labels) if labels else collect_labels(task, train)
    tokenizer = load_tokenizer(resolve_model_path(model))
    classifier, head_names = load_task_model(model, task, labels, seed=options.seed)
    classifier.langgraft_task = task
    identity = composition_state(classifier).identity
    digest = embedding_digest(classifier)
    if language_module is not None:
        source = language_module if isinstance(language_module, Module) else load_module(language_module)
        if source.metadata.role != "language":
            raise UserError(f"{source.path} is a {source.metadata.role} module; --language-module needs a language module")
        classifier = compose(classifier, [source])
        language = language or source.metadata.language
    dataset = task_dataset(task, train, tokenizer, labels, options.max_length)
    fit = _fit_with(dataset, task_collator(task, tokenizer), options, _work_dir(out), callbacks)
    _seed(options.seed)
    trained = get_kind(kind).train(classifier, config, "task", head_names, fit)
    return _write_module(kind, trained, config, "task", head_names, out, identity, tokenizer, digest, options,
                         language=language, task=task, labels=labels)


def _as_modules(modules: Sequence[str | Path | Module]) -> list[Module]:
    return [m if isinstance(m, Module) else load_module(m) for m in modules]


def compose(model: Any, modules: Sequence[str | Path | Module]) -> Any:
    """Apply ``modules`` (language modules first, then task modules) to ``model``; return the model.

    All modules are checked before any is applied. LoRA modules wrap the model in a ``PeftModel``
    (all active at once); sft adds φ in place; madx attaches adapters. Use the returned object.
    """
    loaded = sorted(_as_modules(modules), key=lambda m: ROLES.index(m.metadata.role))
    state = composition_state(model)
    tasks = [m for m in loaded if m.metadata.role == "task"] + \
        [m for m in state.applied.values() if m.metadata.role == "task"]
    if len(tasks) > 1:
        raise UserError(f"{len(tasks)} task modules given; a model has one head, compose one task module at a time")
    swapped = False
    try:
        for module in loaded:  # a language module's own vocabulary first: the checks see its embeddings
            if module.metadata.role == "language":
                swapped = swap_vocabulary(model, module, state) or swapped
        for module in loaded:
            check_compatible(module.metadata, state.identity, str(module.path))
            module.kind.validate(module, model)
    except UserError:
        if swapped:
            restore_vocabulary(model, state)
        raise
    for module in loaded:
        name = _unique_name(module.metadata.role, state.applied)
        model = module.kind.apply(model, module, name)
        state.applied[name] = module
    model.eval()
    return model


def _unique_name(role: str, taken: dict[str, Module]) -> str:
    index = 0
    while f"{role}_{index}" in taken:
        index += 1
    return f"{role}_{index}"


def revert(model: Any, module: str | Path | Module) -> Any:
    """Remove one composed module (given by its path, :class:`Module` or composition name)."""
    state = composition_state(model)
    target = Path(module.path if isinstance(module, Module) else module)
    name = str(module) if str(module) in state.applied else next(
        (n for n, m in state.applied.items() if m.path.resolve() == target.resolve()), None)
    if name is None:
        raise UserError(f"module {module} is not composed onto this model; applied: {', '.join(state.applied) or 'none'}")
    applied = state.applied.pop(name)
    model = applied.kind.revert(model, applied, name)
    if state.vocabulary_backup is not None and state.vocabulary_backup[0] == applied.path:
        restore_vocabulary(model, state)
    return model


def load_composed(model: str | Path, modules: Sequence[str | Path | Module]) -> tuple[Any, Any]:
    """Load ``model`` with the right head for ``modules`` and compose them; returns ``(model, tokenizer)``."""
    from langgraft.models import load_tokenizer, resolve_model_path

    from .tasks import load_task_model
    from .training import load_lm

    loaded = _as_modules(modules)
    task = next((m for m in loaded if m.metadata.role == "task"), None)
    tokenizer = load_tokenizer(resolve_model_path(model))
    if task is None:
        network = load_lm(model)
    else:
        network, _ = load_task_model(model, task.metadata.task, task.metadata.labels)
    network = compose(network, loaded)
    vocabulary = composition_state(network).vocabulary_backup
    if vocabulary is not None:  # the composed model reads the language module's tokenization
        tokenizer = load_tokenizer(vocabulary[0] / VOCABULARY_DIR)
    return network, tokenizer


def export_merged(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """Write a stock transformers checkpoint computing the composed function (lora and sft modules)."""
    from langgraft.atomic import atomic_dir

    state = composition_state(model)
    kinds = {m.metadata.kind for m in state.applied.values()}
    merged = model
    for kind in sorted(kinds):
        merged = get_kind(kind).merge(merged)
    merged = plain_model(merged)
    with atomic_dir(Path(out)) as tmp:
        merged.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return Path(out)


def module_info(path: str | Path) -> dict[str, Any]:
    """The metadata of a module directory as a dict (``langgraft module info``)."""
    return dataclasses.asdict(load_module(path).metadata)
