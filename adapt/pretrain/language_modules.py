"""Language modules: continued pretraining whose phase 2 trains a module kind on the frozen base.

A language module (``lora``, ``sft``, ``madx`` from :mod:`langgraft.adapters`) learns one language
by MLM/CLM on its text. It trains through continued pretraining (:func:`langgraft.adapt.pretrain.run.pretrain`,
phase 2'), so it gets the packed, shuffled stream, dynamic masking, held-out bpc, sealed checkpoints,
resume and the precision and memory options of :mod:`langgraft.training` — the same path as
full-model pretraining, never a copy. ``langgraft pretrain --language-module KIND`` and
``langgraft module train-language`` run :func:`pretrain_language_module` / :func:`train_language_module`.

    lang = train_language_module("sft", "english-model", ["ny.txt"], language="ny", out="ny-sft")
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from langgraft.adapt.pretrain.run import PretrainOptions, PretrainResult, pretrain
from langgraft.adapters.base import MODULE_KINDS, ModuleKindConfig, composition_state, get_kind
from langgraft.adapters.compose import resolve_config, seed_module, work_dir, write_module
from langgraft.adapters.metadata import embedding_digest
from langgraft.adapters.training import TrainOptions
from langgraft.errors import UserError
from langgraft.models import default_max_length, load_config, load_tokenizer, resolve_model_path
from langgraft.options import Validated, alias_names, from_mapping, option, parse_pairs
from langgraft.outputs import check_output
from langgraft.training.options import TrainingOptions

MODULE_DIR = "module"  # OUT/module: the language module of a `pretrain --language-module` run


@dataclass(kw_only=True)
class LanguageModuleSpec(Validated):
    """What a language module records besides its kind's config (``--language``, ``--carry-vocabulary``)."""

    language: str = option(help="language code recorded in the module (e.g. ny)")
    carry_vocabulary: bool = option(False, help="store the model's tokenizer + embeddings in the module (compose "
                                    "onto the original base)")


@dataclass
class _ModuleKindPhase:
    """Phase 2' of :func:`langgraft.adapt.pretrain.run.pretrain`: a kind's language module trains on the frozen base."""

    kind: str
    config: ModuleKindConfig
    seed: int
    carry_vocabulary: bool

    @property
    def identity(self) -> dict[str, Any]:
        """Recorded in the run and compared on resume: checkpoints of another kind or config do not fit."""
        return json.loads(json.dumps({"kind": self.kind, "config": dataclasses.asdict(self.config)}))

    def __call__(self, model: Any, fit: Any) -> tuple[Any, Any, str, Any]:
        identity = composition_state(model).identity  # the base as it is after phase 1
        digest = embedding_digest(model)
        vocabulary = model.get_input_embeddings().weight.detach().clone() if self.carry_vocabulary else None
        seed_module(self.seed)
        trained = get_kind(self.kind).train(model, self.config, "language", [], fit)
        return trained, identity, digest, vocabulary


def _run_options(run: PretrainOptions) -> dict[str, Any]:
    """The pretraining options recorded in a module's metadata (no paths)."""
    paths = {"model", "corpus", "out", "eval_corpus", "replay_corpus", "resume", "use_cpu", "report_to"}
    return {key: value for key, value in dataclasses.asdict(run).items() if key not in paths}


def pretrain_language_module(kind: str, run: PretrainOptions, *, language: str, out: str | Path,
                             config: ModuleKindConfig | dict[str, Any] | None = None,
                             training: dict[str, Any] | None = None, callbacks: Sequence[Any] = (),
                             carry_vocabulary: bool = False, copy_logs: bool = False,
                             overwrite: bool = False) -> PretrainResult:
    """Continued pretraining whose phase 2 is a ``kind`` language module (base frozen); the module goes to ``out``.

    ``run`` is a :class:`~langgraft.adapt.pretrain.run.PretrainOptions`: an optional embeddings-only
    stage first (``embedding_steps``), then the module for ``max_steps - embedding_steps`` steps
    per phase, with packing, dynamic masking, held-out bpc, sealed checkpoints and ``run.resume``.
    ``run.learning_rate`` None means the kind's default. ``training`` is recorded in the module
    metadata (default: the run's options); ``copy_logs`` copies the run's ``metrics.jsonl`` and
    ``loss_curve.png`` into the module. Returns the run's result with ``module`` = ``out``.
    """
    # deferred: keeps torch, transformers and peft off `langgraft --help`
    from accelerate import PartialState

    from langgraft.adapt.pretrain.callbacks import CURVE_FILE, METRICS_FILE

    config = resolve_config(kind, config)
    result = pretrain(run, language_module=_ModuleKindPhase(kind, config, run.seed, carry_vocabulary),
                      callbacks=callbacks)
    out = Path(out)
    if PartialState().is_main_process:
        trained, identity, digest, vocabulary = result.module
        tokenizer = load_tokenizer(resolve_model_path(run.model))
        logs = [Path(run.out) / METRICS_FILE, Path(run.out) / CURVE_FILE] if copy_logs else []
        write_module(kind, trained, config, "language", [], out, identity, tokenizer, digest,
                     _run_options(run) if training is None else training, vocabulary=vocabulary, logs=logs,
                     overwrite=overwrite, language=language)
    PartialState().wait_for_everyone()
    return dataclasses.replace(result, module=out)


def train_language_module(kind: str, model: str | Path, corpus: Sequence[str | Path], *, language: str,
                          out: str | Path, config: ModuleKindConfig | dict[str, Any] | None = None,
                          options: TrainOptions | None = None, callbacks: Sequence[Any] = (),
                          carry_vocabulary: bool = False, eval_corpus: str | Path | None = None,
                          overwrite: bool = False) -> Path:
    """Train a language module by MLM/CLM on ``corpus`` with the base frozen; returns ``out``.

    This is continued pretraining (:func:`pretrain_language_module`) run in the hidden sibling
    ``.<out>.work/``: a rerun resumes from its checkpoints, and the directory is removed once the
    module is written. The module also gets the run's ``metrics.jsonl`` and ``loss_curve.png``
    (with ``eval_corpus``: held-out loss and bpc every ``options.logging_steps`` steps).
    ``options`` (:class:`~langgraft.adapters.training.TrainOptions`) maps onto the run's options:
    the shared :class:`~langgraft.training.TrainingOptions` fields by name, ``max_seq_length``
    capped at what the model supports.

    ``model`` may be a checkpoint with transferred embeddings (``langgraft init``): the module then
    records that vocabulary, and modules touching embedding rows only compose onto it. An existing
    ``out`` is refused before any work unless ``overwrite``.
    """

    options = options or TrainOptions()
    out = Path(out)
    check_output(out, inputs=[model, *corpus, eval_corpus], overwrite=overwrite)
    model_path = resolve_model_path(model)  # blocks no longer than the model's positions allow (HF run_mlm caps too)
    max_seq_length = default_max_length(load_config(model_path), load_tokenizer(model_path), cap=options.max_seq_length)
    shared = {f.name: getattr(options, f.name) for f in dataclasses.fields(TrainingOptions)}
    run = PretrainOptions(
        **{**shared, "report_to": ["none"]}, model=str(model), corpus=[str(path) for path in corpus],
        out=str(work_dir(out)), eval_corpus=str(eval_corpus) if eval_corpus is not None else None,
        max_seq_length=max_seq_length, eval_steps=options.logging_steps, mlm_probability=options.mlm_probability,
        resume=True)
    pretrain_language_module(kind, run, language=language, out=out, config=config,
                             training=dataclasses.asdict(options), callbacks=callbacks,
                             carry_vocabulary=carry_vocabulary, copy_logs=True, overwrite=overwrite)
    return out


def language_module_options(kind: str, pairs: Sequence[str]) -> dict[str, Any]:
    """``--module-option KEY=VALUE`` pairs (``KEY`` alone for a switch, ``no-KEY`` to turn one off).

    Keys: the fields of ``kind``'s config dataclass (``rank``, ``k``, ``reduction_factor``, ...) and of
    :class:`LanguageModuleSpec` (``language``, required, and ``carry_vocabulary``). Returns the
    keywords ``config``, ``language`` and ``carry_vocabulary`` of :func:`pretrain_language_module`.
    """
    config_class = get_kind(kind).config_class
    values = parse_pairs(pairs, "--module-option", "rank=8", cls=config_class)
    spec_keys = {f.name for f in dataclasses.fields(LanguageModuleSpec)}
    own = {f.name for f in dataclasses.fields(config_class) if f.metadata.get("cli", True)} | set(alias_names(config_class))
    others = {name for other, cls in MODULE_KINDS.items() if other != kind
              for name in [f.name for f in dataclasses.fields(cls.config_class)] + list(alias_names(cls.config_class))}
    for key in values:
        if key in spec_keys or key in own:
            continue
        if key in others:
            raise UserError(f"--module-option {key!r} does not apply to --language-module {kind}; remove it")
        raise UserError(f"unknown --module-option {key!r} for --language-module {kind}; "
                        f"options: {', '.join(sorted(own | spec_keys))}")
    if "language" not in values:
        raise UserError("--language-module needs the module's language code: add --module-option language=CODE")
    spec = from_mapping(LanguageModuleSpec, {k: v for k, v in values.items() if k in spec_keys}, "--module-option")
    config = from_mapping(config_class, {k: v for k, v in values.items() if k in own}, "--module-option")
    return {"config": config, "language": spec.language, "carry_vocabulary": spec.carry_vocabulary}
