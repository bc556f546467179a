"""One call evaluates a model (plus modules) on a list of tasks: ``evaluate(model, ["seq-cls:test.tsv", ...])``.

A task is written ``[NAME=]KIND:FILE[,FILE]`` (:class:`TaskSpec`); kinds live in :data:`TASKS`
(PEFT-style registry: one small runner per kind). Each runner gets a :class:`ModelSource`, which
loads the checkpoint once per head type (classifier, tagger, language model, bare encoder) and
composes the given modules onto it: the task module whose task matches the kind, and every
language module. Named benchmarks (``benchmarks=["sib200", ...]``, :mod:`langgraft.eval.benchmarks`)
are written out as such task files and scored by the same runners (:func:`evaluate_benchmarks`).

The result is a JSON-ready *run* dict that :func:`langgraft.eval.report.write_report` turns into
tables and plots::

    {"name": ..., "model": ..., "modules": [...], "source_model": ...,
     "results": [{"name": "seq-cls:test.tsv", "task": "seq-cls", "files": [...],
                  "metrics": {"accuracy": 0.61, "macro_f1": 0.58, "examples": 300},
                  "intervals": {"accuracy": [0.57, 0.65], "macro_f1": [0.53, 0.62]}}, ...]}

``intervals`` are bootstrap 95% intervals over the test examples (:mod:`langgraft.eval.intervals`).
A module directory may be a *seed set* (``langgraft module train-task --seeds N``): every task that
uses it is scored once per seed, ``metrics`` holds the mean, ``sd`` the standard deviation and
``seeds`` each seed's own metrics and intervals.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from langgraft.adapters.base import load_module, seed_set_members
from langgraft.adapters.compose import compose, train_task_module
from langgraft.adapters.tasks import load_task_model, task_model_class
from langgraft.adapters.training import TrainOptions
from langgraft.errors import UserError
from langgraft.eval.benchmarks import BENCHMARKS, Benchmark, get_benchmark, prepare_benchmark
from langgraft.eval.bpc import compute_bpc
from langgraft.eval.intervals import IntervalOptions, seed_summary
from langgraft.models import head_kind, load_config, load_language_model, load_model, load_tokenizer
from langgraft.options import Validated, option
from langgraft.vocab.tokstats import tokenizer_stats


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation: a task kind, its data file(s) and the name it gets in reports."""

    kind: str
    files: tuple[str, ...]
    name: str

    @classmethod
    def parse(cls, text: str | "TaskSpec") -> "TaskSpec":
        """``[NAME=]KIND:FILE[,FILE]``, e.g. ``genre=seq-cls:test.tsv`` or ``retrieval:en.txt,ny.txt``."""
        if isinstance(text, TaskSpec):
            return text
        name, equals, rest = text.partition("=")
        if not equals or ":" in name:
            name, rest = "", text
        kind, colon, files_text = rest.partition(":")
        kind = kind.strip()
        files = tuple(f.strip() for f in files_text.split(",") if f.strip())
        if not colon or kind not in TASKS:
            raise UserError(f"task {text!r} is not KIND:FILE; KIND is one of {', '.join(TASKS)} "
                            "(e.g. seq-cls:test.tsv, retrieval:src.txt,tgt.txt)")
        wanted = 2 if kind == "retrieval" else 1
        if len(files) != wanted:
            raise UserError(f"task {text!r}: {kind} takes {wanted} file(s) separated by a comma, got {len(files)}")
        return cls(kind, files, name.strip() or f"{kind}:{','.join(Path(f).name for f in files)}")


class ModelSource:
    """A checkpoint directory (or hub name) plus module directories, loaded lazily per head type."""

    def __init__(self, model: str | Path, modules: Sequence[str | Path] = ()) -> None:
        self.path = str(model)
        self.module_paths = [str(m) for m in modules]
        self._tokenizer: Any = None
        self._models: dict[str, Any] = {}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.path)
        return self._tokenizer

    def _modules(self) -> list[Any]:
        return [load_module(path) for path in self.module_paths]

    def has_task_module(self, kind: str) -> bool:
        return any(m.metadata.role == "task" and m.metadata.task == kind for m in self._modules())

    def is_causal(self) -> bool:
        """A decoder (CLM head), whose multiple-choice answers are scored by log-likelihood."""

        return head_kind(load_config(self.path)) == "clm"

    def with_task_module(self, module: str | Path) -> "ModelSource":
        """The same checkpoint with the language modules and ``module`` as its only task module."""
        language = [str(m.path) for m in self._modules() if m.metadata.role == "language"]
        return ModelSource(self.path, [*language, str(module)])

    def _compose(self, model: Any, modules: list[Any]) -> Any:
        if not modules:
            return model

        return compose(model, modules)

    def classifier(self, kind: str) -> Any:
        """A ``*ForSequenceClassification`` / ``*ForTokenClassification`` model for ``kind``.

        The head comes from a task module for ``kind`` when one is given, else from the checkpoint
        itself (a checkpoint without a trained head is a :class:`UserError`).
        """
        if kind in self._models:
            return self._models[kind]

        modules = self._modules()
        task_modules = [m for m in modules if m.metadata.role == "task"]
        matching = [m for m in task_modules if m.metadata.task == kind]
        if len(matching) > 1:
            raise UserError(f"{len(matching)} {kind} task modules given; pass one per evaluation")
        if matching:
            model, _ = load_task_model(self.path, kind, matching[0].metadata.labels)
            chosen = [m for m in modules if m.metadata.role == "language"] + matching
        else:
            model, info = load_model(self.path, auto_class=task_model_class(kind), output_loading_info=True)
            head = sorted(set(info.get("missing_keys", ())) & {n for n, _ in model.named_parameters()})
            if head:
                raise UserError(
                    f"model {self.path} has no trained {kind} head ({head[0]} is missing); pass a fine-tuned "
                    f"checkpoint or a {kind} task module with --modules")
            chosen = [m for m in modules if m.metadata.role == "language"]
        self._models[kind] = self._compose(model, chosen)
        return self._models[kind]

    def language_model(self) -> Any:
        """The checkpoint with its MLM/CLM head and the language modules (for bits per character)."""
        if "lm" not in self._models:
            model, _ = load_language_model(self.path)
            self._models["lm"] = self._compose(model, [m for m in self._modules() if m.metadata.role == "language"])
        return self._models["lm"]

    def encoder(self) -> Any:
        """The model whose hidden states retrieval pools.

        With language modules: the language model they were trained on (their weights are named
        for it); without: the bare body, which skips computing vocabulary logits.
        """
        if "lm" in self._models or any(m.metadata.role == "language" for m in self._modules()):
            return self.language_model()
        if "encoder" not in self._models:
            self._models["encoder"] = load_model(self.path)
        return self._models["encoder"]


@dataclass
class EvalOptions(IntervalOptions):
    """Options shared by the tasks (``langgraft eval`` options and :func:`evaluate` keywords)."""

    layer: int | None = option(None, help="hidden layer pooled for retrieval (default: the middle one; -1: the last)")
    batch_size: int = option(32, help="examples per forward pass", ge=1, le=1 << 20)
    max_pairs: int | None = option(None, help="use at most this many retrieval pairs", ge=1)


@dataclass
class BenchmarkOptions(Validated):
    """Options of named benchmarks (``langgraft eval --benchmark`` options and :func:`evaluate` keywords)."""

    language: str | None = option(None, help="target language of --benchmark: the benchmark's config "
                                  "(nya_Latn for sib200/belebele/flores200, ny for wikiann, a treebank for ud)")
    source_language: str | None = option(None, help="language the task module learns on and retrieval pairs with "
                                         "(default: each benchmark's English)")
    data_dir: str | None = option(None, help="local folder with <config>/<split>*.parquet|jsonl|csv files (the "
                                  "hub's columns) instead of the hub or the HF cache")
    max_examples: int | None = option(None, help="a seeded sample of this many examples per benchmark split", ge=1)
    task_modules: str | None = option(None, help="folder where task modules trained on the benchmarks' source "
                                      "split are kept and reused (default: a temporary folder)")
    task_steps: int = option(200, help="optimizer steps of a benchmark's task module", ge=1, le=1 << 30)
    task_module_kind: str = option("lora", help="module kind of a benchmark's task module")


@dataclass(frozen=True)
class BenchmarkSpec:
    """``NAME[:LANGUAGE]``: a registered benchmark and the config of its target language."""

    benchmark: Benchmark
    language: str

    @classmethod
    def parse(cls, text: str | "BenchmarkSpec", language: str | None) -> "BenchmarkSpec":
        if isinstance(text, BenchmarkSpec):
            return text
        name, _, own = text.partition(":")
        benchmark = get_benchmark(name.strip())
        chosen = own.strip() or language
        if not chosen:
            raise UserError(f"benchmark {name}: no target language; pass --language ({benchmark.languages_note}) "
                            f"or {name}:LANGUAGE")
        return cls(benchmark, chosen)


@dataclass
class EvalContext(EvalOptions):
    """What a task runner needs: the evaluated model, the retrieval source side, options."""

    target: ModelSource | None = None
    source: ModelSource | None = None

    def interval_options(self) -> dict[str, int]:
        return {"bootstrap": self.bootstrap, "bootstrap_seed": self.bootstrap_seed}


def _seq_cls(spec: TaskSpec, ctx: EvalContext) -> dict[str, Any]:
    # deferred: keeps torch off `langgraft --help`
    from langgraft.eval.tasks import evaluate_sequence_classification

    _check_files(spec)
    return evaluate_sequence_classification(ctx.target.classifier("seq-cls"), ctx.target.tokenizer, spec.files[0],
                                            batch_size=ctx.batch_size, **ctx.interval_options())


def _token_cls(spec: TaskSpec, ctx: EvalContext) -> dict[str, Any]:
    # deferred: keeps torch off `langgraft --help`
    from langgraft.eval.tasks import evaluate_token_classification

    _check_files(spec)
    return evaluate_token_classification(ctx.target.classifier("token-cls"), ctx.target.tokenizer, spec.files[0],
                                         batch_size=ctx.batch_size, **ctx.interval_options())


def _retrieval(spec: TaskSpec, ctx: EvalContext) -> dict[str, Any]:
    # deferred: keeps torch off `langgraft --help`
    from langgraft.eval.retrieval import evaluate_retrieval

    _check_files(spec)
    source = (ctx.source.encoder(), ctx.source.tokenizer)
    target = (ctx.target.encoder(), ctx.target.tokenizer)
    return evaluate_retrieval(source, target, (spec.files[0], spec.files[1]), layer=ctx.layer,
                              batch_size=ctx.batch_size, max_pairs=ctx.max_pairs, **ctx.interval_options())


def _multiple_choice(spec: TaskSpec, ctx: EvalContext) -> dict[str, Any]:
    """A multiple-choice head (task module or fine-tuned encoder); for a decoder without one, answer log-likelihood."""
    # deferred: keeps torch off `langgraft --help`
    from langgraft.eval.tasks import evaluate_choice_likelihood, evaluate_multiple_choice

    _check_files(spec)
    if not ctx.target.has_task_module("multiple-choice") and ctx.target.is_causal():
        return evaluate_choice_likelihood(ctx.target.language_model(), ctx.target.tokenizer, spec.files[0],
                                          batch_size=ctx.batch_size, **ctx.interval_options())
    return evaluate_multiple_choice(ctx.target.classifier("multiple-choice"), ctx.target.tokenizer, spec.files[0],
                                    batch_size=ctx.batch_size, **ctx.interval_options())


def _bpc(spec: TaskSpec, ctx: EvalContext) -> dict[str, Any]:
    _check_files(spec)
    return compute_bpc(ctx.target.language_model(), ctx.target.tokenizer, Path(spec.files[0]),
                       batch_size=ctx.batch_size, **ctx.interval_options()).to_dict()


def _fertility(spec: TaskSpec, ctx: EvalContext) -> dict[str, Any]:
    """Tokenizer statistics on a text file; vocabulary overlap is measured against the source model's tokenizer."""

    _check_files(spec)
    tokenizers = {"model": ctx.target.tokenizer}
    if ctx.source is not ctx.target:
        tokenizers["source"] = ctx.source.tokenizer
    row = tokenizer_stats(tokenizers, [spec.files[0]], reference="source" if "source" in tokenizers else "model")[0]
    keys = ["fertility", "split_share", "unk_rate"] + (["overlap"] if ctx.source is not ctx.target else [])
    return {**{k: float(row[k]) for k in keys}, **{k: int(row[k]) for k in ("vocab_size", "words", "tokens")}}


TASKS: dict[str, Callable[[TaskSpec, EvalContext], dict[str, Any]]] = {
    "seq-cls": _seq_cls,
    "token-cls": _token_cls,
    "multiple-choice": _multiple_choice,
    "retrieval": _retrieval,
    "bpc": _bpc,
    "fertility": _fertility,
}


def _check_files(spec: TaskSpec) -> None:
    for file in spec.files:
        if not Path(file).is_file():
            raise UserError(f"task {spec.name}: file {file} not found; check the path after '{spec.kind}:'")


MODULE_FREE_KINDS = {"fertility"}  # task kinds that never compose modules (a seed set does not repeat them)


def _uses_module(kind: str, metadata: Any) -> bool:
    """Whether a task of ``kind`` composes a module: language modules always, a task module for its own task."""
    if kind in MODULE_FREE_KINDS:
        return False
    return metadata.role == "language" or metadata.task == kind


def _with_intervals(result: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """``result`` with the runner's ``metrics``, its ``intervals`` lifted out of them to sit beside them."""
    metrics = dict(metrics)
    intervals = metrics.pop("intervals", None) or {}
    return {**result, "metrics": metrics, **({"intervals": intervals} if intervals else {})}


def _result(spec: TaskSpec, metrics: dict[str, Any]) -> dict[str, Any]:
    return _with_intervals({"name": spec.name, "task": spec.kind, "files": list(spec.files)}, metrics)


def _seed_result(seeds: list[int], per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One result for a task scored once per seed: mean metrics, their sd, and every seed's own numbers."""
    mean, sd = seed_summary([r["metrics"] for r in per_seed])
    fields = {k: v for k, v in per_seed[0].items() if k not in ("metrics", "intervals")}
    return {**fields, "metrics": mean, "sd": sd,
            "seeds": [{"seed": seed, "metrics": r["metrics"], "intervals": r.get("intervals", {})}
                      for seed, r in zip(seeds, per_seed)]}


def module_variants(modules: Sequence[str | Path]) -> tuple[list[int] | None, list[list[str]], list[bool]]:
    """Expand seed sets: (their seeds, one module list per seed, which positions are seed sets).

    Seed sets given together must hold the same seeds (their i-th members are composed together).
    """

    sets = [seed_set_members(m) for m in modules]
    seed_lists = {tuple(seed for seed, _ in members) for members in sets if members}
    if len(seed_lists) > 1:
        raise UserError(f"seed sets with different seeds given together: {sorted(seed_lists)}; "
                        "train them with the same --seed and --seeds")
    if not seed_lists:
        return None, [[str(m) for m in modules]], [False] * len(modules)
    seeds = list(seed_lists.pop())
    variants = [[str(members[i][1]) if members else str(m) for m, members in zip(modules, sets)]
                for i in range(len(seeds))]
    return seeds, variants, [members is not None for members in sets]


def evaluate(
    model: str | Path,
    tasks: Sequence[str | TaskSpec],
    *,
    modules: Sequence[str | Path] = (),
    source_model: str | Path | None = None,
    layer: int | None = EvalOptions.layer,
    batch_size: int = EvalOptions.batch_size,
    max_pairs: int | None = EvalOptions.max_pairs,
    bootstrap: int = EvalOptions.bootstrap,
    bootstrap_seed: int = EvalOptions.bootstrap_seed,
    name: str | None = None,
    benchmarks: Sequence[str | BenchmarkSpec] = (),
    language: str | None = BenchmarkOptions.language,
    source_language: str | None = BenchmarkOptions.source_language,
    data_dir: str | Path | None = BenchmarkOptions.data_dir,
    max_examples: int | None = BenchmarkOptions.max_examples,
    task_modules: str | Path | None = BenchmarkOptions.task_modules,
    task_steps: int = BenchmarkOptions.task_steps,
    task_module_kind: str = BenchmarkOptions.task_module_kind,
) -> dict[str, Any]:
    """Evaluate ``model`` (+ ``modules``) on every task and benchmark; returns the run dict (see module docstring).

    ``benchmarks``: registered names (``sib200``, ``belebele``, ...; ``NAME:LANGUAGE`` for a config
    of its own), scored zero-shot on ``language``: see :func:`evaluate_benchmarks`.

    ``source_model`` embeds the source side of retrieval tasks, without modules (default: ``model``
    with the modules), e.g. the English source checkpoint for English while the adapted model
    embeds the new language; it is also the reference vocabulary for fertility's ``overlap``.
    All task specs are parsed and their files checked before any model is loaded. A seed set
    among ``modules`` repeats the tasks that compose it once per seed (one seed's models in memory
    at a time) and reports mean and sd.
    """

    options = EvalOptions(layer=layer, batch_size=batch_size, max_pairs=max_pairs, bootstrap=bootstrap,
                          bootstrap_seed=bootstrap_seed)
    bench_options = BenchmarkOptions(language=language, source_language=source_language,
                                     data_dir=None if data_dir is None else str(data_dir), max_examples=max_examples,
                                     task_modules=None if task_modules is None else str(task_modules),
                                     task_steps=task_steps, task_module_kind=task_module_kind)
    specs = [TaskSpec.parse(task) for task in tasks]
    bench_specs = [BenchmarkSpec.parse(b, language) for b in benchmarks]
    if not specs and not bench_specs:
        raise UserError("no evaluation task given; add --task KIND:FILE (kinds: " + ", ".join(TASKS) + ") or "
                        "--benchmark NAME (" + ", ".join(sorted(BENCHMARKS)) + ")")
    for spec in specs:
        _check_files(spec)
    seeds, variants, is_set = module_variants(modules)
    metadata = [load_module(path).metadata for path in variants[0]]

    def is_seeded(kind: str) -> bool:
        return seeds is not None and any(s and _uses_module(kind, m) for s, m in zip(is_set, metadata))

    seeded = [is_seeded(spec.kind) for spec in specs]
    bench_seeded = [is_seeded(spec.benchmark.kind) for spec in bench_specs]
    per_spec: list[list[dict[str, Any]]] = [[] for _ in specs]
    per_bench: list[list[dict[str, Any]]] = [[] for _ in bench_specs]
    for index, variant in enumerate(variants):
        target = ModelSource(model, variant)
        same_source = source_model is None or (str(source_model) == str(model) and not modules)
        source = target if same_source else ModelSource(source_model)  # an explicit source model: no modules
        ctx = EvalContext(**vars(options), target=target, source=source)
        for position, spec in enumerate(specs):
            if index == 0 or seeded[position]:
                per_spec[position].append(_result(spec, TASKS[spec.kind](spec, ctx)))
        chosen = [i for i, spec in enumerate(bench_specs) if index == 0 or bench_seeded[i]]
        if chosen:
            scored = evaluate_benchmarks([bench_specs[i] for i in chosen], ctx, bench_options,
                                         task_base=str(source_model or model))
            for i, result in zip(chosen, scored):
                per_bench[i].append(result)
    results = [_seed_result(seeds, runs) if seeded[position] else runs[0] for position, runs in enumerate(per_spec)]
    results += [_seed_result(seeds, runs) if bench_seeded[position] else runs[0]
                for position, runs in enumerate(per_bench)]
    return {"name": name or Path(str(model)).name, "model": str(model), "modules": [str(m) for m in modules],
            "source_model": str(source_model) if source_model is not None else None, "results": results}


def evaluate_benchmarks(specs: Sequence[BenchmarkSpec], ctx: EvalContext, options: BenchmarkOptions,
                        task_base: str) -> list[dict[str, Any]]:
    """The zero-shot protocol on named benchmarks; one result dict per benchmark.

    Every benchmark's data is read first (a missing dataset fails before any model loads). Retrieval
    pairs the source language (embedded by the source model) with the target (the evaluated model).
    A classification or multiple-choice benchmark uses a matching task module from ``modules`` when
    one is given; otherwise a task module is trained on the benchmark's source-language train split
    on ``task_base`` (the source model) and composed with the language modules, exactly as the
    pipeline's task modules are. Decoders answer multiple choice by log-likelihood without one.
    """
    with tempfile.TemporaryDirectory(prefix="langgraft-benchmarks-") as work:
        prepared = [prepare_benchmark(spec.benchmark, spec.language, Path(work) / spec.benchmark.name / spec.language,
                                      source_language=options.source_language, data_dir=options.data_dir,
                                      max_examples=options.max_examples) for spec in specs]
        modules_dir = Path(options.task_modules) if options.task_modules else Path(work) / "task-modules"
        results = []
        for spec, files in zip(specs, prepared):
            kind = spec.benchmark.kind
            source_language = options.source_language or spec.benchmark.source_language
            task = TaskSpec(kind, (files["train"], files["test"]) if kind == "retrieval" else (files["test"],),
                            spec.benchmark.name)
            bench_ctx = ctx
            if kind != "retrieval" and not ctx.target.has_task_module(kind) and not (
                    kind == "multiple-choice" and ctx.target.is_causal()):
                module = _benchmark_task_module(spec.benchmark, source_language, files["train"], task_base,
                                                modules_dir, options)
                bench_ctx = dataclasses.replace(ctx, target=ctx.target.with_task_module(module))
            results.append(_with_intervals({"name": spec.benchmark.name, "task": kind,
                                            "benchmark": spec.benchmark.name, "language": spec.language,
                                            "source_language": source_language, "files": []},
                                           TASKS[kind](task, bench_ctx)))
        return results


def _benchmark_task_module(benchmark: Benchmark, source_language: str, train: str, base: str, folder: Path,
                           options: BenchmarkOptions) -> Path:
    """The task module of ``benchmark`` learnt on ``base`` from the source-language train split (reused when kept)."""

    out = folder / f"{benchmark.name}-{source_language}"
    provenance = {"benchmark": benchmark.name, "source_language": source_language, "base": base,
                  "max_examples": options.max_examples, "steps": options.task_steps, "kind": options.task_module_kind}
    record = out / "langgraft_benchmark.json"
    if record.is_file():
        if json.loads(record.read_text(encoding="utf-8")) != provenance:
            raise UserError(f"{out} holds a task module trained otherwise ({record.name}); pass another "
                            "--task-modules folder or remove that one")
        return out
    with contextlib.redirect_stdout(sys.stderr):  # training logs never mix with the results (`--json`)
        train_task_module(options.task_module_kind, base, train, task=benchmark.kind, out=out,
                          options=TrainOptions(max_steps=options.task_steps, save_steps=options.task_steps))
    record.write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return out
