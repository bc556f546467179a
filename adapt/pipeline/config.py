"""The per-language pipeline YAML, validated into dataclasses (never ``eval``).

Every section is a dataclass; :func:`langgraft.options.from_mapping` walks the YAML mapping against the fields,
so an unknown key, a wrong type or a value outside a ``Literal`` is one :class:`UserError` naming
its YAML path (``pretrain.stages[1].train``) and the allowed keys or values. ``docs/pipeline.md``
documents every key.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraft.adapt.pretrain.head import HeadRecoveryOptions
from langgraft.adapt.pretrain.run import FULL_LEARNING_RATE
from langgraft.corpora.bible import DEMO_SPLIT_RATIOS
from langgraft.corpora.clean import CleanConfig
from langgraft.corpora.prepare import CorpusOptions
from langgraft.adapt.pretrain.run import PretrainOptions
from langgraft.adapters.base import MODULE_KINDS
from langgraft.corpora.split import check_ratios
from langgraft.adapt.pipeline.spec import KEY_WHEN_SET
from langgraft.options import Validated, option
from langgraft.vocab.distill.options import TRAINING_DEFAULTS as DISTILL_TRAINING_DEFAULTS
from langgraft.vocab.distill.options import DistillOptions
from langgraft.vocab.tokenizers import MAX_VOCAB_SIZE
from langgraft.training.options import TrainingOptions
from langgraft.adapters.training import TrainOptions
from langgraft.eval.benchmarks import BENCHMARKS

@dataclass
class CorpusSource(CorpusOptions):
    """Where one language's text comes from: an installed Bible or local files, read and grouped as
    :class:`~langgraft.corpora.prepare.CorpusOptions` say (``langgraft corpus prepare``'s options)."""

    bible: str | None = None  # language code of an installed Bible (eng, nya); split by whole books
    files: list[str] = field(default_factory=list)  # local files (relative to the YAML file)


@dataclass
class CorporaConfig:
    target: CorpusSource = field(default_factory=CorpusSource)
    source: CorpusSource | None = None  # source-language text: head recovery, replay, aligned pairs
    clean: CleanConfig = field(default_factory=CleanConfig)
    ratios: list[float] = option(default_factory=lambda: list(DEMO_SPLIT_RATIOS),
                                 help="train/dev/test shares (split by group)")
    max_documents: int | None = option(None, help="keep at most this many documents per split (quick runs)", ge=1)

    def __post_init__(self) -> None:
        check_ratios(self.ratios)


@dataclass
class TokenizerConfig(Validated):
    mode: Literal["train", "extend"] = option("train", help="train a new tokenizer or extend the source's")
    vocab_size: int = option(16000, help="train: vocabulary size; extend: number of pieces to add", ge=1,
                             le=MAX_VOCAB_SIZE)


def section(options: type, name: str, doc: str, *, stage_set: tuple[str, ...] = (), defaults: dict[str, Any] | None = None,
            before: list[tuple[str, Any, Any]] = (), after: list[tuple[str, Any, Any]] = ()) -> type:
    """A YAML section made from an options dataclass: its fields (declarations and help kept) less the
    ones the stage sets itself (``stage_set``), with the section's own ``defaults``, between the
    pipeline-only keys ``before`` and ``after``. So a new option of a stage is a pipeline key at once."""
    hints = typing.get_type_hints(options)
    defaults = defaults or {}
    fields = [(f.name, hints[f.name], field(default=defaults[f.name], metadata=f.metadata) if f.name in defaults
               else field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
              for f in dataclasses.fields(options) if f.name not in stage_set]
    return dataclasses.make_dataclass(name, [*before, *fields, *after],
                                      namespace={"__doc__": doc, "__module__": __name__})


# head recovery (langgraft.adapt.pretrain.head.HeadRecoveryOptions); the stage sets the seed
HeadConfig = section(
    HeadRecoveryOptions, "HeadConfig", "Fit an MLM/CLM head on source text for headless checkpoints (sentence-transformers).",
    stage_set=("seed",),
    before=[("recover", Literal["auto", "always", "never"], field(default="auto"))],  # auto: only when the source has no head
    after=[("eval_documents", int, field(default=200))])  # source dev documents for the held-out bpc of the body steps


@dataclass
class InitResources:
    """Prebuilt resources for the methods that use them (paths; see docs/resources.md)."""

    source_embeddings: str | None = None  # fastText .bin, source language
    target_embeddings: str | None = None  # fastText .bin, target language
    dictionary: str | None = None  # TSV source<TAB>target
    parallel: Literal["corpus"] | list[str] | None = None  # corpus: the id-aligned train splits of
    # corpora.source and corpora.target; or [source_file, target_file], line- or id-aligned
    helper: str | None = None  # model already using the target tokenizer (CLP)


@dataclass
class InitConfig:
    method: str = "auto"  # a registered initializer, or auto (measure candidates, keep the best)
    candidates: list[str] | None = None  # for auto; default: random, mean, fvt + those whose resources are given
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # method name -> its options
    resources: InitResources = field(default_factory=InitResources)
    dev_documents: int = option(200, help="dev documents for the step-0 bits per character of auto", ge=1)
    # shift the new rows' output bias to the target train split's token frequencies (langgraft.vocab.calibration)
    calibrate_bias: bool = False


# The distill section (optional; between init and pretrain): the options of ``langgraft distill``
# (langgraft.vocab.distill.DistillOptions, then TrainingOptions with the distillation defaults) less
# the seed, which the stage sets. The teacher is the source model (with its recovered head, if any);
# same text reads the target train split, parallel text init.resources.parallel.
_DISTILL_HINTS = typing.get_type_hints(DistillOptions)
DistillConfig = section(
    TrainingOptions, "DistillConfig", "Train the new embedding rows against the frozen source model "
    "(``langgraft.vocab.distill``; docs/distillation.md).", stage_set=("seed",), defaults=DISTILL_TRAINING_DEFAULTS,
    before=[(f.name, _DISTILL_HINTS[f.name], field(default=f.default, default_factory=f.default_factory,
                                                   metadata=f.metadata))
            for f in dataclasses.fields(DistillOptions)])


# The pretrain section takes the options of ``langgraft.adapt.pretrain.run.PretrainOptions`` (so a new
# pretraining option is a pipeline key at once), less the fields the stage fills in from the run:
STAGE_SET_FIELDS = ("model", "corpus", "out", "eval_corpus", "replay_corpus", "seed", "resume", "overwrite",
                    "corpus_alpha")  # one target corpus: nothing to mix
# Defaults sized for one language's few-hundred-step run; the others are the Python API's.
PRETRAIN_DEFAULTS = {"max_steps": 300, "embedding_steps": 300, "learning_rate": FULL_LEARNING_RATE,
                     "per_device_train_batch_size": 16, "save_steps": 100, "eval_steps": 100}
PRETRAIN_STAGE_FIELDS = [  # pipeline-only keys
    ("eval_documents", int | None, field(default=200)),  # dev documents for the held-out bpc during training
]


PretrainConfig = section(PretrainOptions, "PretrainConfig", """Continued pretraining (``langgraft.adapt.pretrain.run``; names as in ``TrainingArguments``).

    The first ``embedding_steps`` train only the embeddings (body frozen), the remaining
    ``max_steps - embedding_steps`` the full model.
    """, stage_set=STAGE_SET_FIELDS, defaults=PRETRAIN_DEFAULTS, after=PRETRAIN_STAGE_FIELDS)

# A language module (MLM/CLM on one language's text, base frozen) or a task module (source labels):
# the module training options (langgraft.adapters.training.TrainOptions) less the seed, which the stage sets.
ModuleConfig = section(
    TrainOptions, "ModuleConfig", "A language module (MLM/CLM on one language's text, base frozen) or a task "
    "module (source labels).", stage_set=("seed",),
    before=[("name", str, field(default="")),
            ("role", Literal["language", "task"], field(default="language")),
            ("kind", Literal[tuple(MODULE_KINDS)], field(default="lora")),  # the registered module kinds
            ("corpus", Literal["target", "source"], field(default="target")),  # language modules: whose text
            ("task", str | None, field(default=None)),  # task modules: the evaluation task or benchmark they learn
            ("language_module", str | None, field(default=None)),  # task modules: an earlier source-language module
            # task modules: the model they learn on, source (default) or adapted (extension mode; evaluate
            # composes it on the adapted model). Keyed only when set: runs without it keep their keys.
            ("base", Literal["source", "adapted"] | None, field(default=None, metadata=KEY_WHEN_SET))],
    after=[("options", dict[str, Any], field(default_factory=dict))])  # the kind's config: rank/alpha (lora), ...


@dataclass
class TaskConfig:
    """A zero-shot task: labelled source-language train file, target-language test file."""

    name: str = ""
    type: Literal["sequence_classification", "token_classification"] = "sequence_classification"
    bible: Literal["genre"] | None = None  # labels of the prepared Bible corpora (train: source, test: target)
    train: str | None = None  # source-language labelled file
    test: str | None = None  # target-language labelled file
    max_examples: int | None = option(None, help="a seeded sample of this many train and test examples", ge=1)


@dataclass
class RetrievalConfig:
    pairs: Literal["corpus"] | list[str] = "corpus"  # corpus: test-split documents of corpora.source and
    # corpora.target sharing an id (the Bible's verses); or [source_file, target_file]
    layer: int | None = None  # hidden layer to pool; default: the middle one
    max_pairs: int | None = option(500, help="a seeded sample of this many pairs", ge=1)


@dataclass
class BenchmarkConfig:
    """A named benchmark (``langgraft.eval.benchmarks``) scored zero-shot in every setup."""

    name: Literal[tuple(BENCHMARKS)] = "sib200"  # a registered benchmark
    language: str | None = None  # the benchmark's config for the target language; default: the pipeline's language
    source_language: str | None = None  # the task module's training language; default: the benchmark's English
    data_dir: str | None = None  # local <config>/<split>*.parquet|jsonl folder instead of the hub / HF cache
    max_examples: int | None = option(None, help="a seeded sample of this many examples per split", ge=1)


@dataclass
class EvaluationConfig:
    bpc: bool = True
    max_documents: int | None = option(300, help="test documents for bits per character", ge=1)
    retrieval: RetrievalConfig | None = None
    tasks: list[TaskConfig] = field(default_factory=list)
    benchmarks: list[BenchmarkConfig] = field(default_factory=list)


@dataclass
class PublishConfig:
    out: str | None = None  # hub-ready folder; none = do not publish
    repo: str | None = None  # huggingface hub repo id to push to (needs a network)


@dataclass
class PipelineConfig:
    language: str = ""
    source_model: str = ""
    name: str | None = None  # run name; default <source model>-<language>
    output: str = "runs"  # the run directory is <output>/<name>
    seed: int = option(0, help="seed of every random choice of the run", ge=0, le=2**32 - 1)
    corpora: CorporaConfig = field(default_factory=CorporaConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    init: InitConfig = field(default_factory=InitConfig)
    distill: DistillConfig | None = None  # no distillation unless the section is given
    pretrain: PretrainConfig | None = field(default_factory=PretrainConfig)
    modules: list[ModuleConfig] = field(default_factory=list)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)

    REQUIRED = ("language", "source_model")


def is_plain_name(name: str) -> bool:
    """A name that is one folder name everywhere (run, task): no separators, not ``.``/``..``, not hidden."""
    return bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", name)) and name not in (".", "..")


def apply_overrides(data: dict, overrides: dict[str, Any] | None) -> dict:
    """Set dotted keys (``pretrain.max_steps``) in a raw YAML mapping before validation."""
    for dotted, value in (overrides or {}).items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return data


def resolve_path(base: Path, value: str) -> str:
    """Paths in a YAML file are relative to that file's folder."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path))
