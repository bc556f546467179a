"""The Python API: train task modules, compose modules onto a model, revert, export.

    from langgraft.adapt.pretrain.language_modules import train_language_module   # trains through pretraining
    lang = train_language_module("sft", "english-model", ["ny.txt"], language="ny", out="ny-sft")
    task = train_task_module("sft", "english-model", "genre.tsv", task="seq-cls", out="genre-sft")
    model, tokenizer = load_composed("english-model", [lang, task])   # θ0 + φ_ny + φ_genre
    model = revert(model, lang)                                        # back to θ0 + φ_genre

Every module is checked against the model (architecture fingerprint, body weights, files, head)
before anything changes, so a bad module leaves the model untouched.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from langgraft.atomic import atomic_dir
from langgraft.digest import sha256_path
from langgraft.errors import UserError
from langgraft.models import load_config, load_language_model, load_tokenizer, resolve_model_path
from langgraft.outputs import check_output

from .base import (HEAD_FILE, Module, ModuleKindConfig, ROLES, SEEDS_FILE, VOCABULARY_DIR, composition_state, get_kind,
                   load_module, make_config, restore_vocabulary, save_vocabulary, swap_vocabulary, unwrap)
from .metadata import ModuleMetadata, check_compatible, embedding_digest, tokenizer_hash
from .tasks import collect_labels, load_task_model, task_collator, task_dataset
from .training import TrainOptions, fit


def work_dir(out: Path) -> Path:
    """Checkpoints of an unfinished run live beside the output, so a rerun resumes from them."""
    return out.with_name(f".{out.name}.work")


def _fit_with(dataset: Any, collator: Any, options: TrainOptions, folder: Path, callbacks: Sequence[Any]) -> Any:
    def run(model: Any, learning_rate: float, kind_callbacks: Sequence[Any], phase: str) -> dict[str, float]:
        return fit(model, dataset, collator, options, folder / phase, options.learning_rate or learning_rate,
                   [*kind_callbacks, *callbacks])

    return run


def seed_module(seed: int) -> None:
    """Module weights are initialised before the Trainer seeds itself: seed them too (determinism)."""
    # deferred: keeps torch, transformers and peft off `langgraft --help`
    from transformers import set_seed

    set_seed(seed)


def resolve_config(kind: str, config: ModuleKindConfig | dict[str, Any] | None) -> ModuleKindConfig:
    if config is None:
        return make_config(kind)
    if isinstance(config, dict):
        return make_config(kind, **config)
    if not isinstance(config, get_kind(kind).config_class):
        raise UserError(f"config {type(config).__name__} does not belong to module kind {kind!r}")
    return config


def write_module(kind_name: str, trained: Any, config: ModuleKindConfig, role: str, head_names: list[str], out: Path,
                  identity: Any, tokenizer: Any, embedding_digest: str, training: dict[str, Any],
                  vocabulary: Any = None, logs: Sequence[Path] = (), overwrite: bool = False,
                  inputs: Sequence[Any] = (), **fields: Any) -> Path:
    kind = get_kind(kind_name)
    with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        saved = kind.save(trained, config, role, head_names, tmp)
        if vocabulary is not None:
            save_vocabulary(tokenizer, vocabulary, tmp)
        for log in logs:  # the training run's metrics.jsonl / loss_curve.png, when it wrote them
            if log.is_file():
                shutil.copy2(log, tmp / log.name)
        ModuleMetadata(
            kind=kind_name, role=role, base_fingerprint=identity.base_fingerprint, body_digest=identity.body_digest,
            embedding_digest=embedding_digest, tokenizer_hash=tokenizer_hash(tokenizer),
            trainable_parameters=trained.trainable_parameters, has_head=bool(head_names),
            has_vocabulary=vocabulary is not None,
            config=dataclasses.asdict(config), training={**training, **trained.stats},
            **saved, **fields,
        ).save(tmp)
    shutil.rmtree(work_dir(out), ignore_errors=True)
    return out


def train_task_module(kind: str, model: str | Path, train: str | Path, *, task: str, out: str | Path,
                      language_module: str | Path | Module | None = None, language: str | None = None,
                      labels: Sequence[str] | None = None, config: ModuleKindConfig | dict[str, Any] | None = None,
                      options: TrainOptions | None = None, callbacks: Sequence[Any] = (),
                      overwrite: bool = False) -> Path:
    """Train a task module (and its head) on labelled ``train`` data; returns ``out``.

    With ``language_module`` (the source language's), it is composed first and stays frozen, so the
    task module learns on top of it (MAD-X stacking; LoRA/SFT additive composition). An existing
    ``out`` is refused before any work unless ``overwrite``.
    """
    # deferred: keeps torch, transformers and peft off `langgraft --help`
    from langgraft.training import check_options, load_dtype

    options = options or TrainOptions()
    check_options(options)
    config = resolve_config(kind, config)
    out = Path(out)
    inputs = [model, train, language_module if not isinstance(language_module, Module) else language_module.path]
    check_output(out, inputs=inputs, overwrite=overwrite)
    labels = list(labels) if labels else collect_labels(task, train)
    tokenizer = load_tokenizer(resolve_model_path(model))
    load = {"dtype": load_dtype(options, load_config(model))}
    if options.attn_implementation:
        load["attn_implementation"] = options.attn_implementation
    classifier, head_names = load_task_model(model, task, labels, seed=options.seed, **load)
    classifier.langgraft_task = task
    identity = composition_state(classifier).identity
    digest = embedding_digest(classifier)
    if language_module is not None:
        source = language_module if isinstance(language_module, Module) else load_module(language_module)
        if source.metadata.role != "language":
            raise UserError(f"{source.path} is a {source.metadata.role} module; --language-module needs a language module")
        classifier = compose(classifier, [source])
        language = language or source.metadata.language
    dataset = task_dataset(task, train, tokenizer, labels, options.max_seq_length)
    fit = _fit_with(dataset, task_collator(task, tokenizer), options, work_dir(out), callbacks)
    seed_module(options.seed)
    trained = get_kind(kind).train(classifier, config, "task", head_names, fit)
    return write_module(kind, trained, config, "task", head_names, out, identity, tokenizer, digest,
                         dataclasses.asdict(options), overwrite=overwrite, inputs=inputs, language=language, task=task,
                         labels=labels)


def train_task_module_seeds(kind: str, model: str | Path, train: str | Path, *, seeds: int, out: str | Path,
                            options: TrainOptions | None = None, overwrite: bool = False, **kwargs: Any) -> Path:
    """Train the same task module ``seeds`` times (seeds ``options.seed``, ``+1``, ...) into one seed set.

    ``out/seed-<n>/`` holds each module and ``out/langgraft_seeds.json`` lists the seeds; ``langgraft
    eval --modules out`` scores every member and reports mean ± sd. Members are trained in a work
    folder beside ``out``: a rerun of the same command keeps the finished members and resumes the
    unfinished one from its checkpoints; ``out`` appears whole when all are done. Other keywords as
    :func:`train_task_module`.
    """

    options = options or TrainOptions()
    if not 1 <= seeds <= 1000:
        raise UserError(f"--seeds {seeds}: give 1 to 1000 training seeds")
    out = Path(out)
    inputs = [i for i in (model, train, kwargs.get("language_module")) if isinstance(i, (str, Path))]
    check_output(out, inputs=inputs, overwrite=overwrite)
    chosen = [options.seed + i for i in range(seeds)]
    staging = work_dir(out)
    plan = json.loads(json.dumps({
        "seeds": chosen, "kind": kind, "model": str(model), "train": str(train),
        "options": dataclasses.asdict(options),
        "config": dataclasses.asdict(resolve_config(kind, kwargs.get("config"))),
        **{k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items() if k != "config"}}, default=str))
    record = staging / SEEDS_FILE
    if record.is_file() and json.loads(record.read_text(encoding="utf-8")) != plan:
        shutil.rmtree(staging)  # finished members of another command: not reused
    staging.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(plan) + "\n", encoding="utf-8")
    for seed in chosen:
        member = staging / f"seed-{seed}"
        if not member.is_dir():  # a member folder appears only when its module is complete
            train_task_module(kind, model, train, out=member, options=dataclasses.replace(options, seed=seed),
                              **kwargs)
    with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        for seed in chosen:
            (staging / f"seed-{seed}").replace(Path(tmp) / f"seed-{seed}")
        (Path(tmp) / SEEDS_FILE).write_text(json.dumps({"seeds": chosen}) + "\n", encoding="utf-8")
    shutil.rmtree(staging, ignore_errors=True)
    return out


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
        for module in loaded:  # a module's own vocabulary (language or composed module) first: the checks see it
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

    loaded = _as_modules(modules)
    task = next((m for m in loaded if m.metadata.role == "task"), None)
    tokenizer = load_tokenizer(resolve_model_path(model))
    if task is None:
        network, _ = load_language_model(model)
    else:
        network, _ = load_task_model(model, task.metadata.task, task.metadata.labels)
    network = compose(network, loaded)
    vocabulary = composition_state(network).vocabulary_backup
    if vocabulary is not None:  # the composed model reads the language module's tokenization
        tokenizer = load_tokenizer(vocabulary[0] / VOCABULARY_DIR)
    return network, tokenizer


def merge_composed(model: Any) -> Any:
    """The plain transformers model computing what ``model`` with its composed modules computes."""
    kinds = {m.metadata.kind for m in composition_state(model).applied.values()}
    for kind in sorted(kinds):
        model = get_kind(kind).merge(model)
    return unwrap(model)


def export_merged(model: Any, tokenizer: Any, out: str | Path, overwrite: bool = False,
                  inputs: Sequence[Any] = ()) -> Path:
    """Write a stock transformers checkpoint computing the composed function (lora and sft modules)."""

    merged = merge_composed(model)
    with atomic_dir(Path(out), overwrite=overwrite, inputs=inputs) as tmp:
        merged.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return Path(out)


def export_module(model: Any, tokenizer: Any, out: str | Path, overwrite: bool = False,
                  inputs: Sequence[Any] = ()) -> Path:
    """Write the modules composed onto ``model`` as ONE module of their kind, loadable on the untouched base.

    lora: one PEFT adapter (ranks concatenated, PEFT's ``cat``); sft: one sparse file φ = Σ φ_i;
    madx: one stacked module (language → task). The head and a carried vocabulary come along; the
    metadata lists the parts (``parts``).
    """

    state = composition_state(model)
    parts = list(state.applied.items())  # composition order: language modules first
    if not parts:
        raise UserError("no module is composed onto this model; compose modules before exporting them")
    kinds = sorted({module.metadata.kind for _, module in parts})
    if len(kinds) > 1:
        raise UserError(f"modules of different kinds ({', '.join(kinds)}) cannot form one module; "
                        "write a merged checkpoint instead (--merge)")
    task = next((module for _, module in parts if module.metadata.role == "task"), None)
    languages = [m.metadata.language for _, m in parts if m.metadata.role == "language" and m.metadata.language]
    with atomic_dir(Path(out), overwrite=overwrite, inputs=inputs) as tmp:
        saved = get_kind(kinds[0]).combine(model, parts, tmp)
        if task is not None and (task.path / HEAD_FILE).is_file():
            shutil.copyfile(task.path / HEAD_FILE, tmp / HEAD_FILE)
        if state.vocabulary_backup is not None:
            shutil.copytree(state.vocabulary_backup[0] / VOCABULARY_DIR, tmp / VOCABULARY_DIR)
        ModuleMetadata(
            kind=kinds[0], role="task" if task else "language", base_fingerprint=state.identity.base_fingerprint,
            body_digest=state.identity.body_digest, embedding_digest=state.identity.embedding_digest,
            tokenizer_hash=tokenizer_hash(tokenizer) or parts[0][1].metadata.tokenizer_hash,
            language="+".join(dict.fromkeys(languages)) or (task.metadata.language if task else None),
            task=task.metadata.task if task else None, labels=list(task.metadata.labels) if task else [],
            trainable_parameters=sum(m.metadata.trainable_parameters for _, m in parts),
            has_head=task is not None, has_vocabulary=state.vocabulary_backup is not None,
            parts=[_part_record(module) for _, module in parts], **saved,
        ).save(tmp)
    return Path(out)


def _part_record(module: Module) -> dict[str, Any]:
    """What a composed module keeps of each part: which module, trained on which base, with which files."""

    meta = module.metadata
    return {"name": module.path.name, "path": str(module.path.resolve()), "kind": meta.kind, "role": meta.role,
            "language": meta.language, "task": meta.task, "size": meta.size,
            "base_fingerprint": meta.base_fingerprint, "body_digest": meta.body_digest,
            "embedding_digest": meta.embedding_digest, "tokenizer_hash": meta.tokenizer_hash,
            "content_digest": sha256_path(module.path)[:16]}


def write_composition(model: str | Path, modules: Sequence[str | Path | Module], out: str | Path, *,
                      merge: bool = True, overwrite: bool = False) -> Path:
    """Compose ``modules`` onto ``model`` and write the result (what ``langgraft module compose`` runs).

    ``merge=True``: a stock transformers checkpoint with the modules folded in (lora, sft).
    ``merge=False``: one module of the modules' kind (:func:`export_module`) for the untouched base.
    An existing ``out`` is refused before any work unless ``overwrite``.
    """
    inputs = [model, *(module.path if isinstance(module, Module) else module for module in modules)]
    check_output(out, inputs=inputs, overwrite=overwrite)
    network, tokenizer = load_composed(model, modules)
    export = export_merged if merge else export_module
    return export(network, tokenizer, out, overwrite=overwrite, inputs=inputs)


def module_info(path: str | Path) -> dict[str, Any]:
    """The metadata of a module directory as a dict (``langgraft module info``)."""
    return dataclasses.asdict(load_module(path).metadata)
