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
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from langgraft.adapt.pretrain import PretrainConfig, PretrainResult
from langgraft.errors import UserError

from .base import (ROLES, VOCABULARY_DIR, Module, ModuleConfig, composition_state, get_kind, load_module,
                   make_config, unwrap, restore_vocabulary, save_vocabulary, swap_vocabulary)
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
                  identity: Any, tokenizer: Any, embedding_digest: str, training: dict[str, Any],
                  vocabulary: Any = None, logs: Sequence[Path] = (), **fields: Any) -> Path:
    from langgraft.atomic import atomic_dir

    kind = get_kind(kind_name)
    with atomic_dir(out) as tmp:
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
    shutil.rmtree(_work_dir(out), ignore_errors=True)
    return out


@dataclasses.dataclass
class _LanguageModuleStage:
    """Stage 2' of :func:`langgraft.adapt.pretrain.pretrain`: a kind's language module trains on the frozen base."""

    kind: str
    config: ModuleConfig
    seed: int
    carry_vocabulary: bool

    @property
    def identity(self) -> dict[str, Any]:
        """Recorded in the run and compared on resume: checkpoints of another kind or config do not fit."""
        return json.loads(json.dumps({"kind": self.kind, "config": dataclasses.asdict(self.config)}))

    def __call__(self, model: Any, fit: Any) -> tuple[Any, Any, str, Any]:
        from .metadata import embedding_digest

        identity = composition_state(model).identity  # the base as it is after stage 1
        digest = embedding_digest(model)
        vocabulary = model.get_input_embeddings().weight.detach().clone() if self.carry_vocabulary else None
        _seed(self.seed)
        trained = get_kind(self.kind).train(model, self.config, "language", [], fit)
        return trained, identity, digest, vocabulary


def _run_options(run: PretrainConfig) -> dict[str, Any]:
    """The pretraining options recorded in a module's metadata (no paths)."""
    paths = {"model", "corpus", "out", "eval_corpus", "replay_corpus", "resume", "use_cpu", "report_to"}
    return {key: value for key, value in dataclasses.asdict(run).items() if key not in paths}


def pretrain_language_module(kind: str, run: PretrainConfig, *, language: str, out: str | Path,
                             config: ModuleConfig | dict[str, Any] | None = None,
                             training: dict[str, Any] | None = None, callbacks: Sequence[Any] = (),
                             carry_vocabulary: bool = False, copy_logs: bool = False) -> PretrainResult:
    """Continued pretraining whose stage 2 is a ``kind`` language module (base frozen); the module goes to ``out``.

    ``run`` is a :class:`~langgraft.adapt.pretrain.PretrainConfig`: an optional embeddings-only
    stage first (``embedding_steps``), then the module for ``max_steps - embedding_steps`` steps
    per phase, with packing, dynamic masking, held-out bpc, sealed checkpoints and ``run.resume``.
    ``run.learning_rate`` None means the kind's default. ``training`` is recorded in the module
    metadata (default: the run's options); ``copy_logs`` copies the run's ``metrics.jsonl`` and
    ``loss_curve.png`` into the module. Returns the run's result with ``module`` = ``out``.
    """
    from accelerate import PartialState

    from langgraft.adapt.callbacks import CURVE_FILE, METRICS_FILE
    from langgraft.adapt.pretrain import pretrain
    from langgraft.models import load_tokenizer, resolve_model_path

    config = _resolve_config(kind, config)
    result = pretrain(run, language_module=_LanguageModuleStage(kind, config, run.seed, carry_vocabulary),
                      callbacks=callbacks)
    out = Path(out)
    if PartialState().is_main_process:
        trained, identity, digest, vocabulary = result.module
        tokenizer = load_tokenizer(resolve_model_path(run.model))
        logs = [Path(run.out) / METRICS_FILE, Path(run.out) / CURVE_FILE] if copy_logs else []
        _write_module(kind, trained, config, "language", [], out, identity, tokenizer, digest,
                      _run_options(run) if training is None else training, vocabulary=vocabulary, logs=logs,
                      language=language)
    PartialState().wait_for_everyone()
    return dataclasses.replace(result, module=out)


def train_language_module(kind: str, model: str | Path, corpus: Sequence[str | Path], *, language: str,
                          out: str | Path, config: ModuleConfig | dict[str, Any] | None = None,
                          options: TrainOptions | None = None, callbacks: Sequence[Any] = (),
                          carry_vocabulary: bool = False, eval_corpus: str | Path | None = None) -> Path:
    """Train a language module by MLM/CLM on ``corpus`` with the base frozen; returns ``out``.

    This is the pretraining stage (:func:`pretrain_language_module`) run in the hidden sibling
    ``.<out>.work/``: a rerun resumes from its checkpoints, and the directory is removed once the
    module is written. The module also gets the run's ``metrics.jsonl`` and ``loss_curve.png``
    (with ``eval_corpus``: held-out loss and bpc every ``options.logging_steps`` steps).

    ``model`` may be a checkpoint with transferred embeddings (``langgraft init``): the module then
    records that vocabulary, and modules touching embedding rows only compose onto it.
    """
    from langgraft.models import default_max_length
    from langgraft.models import load_config, load_tokenizer, resolve_model_path

    options = options or TrainOptions()
    out = Path(out)
    model_path = resolve_model_path(model)  # blocks no longer than the model's positions allow (HF run_mlm caps too)
    max_length = default_max_length(load_config(model_path), load_tokenizer(model_path), cap=options.max_length)
    run = PretrainConfig(
        model=str(model), corpus=[str(path) for path in corpus], out=str(_work_dir(out)),
        eval_corpus=str(eval_corpus) if eval_corpus is not None else None, max_steps=options.max_steps,
        learning_rate=options.learning_rate, per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps, max_seq_length=max_length,
        warmup_steps=int(options.warmup_ratio * options.max_steps), save_steps=options.save_steps,
        eval_steps=options.logging_steps, logging_steps=options.logging_steps, seed=options.seed,
        mlm_probability=options.mlm_probability, resume=True, report_to=["none"],
    )
    pretrain_language_module(kind, run, language=language, out=out, config=config,
                             training=dataclasses.asdict(options), callbacks=callbacks,
                             carry_vocabulary=carry_vocabulary, copy_logs=True)
    return out


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
    return _write_module(kind, trained, config, "task", head_names, out, identity, tokenizer, digest,
                         dataclasses.asdict(options), language=language, task=task, labels=labels)


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
    from langgraft.models import load_tokenizer, resolve_model_path

    from langgraft.models import load_language_model

    from .tasks import load_task_model

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


def export_merged(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """Write a stock transformers checkpoint computing the composed function (lora and sft modules)."""
    from langgraft.atomic import atomic_dir

    state = composition_state(model)
    kinds = {m.metadata.kind for m in state.applied.values()}
    merged = model
    for kind in sorted(kinds):
        merged = get_kind(kind).merge(merged)
    merged = unwrap(merged)
    with atomic_dir(Path(out)) as tmp:
        merged.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return Path(out)


def export_module(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """Write the modules composed onto ``model`` as ONE module of their kind, loadable on the untouched base.

    lora: one PEFT adapter (ranks concatenated, PEFT's ``cat``); sft: one sparse file φ = Σ φ_i;
    madx: one stacked module (language → task). The head and a carried vocabulary come along; the
    metadata lists the parts (``parts``).
    """
    from langgraft.atomic import atomic_dir

    from .base import HEAD_FILE

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
    with atomic_dir(Path(out)) as tmp:
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
    from langgraft.digest import sha256_path

    meta = module.metadata
    return {"name": module.path.name, "path": str(module.path.resolve()), "kind": meta.kind, "role": meta.role,
            "language": meta.language, "task": meta.task, "size": meta.size,
            "base_fingerprint": meta.base_fingerprint, "body_digest": meta.body_digest,
            "embedding_digest": meta.embedding_digest, "tokenizer_hash": meta.tokenizer_hash,
            "content_digest": sha256_path(module.path)[:16]}


def write_composition(model: str | Path, modules: Sequence[str | Path | Module], out: str | Path, *,
                      merge: bool = True) -> Path:
    """Compose ``modules`` onto ``model`` and write the result (what ``langgraft module compose`` runs).

    ``merge=True``: a stock transformers checkpoint with the modules folded in (lora, sft).
    ``merge=False``: one module of the modules' kind (:func:`export_module`) for the untouched base.
    """
    network, tokenizer = load_composed(model, modules)
    return export_merged(network, tokenizer, out) if merge else export_module(network, tokenizer, out)


def module_info(path: str | Path) -> dict[str, Any]:
    """The metadata of a module directory as a dict (``langgraft module info``)."""
    return dataclasses.asdict(load_module(path).metadata)
