"""The pipeline's stages: each one a function of a :class:`StageContext`, planned from the config.

Every function is a thin adapter: it reads its own config (``ctx.config``: exactly the YAML sections
that key it, never the rest of the pipeline config) and the folders of the stages it needs, calls
the stage's own public API (``langgraft.corpora``, ``langgraft.vocab``, ``langgraft.adapt.pretrain.run``,
``langgraft.adapters``, ``langgraft.eval``) and writes into ``ctx.work_dir``. Folder layout of
the outputs, which later stages and ``langgraft publish`` read:

========== ==========================================================================
corpus     ``target/{train,dev,test}.txt``, ``source/...`` (when given), ``summary.json``
eval-data  ``tasks/<name>/{train,test}.*`` (Bible tasks; file tasks capped by ``max_examples``),
           ``retrieval/{source,target}.txt`` (aligned test-split documents),
           ``benchmarks/<name>/`` (named benchmarks: ``{train,test}.jsonl`` or ``{source,target}.txt``)
head       ``model/`` — the source model with a recovered LM head
tokenizer  ``tokenizer/``
init       ``model/`` (+ tokenizer), ``comparison.json`` (bpc of every candidate; the chosen one)
distill    ``model/`` (the init model with distilled rows, ``distill_summary.json``, ``metrics.jsonl``)
pretrain   ``model/``, ``metrics.jsonl``, checkpoints while running
module-X   ``module/`` — a langgraft module folder (PEFT dir / SFT safetensors / MAD-X)
evaluate   ``evaluation.json`` — rows ``{setup, task, metric, value, low, high}`` (low/high: 95% interval)
report     ``report/report.md`` + PNG plots
========== ==========================================================================
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from langgraft.adapt.pipeline.config import (BenchmarkConfig, CorporaConfig, CorpusSource, EvaluationConfig,
                                             InitConfig, ModuleConfig, PipelineConfig, TaskConfig, TokenizerConfig,
                                             is_plain_name, resolve_path)
from langgraft.adapt.pipeline.spec import KEY_WHEN_SET, StageContext, StageSpec, plain
from langgraft.adapt.pretrain.head import HeadRecoveryOptions, recover_head
from langgraft.adapt.pretrain.language_modules import train_language_module
from langgraft.adapt.pretrain.run import PretrainOptions, pretrain
from langgraft.adapters.base import make_config
from langgraft.adapters.compose import train_task_module
from langgraft.adapters.tasks import read_sequence_examples, read_token_examples
from langgraft.adapters.training import TrainOptions
from langgraft.atomic import atomic_file
from langgraft.corpora.bible import BIBLE_PACKAGES
from langgraft.corpora.prepare import CORPUS_SUMMARY_FILE, prepare_corpus, prepared_pairs, read_prepared
from langgraft.corpora.readers import iter_text
from langgraft.errors import UserError
from langgraft.sidecars import read_sidecar
from langgraft.eval.benchmarks import BENCHMARKS, prepare_benchmark
from langgraft.eval.bpc import compute_bpc
from langgraft.eval.harness import evaluate
from langgraft.eval.report import to_rows, write_report
from langgraft.eval.retrieval import read_pairs
from langgraft.models import head_kind, load_config, load_language_model, load_tokenizer, position_limit, \
    resolve_model_path
from langgraft.training import METRICS_FILE, TrainingOptions
from langgraft.vocab.distill import DistillOptions, distill_embeddings
from langgraft.vocab.init import TransferResources, config_from_options, get_method, list_methods
from langgraft.vocab.tokenizers import extend_tokenizer, train_tokenizer
from langgraft.vocab.transfer import initialize_embeddings

if TYPE_CHECKING:
    from langgraft.adapt.pipeline.runner import Pipeline

DEFAULT_CANDIDATES = ("random", "mean", "fvt")
SPLITS = ("train", "dev", "test")
TASK_KINDS = {"sequence_classification": "seq-cls", "token_classification": "token-cls"}  # eval harness names
ADAPTED_SETUPS = ("adapted", "adapted+language")  # the setups evaluated on the adapted model itself
ROWS_FOLDER = "rows"  # evaluate: one file per finished harness call, kept across a failed attempt


# ------------------------------------------------------------------------------------ stage configs
# What each stage reads, typed: a stage's key is ``plain()`` of its config (field name -> value), so a
# field here is a key of the stage, and a typo in a stage function is an AttributeError that a type
# checker finds, not a KeyError at run time. The YAML sections (HeadConfig, PretrainConfig, ...) are
# the dataclasses of langgraft.adapt.pipeline.config.
@dataclass(frozen=True)
class CorpusStageConfig:
    corpora: CorporaConfig
    seed: int


@dataclass(frozen=True)
class HeadStageConfig:
    head: Any  # config.HeadConfig
    seed: int
    source_model: str


@dataclass(frozen=True)
class TokenizerStageConfig:
    tokenizer: TokenizerConfig
    source_model: str


@dataclass(frozen=True)
class InitStageConfig:
    init: InitConfig
    mode: str  # tokenizer.mode
    seed: int
    source_model: str


@dataclass(frozen=True)
class DistillStageConfig:
    distill: Any  # config.DistillConfig
    seed: int
    source_model: str
    parallel: Any  # init.resources.parallel


@dataclass(frozen=True)
class PretrainStageConfig:
    pretrain: Any  # config.PretrainConfig
    seed: int


@dataclass(frozen=True)
class EvalDataStageConfig:
    tasks: list[TaskConfig]  # the tasks whose files the stage derives (Bible tasks, sampled file tasks)
    retrieval_pairs: Any  # evaluation.retrieval.pairs when the stage samples them (corpus or two files), else None
    max_pairs: int | None
    seed: int
    benchmarks: list[BenchmarkConfig] = field(default_factory=list, metadata=KEY_WHEN_SET)
    language: str | None = field(default=None, metadata=KEY_WHEN_SET)


@dataclass(frozen=True)
class ModuleStageConfig:
    module: Any  # config.ModuleConfig
    task: Any  # TaskConfig | BenchmarkConfig | None: what a task module learns
    seed: int
    language: str
    source_model: str


@dataclass(frozen=True)
class EvaluateStageConfig:
    evaluation: EvaluationConfig
    seed: int
    language: str
    source_model: str
    modules: list[Any]  # config.ModuleConfig, the declared ones and the benchmarks' default task modules


@dataclass(frozen=True)
class ReportStageConfig:
    language: str
    source_model: str


# ------------------------------------------------------------------------------------ helpers
def source_model_path(config: PipelineConfig) -> str:
    return resolve_model_path(config.source_model)


def has_lm_head(model_config: Any) -> bool:
    """True when the checkpoint has an MLM/CLM head (sentence-transformers bodies do not)."""
    return head_kind(model_config) is not None


def _corpus_refs(source: CorpusSource | None, base: Path) -> list[str]:
    if source is None:
        return []
    if source.bible:
        package = BIBLE_PACKAGES.get(source.bible)
        return [f"package:{package}" if package else f"bible:{source.bible}"]
    return [resolve_path(base, f) for f in source.files]


def _split_file(ctx: StageContext, side: str, split: str) -> str:
    path = ctx.input("corpus") / side / f"{split}.txt"
    if not path.is_file():
        raise UserError(f"stage {ctx.name!r} needs {side}-language {split} text, but corpora.{side} is not set; "
                        f"add corpora.{side} to the pipeline file")
    return str(path)


def model_stage(pipeline: "Pipeline") -> str:
    """The stage whose ``model/`` is the adapted model: pretrain when planned, else distill, else init."""
    config = pipeline.config
    return "pretrain" if config.pretrain is not None else "distill" if config.distill is not None else "init"


def module_base(module: Any) -> str:
    """The model a module is trained on: ``source`` (the source model, with its recovered head if any) or
    ``adapted``. Target-language modules always learn on the adapted model, the others on the source
    model unless ``base: adapted`` (task modules in extension mode)."""
    if module.role == "language":
        return "adapted" if module.corpus == "target" else "source"
    return module.base or "source"


def body_changing_steps(config: PipelineConfig) -> int:
    """Full-model pretraining steps (``max_steps - embedding_steps``): they change the body task modules compose on."""
    pretraining = config.pretrain
    return max(0, pretraining.max_steps - pretraining.embedding_steps) if pretraining is not None else 0


# ------------------------------------------------------------------------------------ stages
def corpus_stage(ctx: StageContext) -> dict:
    """Clean and split the target (and source) text; derive labelled task files and aligned pairs."""
    cfg: CorpusStageConfig = ctx.config
    corpora, seed = cfg.corpora, cfg.seed
    summary = {}
    for side, source in (("target", corpora.target), ("source", corpora.source)):
        out = ctx.work_dir / side
        if source is None:
            continue
        if not (out / CORPUS_SUMMARY_FILE).is_file():  # else prepared in an interrupted attempt
            prepare_corpus(
                [resolve_path(ctx.pipeline.base_dir, f) for f in source.files], out, bible=source.bible,
                options=source, clean=corpora.clean, ratios=corpora.ratios,
                seed=seed, overwrite=True,  # a folder left by an interrupted attempt
            )
        summary[side] = json.loads((out / CORPUS_SUMMARY_FILE).read_text(encoding="utf-8"))["splits"]
        if corpora.max_documents is not None:
            for split in SPLITS:
                cap_split(out, split, corpora.max_documents, seed)
    return {"splits": summary}


def sample(items: Iterable[Any], count: int | None, seed: int) -> list[Any]:
    """A seeded uniform sample of ``count`` items in their original order (reservoir; O(count) memory)."""
    if count is None:
        return list(items)
    rng = random.Random(seed)
    kept: list[tuple[int, Any]] = []
    for index, item in enumerate(items):
        if len(kept) < count:
            kept.append((index, item))
        else:
            slot = rng.randint(0, index)
            if slot < count:
                kept[slot] = (index, item)
    return [item for _, item in sorted(kept, key=lambda pair: pair[0])]


def cap_split(folder: Path, split: str, count: int, seed: int) -> None:
    """Keep a seeded sample of ``count`` documents of a prepared split (its .txt and .tsv stay aligned)."""
    text = folder / f"{split}.txt"
    with open(text, encoding="utf-8") as handle:
        total = sum(1 for _ in handle)
    if total <= count:
        return
    chosen = set(random.Random(seed).sample(range(total), count))
    for path, header in ((text, 0), (folder / f"{split}.tsv", 1)):
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as source, atomic_file(path.with_name(path.name + ".cut")) as cut:
            for number, line in enumerate(source):
                if number < header or number - header in chosen:
                    cut.write(line)
        path.with_name(path.name + ".cut").replace(path)


def eval_data_stage(ctx: StageContext) -> dict:
    """The evaluation's data, derived once from the prepared corpora: task files and retrieval pairs.

    A stage of its own so that evaluation-only settings (which layer retrieval pools, ...) never
    re-key the corpus stage and everything trained after it.
    """
    cfg: EvalDataStageConfig = ctx.config
    for task in cfg.tasks:
        if task.bible:
            _bible_task_files(ctx, task)
        elif task.max_examples is not None:
            _sampled_task_files(ctx, task)
    if cfg.retrieval_pairs is not None:
        _retrieval_pairs(ctx)
    for bench in cfg.benchmarks:
        _benchmark_files(ctx, bench)
    return {"tasks": [t.name for t in cfg.tasks]}


def _benchmark_files(ctx: StageContext, bench: BenchmarkConfig) -> None:
    """``benchmarks/<name>/``: the benchmark's source-language train split and target test split, as task files."""
    cfg: EvalDataStageConfig = ctx.config
    data_dir = resolve_path(ctx.pipeline.base_dir, bench.data_dir) if bench.data_dir else None
    prepare_benchmark(bench.name, bench.language or cfg.language, ctx.work_dir / "benchmarks" / bench.name,
                      source_language=bench.source_language, data_dir=data_dir, max_examples=bench.max_examples,
                      seed=cfg.seed)


def _bible_task_files(ctx: StageContext, task: TaskConfig) -> None:
    """``tasks/<name>/{train,test}.jsonl`` from the labels of the prepared Bibles (genre).

    Train: source-language train split; test: target-language test split (held-out books).
    """
    cfg: EvalDataStageConfig = ctx.config
    corpus = ctx.input("corpus")
    train = sample(read_prepared(corpus / "source", "train"), task.max_examples, cfg.seed)
    labels = {record.label for record in train}
    test = sample((r for r in read_prepared(corpus / "target", "test") if r.label in labels), task.max_examples,
                  cfg.seed)
    for split, records in (("train", train), ("test", test)):
        _write_sequence_examples(ctx.work_dir / "tasks" / task.name / f"{split}.jsonl",
                                 ((record.text, record.label) for record in records))


def _sampled_task_files(ctx: StageContext, task: TaskConfig) -> None:
    """A seeded sample of ``max_examples`` examples of a file task's train and test files."""
    cfg: EvalDataStageConfig = ctx.config
    for split, given in (("train", task.train), ("test", task.test)):
        path = resolve_path(ctx.pipeline.base_dir, given)
        folder = ctx.work_dir / "tasks" / task.name
        if task.type == "sequence_classification":
            _write_sequence_examples(folder / f"{split}.jsonl",
                                     sample(read_sequence_examples(path), task.max_examples, cfg.seed))
        else:
            sentences = sample(read_token_examples(path), task.max_examples, cfg.seed)
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"{split}.iob", "w", encoding="utf-8") as handle:
                for words, tags in sentences:
                    handle.write("".join(f"{word} {tag}\n" for word, tag in zip(words, tags)) + "\n")


def _write_sequence_examples(path: Path, examples: Iterable[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for text, label in examples:
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def _retrieval_pairs(ctx: StageContext) -> None:
    """``retrieval/{source,target}.txt``: a seeded sample of ``max_pairs`` aligned pairs, line-aligned.

    ``pairs: corpus``: test-split documents of both corpora sharing an id; two files: their aligned
    lines (line-aligned or ``id<TAB>text``; blank pairs dropped)."""
    cfg: EvalDataStageConfig = ctx.config
    if cfg.retrieval_pairs == "corpus":
        corpus = ctx.input("corpus")
        pairs = [(source, target) for _, source, target in
                 sample(prepared_pairs(corpus / "source", corpus / "target", "test"), cfg.max_pairs, cfg.seed)]
        if not pairs:
            raise UserError("evaluation.retrieval: corpora.source and corpora.target share no test-split ids; "
                            "prepare both with ids (Bible, id_field/id_column) or give pair files")
    else:
        sources, targets = read_pairs(*(resolve_path(ctx.pipeline.base_dir, p) for p in cfg.retrieval_pairs))
        pairs = sample(zip(sources, targets), cfg.max_pairs, cfg.seed)
        if not pairs:
            raise UserError(f"evaluation.retrieval.pairs: {', '.join(cfg.retrieval_pairs)} hold no aligned pair; "
                            "give line-aligned (or id<TAB>text) source and target files")
    folder = ctx.work_dir / "retrieval"
    folder.mkdir(exist_ok=True)
    for index, name in ((0, "source.txt"), (1, "target.txt")):
        (folder / name).write_text("".join(pair[index] + "\n" for pair in pairs), encoding="utf-8")


def _dev_sample(ctx: StageContext, side: str, documents: int | None, seed: int) -> Path:
    """``eval-dev.txt`` in the stage folder: a seeded sample of ``side``'s dev split, written once so
    that a resumed attempt evaluates on the same documents."""
    dev = ctx.work_dir / "eval-dev.txt"
    if not dev.is_file():
        texts = sample(iter_text([_split_file(ctx, side, "dev")], skip_blank=True), documents, seed)
        dev.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return dev


def head_stage(ctx: StageContext) -> dict:
    """Fit an LM head on source text for a headless source checkpoint (body frozen), then optionally the body."""
    cfg: HeadStageConfig = ctx.config
    head = cfg.head
    dev = _dev_sample(ctx, "source", head.eval_documents, cfg.seed) if head.body_steps else None
    options = HeadRecoveryOptions(**{f.name: getattr(head, f.name) for f in dataclasses.fields(HeadRecoveryOptions)
                                     if f.name != "seed"}, seed=cfg.seed)
    result = recover_head(cfg.source_model, [_split_file(ctx, "source", "train")],
                          ctx.work_dir / "model", options, eval_corpus=dev)
    return plain(result)


def tokenizer_stage(ctx: StageContext) -> dict:
    """Train a target tokenizer in the source's family, or extend the source tokenizer."""
    cfg: TokenizerStageConfig = ctx.config
    corpus = [_split_file(ctx, "target", "train")]
    out = ctx.work_dir / "tokenizer"
    if cfg.tokenizer.mode == "train":
        tokenizer = train_tokenizer(cfg.source_model, corpus, cfg.tokenizer.vocab_size, out, overwrite=True)
    else:
        tokenizer = extend_tokenizer(cfg.source_model, corpus, out, new_tokens=cfg.tokenizer.vocab_size,
                                     overwrite=True)
    return {"vocab_size": len(tokenizer)}


def _initial_model(ctx: StageContext, source_model: str) -> str:
    """The source model as the pipeline uses it: with its recovered head when the head stage ran."""
    return str(ctx.inputs["head"] / "model") if "head" in ctx.inputs else source_model


def _adapted_model(ctx: StageContext) -> str:
    """The adapted model: after pretraining when the pipeline pretrains, else after distill or init."""
    return str(ctx.input("pretrain" if "pretrain" in ctx.inputs else "distill" if "distill" in ctx.inputs
                         else "init") / "model")


def _initialized_model(ctx: StageContext) -> str:
    """The model pretraining starts from: the distilled one when the pipeline distills, else init's."""
    return str(ctx.input("distill" if "distill" in ctx.inputs else "init") / "model")


def _parallel_files(ctx: StageContext, parallel: Any) -> tuple[str, str] | None:
    """The parallel pair: the YAML's two files, or (``corpus``) the id-aligned train tables of both corpora.

    Only the train splits: dev and test text stays unseen by the initialization it evaluates.
    """
    if parallel != "corpus":
        return tuple(resolve_path(ctx.pipeline.base_dir, p) for p in parallel or ()) or None
    corpus = ctx.input("corpus")
    files = (str(corpus / "source" / "train.tsv"), str(corpus / "target" / "train.tsv"))
    if not all(Path(f).is_file() for f in files) or next(
            prepared_pairs(corpus / "source", corpus / "target", "train"), None) is None:
        raise UserError("init.resources.parallel: corpus found no id shared by the train splits of corpora.source "
                        "and corpora.target; give both corpora matching ids (bible, id_column/id_field) or "
                        "give [source_file, target_file]")
    return files


def _resources(ctx: StageContext, with_corpora: bool = True) -> Any:
    """The YAML's prebuilt resources (+ the corpus stage's train text, from which methods build theirs)."""
    cfg: InitStageConfig = ctx.config
    given = cfg.init.resources
    base = ctx.pipeline.base_dir
    path = lambda value: resolve_path(base, value) if value else None  # noqa: E731
    source_text = ctx.input("corpus") / "source" / "train.txt"
    return TransferResources(
        source_embeddings=path(given.source_embeddings), target_embeddings=path(given.target_embeddings),
        dictionary=path(given.dictionary), helper=path(given.helper), parallel=_parallel_files(ctx, given.parallel),
        source_corpus=[str(source_text)] if with_corpora and source_text.is_file() else [],
        target_corpus=[_split_file(ctx, "target", "train")] if with_corpora else [],
        workdir=str(ctx.work_dir / "resources"),
    )


def candidate_methods(ctx: StageContext) -> list[str]:
    """Explicit candidates, or random/mean/fvt plus every method whose resources are given
    (``parallel: corpus`` counts: it adds transtok)."""
    cfg: InitStageConfig = ctx.config
    if cfg.init.candidates:
        return list(cfg.init.candidates)
    candidates = list(DEFAULT_CANDIDATES)
    given = _resources(ctx, with_corpora=False)
    if not any((given.source_embeddings, given.target_embeddings, given.dictionary, given.parallel, given.helper)):
        return candidates
    for name in list_methods():
        if name in candidates:
            continue
        try:
            get_method(name).config_class().validate(given)
        except UserError:
            continue
        candidates.append(name)
    return candidates


def step0_bpc(model_dir: Path, texts: list[str], seed: int) -> float:
    """Bits per character of a checkpoint on ``texts`` before any training (fixed masks)."""
    model, _ = load_language_model(model_dir)
    return compute_bpc(model, load_tokenizer(model_dir), texts, mask_seed=seed).bpc


def init_stage(ctx: StageContext) -> dict:
    """Initialize the target embeddings; ``auto`` measures step-0 bpc of each candidate on dev text."""
    cfg: InitStageConfig = ctx.config
    init = cfg.init
    tokenizer = str(ctx.input("tokenizer") / "tokenizer")
    mode = "extend" if cfg.mode == "extend" else "replace"
    resources = _resources(ctx)

    def initialize(method: str, out: Path) -> None:
        if not (out / "config.json").is_file():  # else finished in an earlier, interrupted attempt
            initialize_embeddings(_initial_model(ctx, cfg.source_model), tokenizer, method, mode=mode,
                                  resources=resources, seed=cfg.seed, out=out, calibrate_bias=init.calibrate_bias,
                                  overwrite=True, **init.options.get(method, {}))

    if init.method != "auto":
        initialize(init.method, ctx.work_dir / "model")
        return {"method": init.method}
    dev = sample(iter_text([_split_file(ctx, "target", "dev")], skip_blank=True), init.dev_documents, cfg.seed)
    comparison = []
    for method in candidate_methods(ctx):
        out = ctx.work_dir / "candidates" / method
        ctx.log(f"auto: trying {method}")
        initialize(method, out)
        comparison.append({"method": method, "bpc": step0_bpc(out, dev, cfg.seed)})
    best = min(comparison, key=lambda row: row["bpc"])
    shutil.move(str(ctx.work_dir / "candidates" / best["method"]), ctx.work_dir / "model")
    shutil.rmtree(ctx.work_dir / "candidates")
    record = {"chosen": best["method"], "candidates": comparison, "split": "dev", "documents": len(dev),
              "metric": "step-0 bits per character"}
    (ctx.work_dir / "comparison.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    ctx.log(f"auto: chose {best['method']} (" + ", ".join(f"{r['method']} {r['bpc']:.3f}" for r in comparison) + ")")
    return {"method": best["method"], "comparison": comparison}


def distill_stage(ctx: StageContext) -> dict:
    """Train the new rows of init's model against the frozen source model (same or parallel text); resumes."""
    cfg: DistillStageConfig = ctx.config
    options = DistillOptions(**{f.name: getattr(cfg.distill, f.name) for f in dataclasses.fields(DistillOptions)})
    training = TrainingOptions(**{f.name: getattr(cfg.distill, f.name) for f in dataclasses.fields(TrainingOptions)
                                  if f.name != "seed"}, seed=cfg.seed)
    same = options.teacher_text == "same"
    result = distill_embeddings(str(ctx.input("init") / "model"), _initial_model(ctx, cfg.source_model),
                                options=options, training=training,
                                corpus=[_split_file(ctx, "target", "train")] if same else [],
                                parallel=None if same else _parallel_files(ctx, cfg.parallel),
                                out=ctx.work_dir / "model", resume=True)
    return {key: result.summary[key] for key in ("teacher_text", "steps", "held_out_mse") if key in result.summary}


def pretrain_stage(ctx: StageContext) -> dict:
    """Continued pretraining (embeddings only, then full); resumes from its own checkpoints."""
    cfg: PretrainStageConfig = ctx.config
    section = cfg.pretrain
    dev = _dev_sample(ctx, "target", section.eval_documents, cfg.seed)
    options = {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name != "eval_documents"}
    out = ctx.work_dir / "model"
    result = pretrain(PretrainOptions(
        model=_initialized_model(ctx), corpus=[_split_file(ctx, "target", "train")], out=str(out),
        eval_corpus=str(dev), replay_corpus=_split_file(ctx, "source", "train") if section.replay_ratio else None,
        seed=cfg.seed, resume=True, **options,
    ))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the stage is finished: nothing left to resume
    return {"steps": result.steps, "objective": result.objective, "eval": result.eval}


def module_stage(ctx: StageContext) -> dict:
    """Train one language module (its language's text, base frozen) or task module (source labels)."""
    cfg: ModuleStageConfig = ctx.config
    module = cfg.module
    options = TrainOptions(**{f.name: getattr(module, f.name) for f in dataclasses.fields(TrainOptions)
                              if f.name != "seed"}, seed=cfg.seed)
    out = ctx.work_dir / "module"
    base = _adapted_model(ctx) if module_base(module) == "adapted" else _initial_model(ctx, cfg.source_model)
    if module.role == "language":
        language = cfg.language if module.corpus == "target" else "source"
        train_language_module(module.kind, base, [_split_file(ctx, module.corpus, "train")], language=language,
                              out=out, config=module.options, options=options)
    else:
        stacked = ctx.input(f"module-{module.language_module}") / "module" if module.language_module else None
        train_task_module(module.kind, base, task_files(ctx, cfg.task)[0], task=task_kind(cfg.task),
                          out=out, language_module=stacked, config=module.options, options=options)
    info = json.loads((out / "langgraft_module.json").read_text(encoding="utf-8")) \
        if (out / "langgraft_module.json").is_file() else {}
    return {key: info[key] for key in ("kind", "role", "trainable_parameters") if key in info}


def task_kind(task: Any) -> str:
    """The eval harness's kind of an evaluation task or benchmark (seq-cls, token-cls, multiple-choice, retrieval)."""
    return BENCHMARKS[task.name].kind if isinstance(task, BenchmarkConfig) else TASK_KINDS[task.type]


def task_files(ctx: StageContext, task: Any) -> tuple[str, str]:
    """(source-language train file, target-language test file) of evaluation task or benchmark ``task``.

    Bible tasks, file tasks with ``max_examples`` and benchmarks read what the eval-data stage wrote
    (retrieval benchmarks: the source and target sentence files).
    """
    if isinstance(task, BenchmarkConfig):
        folder = ctx.input("eval-data") / "benchmarks" / task.name
        if task_kind(task) == "retrieval":
            return str(folder / "source.txt"), str(folder / "target.txt")
        return str(folder / "train.jsonl"), str(folder / "test.jsonl")
    if task.bible or task.max_examples is not None:
        folder = ctx.input("eval-data") / "tasks" / task.name
        suffix = ".jsonl" if task.type == "sequence_classification" else ".iob"
        return str(folder / f"train{suffix}"), str(folder / f"test{suffix}")
    return resolve_path(ctx.pipeline.base_dir, task.train), resolve_path(ctx.pipeline.base_dir, task.test)


def evaluation_jobs(ctx: StageContext) -> list[dict[str, Any]]:
    """One harness call per (setup, what): bpc + retrieval with language modules, each task with its module.

    Setups: ``source`` (the source model; tasks with its task modules), ``init`` (step 0),
    ``distilled`` (after distillation, before pretraining; tasks zero-shot), ``adapted`` (after
    pretraining) and ``adapted+language`` (plus the target-language modules). A task is scored in a
    setup with a task module trained on that setup's body: on the adapted setups the one trained on
    the adapted model (``base: adapted``) when there is one, else the one trained on the source model
    (the plan allows that only while pretraining leaves the body as it was); on the others the one
    trained on the source model. A task whose modules fit no body of a setup is not scored there.
    """
    cfg: EvaluateStageConfig = ctx.config
    evaluation, seed = cfg.evaluation, cfg.seed
    modules = {name[len("module-"):]: str(path / "module") for name, path in ctx.inputs.items()
               if name.startswith("module-")}
    configs = {m.name: m for m in cfg.modules}
    by_corpus = {corpus: [modules[n] for n in modules if configs[n].role == "language" and configs[n].corpus == corpus]
                 for corpus in ("target", "source")}
    test = _split_file(ctx, "target", "test")
    if evaluation.max_documents is not None:
        test = str(ctx.work_dir / "bpc-test.txt")
        texts = sample(iter_text([_split_file(ctx, "target", "test")], skip_blank=True), evaluation.max_documents, seed)
        Path(test).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    intrinsic = [f"bpc=bpc:{test}"] if evaluation.bpc else []
    if evaluation.retrieval is not None:
        sampled = "eval-data" in ctx.inputs and (ctx.input("eval-data") / "retrieval").is_dir()
        pairs = ([str(ctx.input("eval-data") / "retrieval" / n) for n in ("source.txt", "target.txt")] if sampled
                 else [resolve_path(ctx.pipeline.base_dir, p) for p in evaluation.retrieval.pairs])
        intrinsic.append(f"retrieval=retrieval:{pairs[0]},{pairs[1]}")
    adapted = _adapted_model(ctx)
    source = _initial_model(ctx, cfg.source_model)
    setups = [("source", source, [], by_corpus["source"]),
              ("init", str(ctx.input("init") / "model"), [], None),
              ("distilled", _initialized_model(ctx), [], []),
              ("adapted", adapted, [], []),
              ("adapted+language", adapted, by_corpus["target"], by_corpus["target"])]
    if "pretrain" not in ctx.inputs:
        setups = [s for s in setups if s[0] != "init"]
    if "pretrain" not in ctx.inputs or "distill" not in ctx.inputs:  # else it is the adapted (or init) model
        setups = [s for s in setups if s[0] != "distilled"]
    if not by_corpus["target"]:
        setups = [s for s in setups if s[0] != "adapted+language"]
    jobs = []
    for setup, model, lm_modules, task_language_modules in setups:
        wanted = intrinsic if setup != "init" else intrinsic[:1] if evaluation.bpc else []
        if wanted:
            jobs.append({"setup": setup, "model": model, "tasks": wanted, "modules": lm_modules})
        for task in [*evaluation.tasks, *evaluation.benchmarks] if task_language_modules is not None else []:
            kind = task_kind(task)
            if kind == "retrieval":  # the source model embeds the source side, as for evaluation.retrieval
                jobs.append({"setup": setup, "model": model, "modules": lm_modules,
                             "tasks": [f"{task.name}=retrieval:{','.join(task_files(ctx, task))}"]})
                continue
            declared = [m for m in configs.values() if m.role == "task" and m.task == task.name]
            fitting = [m for m in declared if module_base(m) == "adapted"] if setup in ADAPTED_SETUPS else []
            fitting = fitting or [m for m in declared if module_base(m) == "source"]
            if declared and not fitting:
                continue  # its only modules were trained on the adapted model
            jobs.append({"setup": setup, "model": model,
                         "modules": task_language_modules + [modules[m.name] for m in fitting[:1]],
                         "tasks": [f"{task.name}={kind}:{task_files(ctx, task)[1]}"]})
    return jobs


def evaluate_stage(ctx: StageContext) -> dict:
    """Source model vs adapted model: bpc on held-out text, retrieval, zero-shot tasks (eval harness).

    Each harness call's rows are written (atomically) to ``rows/`` as soon as it finishes; a rerun
    after a failure keeps them and computes only the calls still missing.
    """
    cfg: EvaluateStageConfig = ctx.config
    retrieval = cfg.evaluation.retrieval
    source = _initial_model(ctx, cfg.source_model)
    rows = []
    jobs = evaluation_jobs(ctx)
    for job in jobs:
        done = _job_rows_path(ctx, job)
        what = ", ".join(t.split("=")[0] for t in job["tasks"])
        if done.is_file():
            ctx.log(f"kept {job['setup']}: {what} (finished in an earlier attempt)")
            kept = read_sidecar(done, "the rows of a finished evaluation call", "delete it to compute them again",
                                {"rows": list})["rows"]
            if not all(isinstance(row, dict) for row in kept):
                raise UserError(f"{done}: the rows of a finished evaluation call must be objects; delete it to "
                                "compute them again")
            rows += kept
            continue
        ctx.log(f"evaluating {job['setup']}: {what}")
        run = evaluate(job["model"], job["tasks"], modules=job["modules"], source_model=source,
                       layer=retrieval.layer if retrieval else None, name=job["setup"])
        job_rows = to_rows([run])  # with each score's 95% interval (low, high)
        with atomic_file(done) as handle:
            json.dump({"job": job, "rows": job_rows}, handle, indent=2)
        rows += job_rows
    record: dict[str, Any] = {"language": cfg.language, "rows": rows, "jobs": jobs}
    comparison = ctx.input("init") / "comparison.json"
    if comparison.is_file():
        chosen = json.loads(comparison.read_text(encoding="utf-8"))
        record["comparisons"] = {"step-0 bpc by init method (dev)": {c["method"]: c["bpc"] for c in chosen["candidates"]}}
    (ctx.work_dir / "evaluation.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return {"rows": len(rows)}


def _job_rows_path(ctx: StageContext, job: dict[str, Any]) -> Path:
    """``rows/<setup>-<digest>.json``: named by everything the harness call reads, so a changed call is redone."""
    digest = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]
    folder = ctx.work_dir / ROWS_FOLDER
    folder.mkdir(exist_ok=True)
    return folder / f"{job['setup'].replace('+', '-')}-{digest}.json"


def report_stage(ctx: StageContext) -> dict:
    """Markdown tables + PNG plots: setups per task, init comparison, training curves."""
    cfg: ReportStageConfig = ctx.config
    inputs: list[Any] = [ctx.input("evaluate") / "evaluation.json"]
    inputs += sorted(path for stage, folder in ctx.inputs.items() if stage != "evaluate"
                     for path in folder.rglob(METRICS_FILE))
    path = write_report(inputs, ctx.work_dir / "report", overwrite=True,
                        title=f"langgraft: {cfg.source_model} -> {cfg.language}")
    return {"report": str(path)}


# ------------------------------------------------------------------------------------ plan
def plan(pipeline: "Pipeline") -> list[StageSpec]:
    """The ordered stages of ``pipeline.config``; each gets exactly the config it reads (its key).

    A stage's config is the YAML sections it reads and nothing else (evaluation settings never
    reach the corpus stage, module settings never reach pretraining), so changing a key reruns
    only the stages that read it and those after them that read their outputs. Every check the
    YAML, the source model's config (no weights) and the files allow is made here, before any
    stage runs: a refusal is one line naming the key and the fix.
    """
    config = pipeline.config
    base = pipeline.base_dir
    model = source_model_path(config)
    model_config = load_config(model)
    for side, source in (("target", config.corpora.target), ("source", config.corpora.source)):
        if source is not None and bool(source.bible) == bool(source.files):
            raise UserError(f"corpora.{side}: give either bible: CODE (an installed Bible: eng, nya) or files: [...]")
    _check_tasks(config)
    _check_files(config, base)
    seed = config.seed
    corpus_refs = _corpus_refs(config.corpora.target, base) + _corpus_refs(config.corpora.source, base)
    specs = [StageSpec("corpus", corpus_stage, CorpusStageConfig(config.corpora, seed), external=tuple(corpus_refs))]
    recover = config.head.recover == "always" or (config.head.recover == "auto" and not has_lm_head(model_config))
    if recover:
        if config.corpora.source is None:
            raise UserError(f"head recovery (head.recover: {config.head.recover}; {config.source_model} has no LM head) "
                            "needs source-language text: add corpora.source")
        specs.append(StageSpec("head", head_stage, HeadStageConfig(config.head, seed, model),
                               needs=("corpus",), external=(model,)))
    specs.append(StageSpec("tokenizer", tokenizer_stage, TokenizerStageConfig(config.tokenizer, model),
                           needs=("corpus",), external=(model,)))
    init_needs = ("corpus", "tokenizer") + (("head",) if recover else ())
    resource_refs = [resolve_path(base, r) for r in (config.init.resources.source_embeddings,
                     config.init.resources.target_embeddings, config.init.resources.dictionary,
                     *_parallel_paths(config)) if r]  # parallel: corpus is keyed by the corpus stage's key
    specs.append(StageSpec("init", init_stage, InitStageConfig(config.init, config.tokenizer.mode, seed, model),
                           needs=init_needs, external=tuple(resource_refs) + (() if recover else (model,))))
    _check_init(config)
    distilled = ("distill",) if config.distill is not None else ()
    if config.distill is not None:
        _check_distill(config)
        specs.append(StageSpec("distill", distill_stage,
                               DistillStageConfig(config.distill, seed, model, config.init.resources.parallel),
                               needs=("corpus", "init") + (("head",) if recover else ()),
                               external=tuple(resolve_path(base, p) for p in _parallel_paths(config))
                               + (() if recover else (model,))))
    if config.pretrain is not None:
        specs.append(StageSpec("pretrain", pretrain_stage, PretrainStageConfig(config.pretrain, seed),
                               needs=("corpus", "init") + distilled))
    evaluation = config.evaluation
    retrieval = evaluation.retrieval
    derived_tasks = [t for t in evaluation.tasks if t.bible or t.max_examples is not None]
    sampled_pairs = retrieval is not None and (retrieval.pairs == "corpus" or retrieval.max_pairs is not None)
    eval_data = bool(derived_tasks) or sampled_pairs or bool(evaluation.benchmarks)
    if eval_data:
        data_config = EvalDataStageConfig(derived_tasks, retrieval.pairs if sampled_pairs else None,
                                          retrieval.max_pairs if retrieval else None, seed)
        if evaluation.benchmarks:  # keyed only when present: runs without benchmarks keep their keys
            data_config = dataclasses.replace(data_config, benchmarks=evaluation.benchmarks, language=config.language)
        pair_files = retrieval.pairs if sampled_pairs and retrieval.pairs != "corpus" else []
        specs.append(StageSpec("eval-data", eval_data_stage, data_config,
            needs=("corpus",), external=tuple(resolve_path(base, f) for t in derived_tasks if not t.bible
                                              for f in (t.train, t.test))
            + tuple(resolve_path(base, b.data_dir) for b in evaluation.benchmarks if b.data_dir)
            + tuple(resolve_path(base, f) for f in pair_files)))
    adapted_stage = model_stage(pipeline)
    task_names = [t.name for t in evaluation.tasks] + [b.name for b in evaluation.benchmarks]
    all_modules = list(config.modules) + _default_benchmark_modules(config, model_config)
    earlier: dict[str, Any] = {}
    for index, module in enumerate(all_modules):
        where = f"modules[{index}]"
        if not module.name:
            raise UserError(f"{where}.name is missing; every module needs a name")
        if not is_plain_name(module.name):  # it names the stage folder and the published modules/<name>/
            raise UserError(f"{where}.name: {module.name!r} must be one plain folder name (letters, digits, '.', '_', "
                            "'-'; no '/', not '..')")
        if module.name in earlier:
            raise UserError(f"{where}.name: {module.name!r} is used twice; module names must be unique")
        if module.role == "task" and module.task not in task_names:
            raise UserError(f"{where}.task: {module.task!r} is not an evaluation task; "
                            f"tasks: {', '.join(task_names) or 'none (add evaluation.tasks)'}")
        stacked = earlier.get(module.language_module)
        if module.language_module and (stacked is None or stacked.role != "language" or stacked.corpus != "source"):
            choices = [m.name for m in earlier.values() if m.role == "language" and m.corpus == "source"]
            raise UserError(f"{where}.language_module: {module.language_module!r} is not an earlier source-language "
                            f"module (role: language, corpus: source); earlier ones: {', '.join(choices) or 'none'}")
        _check_module_base(config, module, where)
        if module_base(module) == "adapted":
            needs, external = ("corpus", adapted_stage), ()
        else:  # task and source-language modules learn on the source model (with its recovered head, if any)
            needs, external = ("corpus",) + (("head",) if recover else ()), (() if recover else (model,))
        if module.language_module:
            needs += (f"module-{module.language_module}",)
        _check_module_options(module, where)
        task = next((t for t in [*evaluation.tasks, *evaluation.benchmarks] if t.name == module.task), None)
        if isinstance(task, BenchmarkConfig) and task_kind(task) == "retrieval":
            raise UserError(f"{where}.task: {task.name} is a retrieval benchmark; it needs no task module")
        if isinstance(task, BenchmarkConfig) or task is not None and (task.bible or task.max_examples is not None):
            needs += ("eval-data",)
        elif task is not None:
            external += (resolve_path(base, task.train),)
        specs.append(StageSpec(f"module-{module.name}", module_stage,
                               ModuleStageConfig(module, task, seed, config.language, model),
                               needs=needs, external=external))
        earlier[module.name] = module
    _check_composition(config, all_modules)
    _check_lengths(config, model_config, recover, model)
    module_stages = tuple(s.name for s in specs if s.name.startswith("module-"))
    for index, task in enumerate(evaluation.tasks):
        if not any(m.role == "task" and m.task == task.name for m in config.modules):
            raise UserError(f"evaluation.tasks[{index}] ({task.name!r}) has no task module to evaluate; add a "
                            f"module with role: task and task: {task.name}")
    model_needs = ("head",) if recover else ()
    evaluate_needs = ("corpus", "init") + distilled + ((("pretrain",) if config.pretrain is not None else ()) + model_needs
                                           + (("eval-data",) if eval_data else ()) + module_stages)
    evaluation_files = [resolve_path(base, t.test) for t in evaluation.tasks if not t.bible and t.max_examples is None]
    if retrieval is not None and not sampled_pairs:
        evaluation_files += [resolve_path(base, p) for p in retrieval.pairs]
    specs.append(StageSpec("evaluate", evaluate_stage,
                           EvaluateStageConfig(evaluation, seed, config.language, model, all_modules),
                           needs=evaluate_needs, external=(model, *evaluation_files)))
    report_needs = ("evaluate", "init") + distilled + (("pretrain",) if config.pretrain is not None else ()) \
        + module_stages
    specs.append(StageSpec("report", report_stage, ReportStageConfig(config.language, config.source_model),
                           needs=report_needs))
    return specs


def _default_benchmark_modules(config: PipelineConfig, model_config: Any) -> list[Any]:
    """A LoRA task module (default options) for every benchmark that needs one and has none in ``modules:``.

    Retrieval needs none; neither does multiple choice on a decoder (answers are scored by likelihood).
    When full pretraining steps change the body, an extension-mode pipeline also trains one on the
    adapted model (``<benchmark>-task-adapted``), which the adapted setups use.
    """
    declared = {m.task for m in config.modules if m.role == "task"}
    wanted = [b for b in config.evaluation.benchmarks if b.name not in declared and BENCHMARKS[b.name].kind != "retrieval"]
    if any(BENCHMARKS[b.name].kind == "multiple-choice" for b in wanted) and head_kind(model_config) == "clm":
        wanted = [b for b in wanted if BENCHMARKS[b.name].kind != "multiple-choice"]
    modules = [ModuleConfig(name=f"{b.name}-task", role="task", task=b.name) for b in wanted]
    if body_changing_steps(config) and config.tokenizer.mode == "extend":
        modules += [ModuleConfig(name=f"{b.name}-task-adapted", role="task", task=b.name, base="adapted")
                    for b in wanted]
    return modules


def _check_module_base(config: PipelineConfig, module: Any, where: str) -> None:
    """``base`` belongs to task modules; ``adapted`` needs a model that still reads the source language."""
    if module.base is None:
        return
    if module.role == "language":
        raise UserError(f"{where}.base: a language module's base follows its corpus (target: the adapted model, "
                        "source: the source model); remove base")
    if module.base == "adapted" and config.tokenizer.mode != "extend":
        raise UserError(f"{where}.base: adapted trains the task module on source-language labels read by the "
                        "adapted model, which reads the source language only when tokenizer.mode is extend; set "
                        "tokenizer.mode: extend, or base: source")
    if module.base == "adapted" and module.language_module:
        raise UserError(f"{where}.language_module: a module stacked on a source-language module is trained on the "
                        "source model; remove language_module, or set base: source")


def _check_composition(config: PipelineConfig, modules: list[Any]) -> None:
    """Every task module evaluate composes onto the adapted model must be trained on that model's body.

    Embeddings-only steps (and init, distill) keep the source body, so modules trained on the source
    model compose onto the adapted one; full steps change it, and then a task needs a module trained
    on the adapted model (``base: adapted``), which an extension-mode model can train on source labels.
    """
    full = body_changing_steps(config)
    if not full:
        return
    for task in dict.fromkeys(m.task for m in modules if m.role == "task"):
        declared = [(i, m) for i, m in enumerate(modules) if m.role == "task" and m.task == task]
        if any(module_base(m) == "adapted" for _, m in declared):
            continue
        index, module = declared[0]
        steps = (f"pretrain.max_steps ({config.pretrain.max_steps}) > pretrain.embedding_steps "
                 f"({config.pretrain.embedding_steps})")
        if index >= len(config.modules):  # a benchmark's default module (train mode: no adapted one is added)
            bench = next(i for i, b in enumerate(config.evaluation.benchmarks) if b.name == task)
            raise UserError(f"evaluation.benchmarks[{bench}] ({task}): its default task module is trained on the "
                            f"source model, but {steps} changes the body evaluate would compose it on; set "
                            f"pretrain.embedding_steps: {config.pretrain.max_steps} (embeddings-only pretraining), "
                            "or tokenizer.mode: extend (a module trained on the adapted model is added)")
        if config.tokenizer.mode == "extend":
            fix = (f"set modules[{index}].base: adapted (zero-shot after full continued pretraining), or "
                   f"pretrain.embedding_steps: {config.pretrain.max_steps} (embeddings-only pretraining)")
        else:
            fix = (f"set pretrain.embedding_steps: {config.pretrain.max_steps} (embeddings-only pretraining), or "
                   f"tokenizer.mode: extend with modules[{index}].base: adapted")
        raise UserError(f"modules[{index}].base: task module {module.name!r} is trained on the source model, but "
                        f"{steps} changes the body evaluate would compose it on; {fix}")


def _tokenizer_limit(model: str) -> int | None:
    """``model_max_length`` of a local source tokenizer (``tokenizer_config.json``; no tokenizer is loaded)."""
    path = Path(model) / "tokenizer_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("model_max_length") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None  # the tokenizer stage reports a broken tokenizer with its own line
    return value if isinstance(value, int) and 0 < value < 1_000_000 else None


def _check_lengths(config: PipelineConfig, model_config: Any, recover: bool, model: str) -> None:
    """Every sequence length of the YAML fits the source model's position table and its tokenizer's
    ``model_max_length``, as pretraining checks them (the adapted model keeps both)."""
    limits = [(position_limit(model_config), "positions"),
              (_tokenizer_limit(model), "tokens (tokenizer model_max_length)")]
    limits = [(value, what) for value, what in limits if value is not None]
    if not limits:
        return
    limit, what = min(limits)
    lengths: list[tuple[str, int]] = []
    if config.pretrain is not None:
        lengths.append(("pretrain.max_seq_length", config.pretrain.max_seq_length))
    if config.distill is not None:
        lengths.append(("distill.max_seq_length", config.distill.max_seq_length))
    if recover:
        lengths.append(("head.max_seq_length", config.head.max_seq_length))
    lengths += [(f"modules[{i}].max_seq_length", m.max_seq_length) for i, m in enumerate(config.modules)]
    for key, value in lengths:
        if value is not None and value > limit:
            raise UserError(f"{key}: {value} tokens exceed the {limit} {what} of {config.source_model} "
                            f"({getattr(model_config, 'model_type', 'model')}); set {key}: {limit} or less")


def _check_files(config: PipelineConfig, base: Path) -> None:
    """Every file the YAML names must exist before anything runs (one line naming the key)."""
    named: list[tuple[str, str | None]] = []
    for side in ("target", "source"):
        source = getattr(config.corpora, side)
        named += [(f"corpora.{side}.files[{i}]", f) for i, f in enumerate(source.files if source else [])]
    resources = config.init.resources
    named += [(f"init.resources.{key}", getattr(resources, key))
              for key in ("source_embeddings", "target_embeddings", "dictionary")]
    named += [(f"init.resources.parallel[{i}]", f) for i, f in enumerate(_parallel_paths(config))]
    for index, task in enumerate(config.evaluation.tasks):
        named += [(f"evaluation.tasks[{index}].train", task.train), (f"evaluation.tasks[{index}].test", task.test)]
    retrieval = config.evaluation.retrieval
    if retrieval is not None and retrieval.pairs != "corpus":
        named += [(f"evaluation.retrieval.pairs[{i}]", f) for i, f in enumerate(retrieval.pairs)]
    named += [(f"evaluation.benchmarks[{i}].data_dir", b.data_dir) for i, b in enumerate(config.evaluation.benchmarks)]
    for key, value in named:
        if value and not Path(resolve_path(base, value)).exists():
            raise UserError(f"{key}: {resolve_path(base, value)} not found; check the path (relative paths are "
                            "relative to the pipeline file)")


def _check_tasks(config: PipelineConfig) -> None:
    names: set[str] = set()
    for index, task in enumerate(config.evaluation.tasks):
        where = f"evaluation.tasks[{index}]"
        if not task.name or task.name in names or task.name in ("bpc", "retrieval") or not is_plain_name(task.name):
            raise UserError(f"{where}.name: give each task a unique plain name (letters, digits, '.', '_', '-'; "
                            f"not bpc or retrieval), got {task.name!r}")
        names.add(task.name)
        if bool(task.bible) == bool(task.train or task.test) or not task.bible and not (task.train and task.test):
            raise UserError(f"{where}: give either bible: genre or both train (source language) and test "
                            "(target language) files")
        if task.bible and task.type != "sequence_classification":
            raise UserError(f"{where}.type: the Bible genre task is sequence_classification")
        if task.bible and not (config.corpora.target.bible and config.corpora.source and config.corpora.source.bible):
            raise UserError(f"{where} (bible: {task.bible}) needs corpora.source.bible and corpora.target.bible; "
                            "give train/test files otherwise")
    for index, bench in enumerate(config.evaluation.benchmarks):
        if bench.name in names:
            raise UserError(f"evaluation.benchmarks[{index}].name: {bench.name!r} is listed twice or is also a task name")
        names.add(bench.name)
    retrieval = config.evaluation.retrieval
    if retrieval is not None and retrieval.pairs != "corpus" and len(retrieval.pairs) != 2:
        raise UserError("evaluation.retrieval.pairs: give corpus or [source_file, target_file]")
    if retrieval is not None and retrieval.pairs == "corpus" and config.corpora.source is None:
        raise UserError("evaluation.retrieval.pairs: corpus needs corpora.source with ids shared with "
                        "corpora.target (e.g. both Bibles); give [source_file, target_file] otherwise")


def _check_distill(config: PipelineConfig) -> None:
    """The distill section's options and the text its teacher reads, before anything runs."""
    cfg = config.distill
    try:
        options = DistillOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(DistillOptions)})
    except UserError as exc:
        raise UserError(f"distill.{exc}") from None
    if options.teacher_text == "parallel" and config.init.resources.parallel is None:
        raise UserError("distill.teacher_text: parallel needs parallel text; set init.resources.parallel (corpus, or "
                        "[source_file, target_file])")


def _check_module_options(module: Any, where: str) -> None:
    try:
        make_config(module.kind, **module.options)
    except UserError as exc:
        raise UserError(f"{where}.options: {exc}") from None


def _parallel_paths(config: PipelineConfig) -> list[str]:
    """The parallel files the YAML names (none for ``parallel: corpus``, which the corpus stage writes)."""
    parallel = config.init.resources.parallel
    return [] if parallel in (None, "corpus") else list(parallel)


def _check_init(config: PipelineConfig) -> None:
    parallel = config.init.resources.parallel
    if parallel == "corpus" and config.corpora.source is None:
        raise UserError("init.resources.parallel: corpus needs corpora.source (source-language text whose ids "
                        "match corpora.target, e.g. both Bibles); add corpora.source or give [source_file, target_file]")
    if parallel not in (None, "corpus") and len(parallel) != 2:
        raise UserError(f"init.resources.parallel: give corpus or [source_file, target_file], got {len(parallel)} "
                        "file(s)")
    methods = list(list_methods())
    if config.init.method != "auto" and config.init.method not in methods:
        raise UserError(f"init.method: {config.init.method!r} is not a known method; allowed: auto, {', '.join(methods)}")
    for index, name in enumerate(config.init.candidates or []):
        if name not in methods:
            raise UserError(f"init.candidates[{index}]: {name!r} is not a known method; allowed: {', '.join(methods)}")
    for name, options in config.init.options.items():
        if name not in methods:
            raise UserError(f"init.options.{name}: not a known method; allowed: {', '.join(methods)}")
        try:
            config_from_options(name, options)
        except UserError as exc:
            raise UserError(f"init.options.{name}: {exc}") from None
