"""Named benchmarks: one small declaration each (hub dataset, revision, configs, splits, columns, task kind).

PEFT-style registry: this base defines :class:`Benchmark` and :data:`BENCHMARKS` and never imports
its members; each member module (``sib200.py``, ``belebele.py``, ...) calls :func:`register_benchmark`
and ``__init__.py`` imports them. A name registered twice is a ``ValueError``.

:func:`prepare_benchmark` turns a declaration into the labelled files the harness and task modules
already read (``train.jsonl``/``test.jsonl``, or ``source.txt``/``target.txt`` for retrieval), so a
benchmark is scored by exactly the code that scores a user's own files.

Data comes through ``datasets``: the hub name (or the local HF cache when offline), or ``data_dir``,
a folder holding ``<config>/<split>*.parquet|jsonl|json|csv`` files with the same columns (CoNLL-U
``<config>/*<split>.conllu`` files for token tasks).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from langgraft.atomic import atomic_file
from langgraft.corpora.readers import read_conllu
from langgraft.errors import UserError

BenchmarkKind = Literal["seq-cls", "token-cls", "retrieval", "multiple-choice"]
DATA_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


@dataclass(frozen=True)
class Benchmark:
    """A published benchmark, declared once.

    ``config`` is the ``datasets`` config of a language (``{language}`` is replaced by the language
    code the user gives); ``source_language`` the default language the task module learns on.
    ``columns`` maps the roles of the task kind to the dataset's column names:

    - ``seq-cls``: ``text``, ``label``;
    - ``token-cls``: ``tokens``, ``tags`` (integer class ids are named by the dataset's ``ClassLabel``
      feature, or by ``labels`` when it has none);
    - ``retrieval``: ``id`` and ``text`` (one config per language, sentences joined on ``id``) or
      ``source`` and ``target`` (one config per language pair holding both sides);
    - ``multiple-choice``: ``context``, ``question``, ``label`` and ``choices`` (the answer
      columns in order); ``first_choice`` is the label value of the first answer.

    ``held_out`` (multiple choice without a train split): the share of passages, grouped by the
    ``group`` column, kept for the test; the rest is the source-language train split, so a
    question is never trained on in one language and tested in another.
    """

    name: str
    kind: BenchmarkKind
    hub: str
    config: str
    source_language: str
    test_split: str
    train_split: str | None
    columns: dict[str, Any]
    metric: str  # the number a paper prints (the report's benchmark table)
    description: str
    citation: str
    license: str
    revision: str | None = None
    labels: tuple[str, ...] = ()
    first_choice: int = 0
    group: str | None = None
    held_out: float | None = None
    languages_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def config_for(self, language: str) -> str:
        return self.config.format(language=language)


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    """Add ``benchmark`` to :data:`BENCHMARKS`; a name registered twice is a ``ValueError``."""
    if benchmark.name in BENCHMARKS:
        raise ValueError(f"benchmark {benchmark.name!r} is already registered")
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


# ----------------------------------------------------------------------------- loading
def _local_files(data_dir: Path, config: str, split: str) -> tuple[str, list[str]] | None:
    """``(builder, files)`` for ``<data_dir>/<config>/<split>*.<suffix>`` (the hub's parquet layout too)."""
    folder = data_dir / config
    for suffix, builder in DATA_SUFFIXES.items():
        files = sorted({str(p) for pattern in (f"{split}{suffix}", f"{split}-*{suffix}", f"*-{split}{suffix}")
                        for p in folder.glob(pattern) if p.is_file()})  # never dev*: devtest
        if files:
            return builder, files
    return None


def _conllu_rows(files: list[Path]) -> Iterator[dict[str, Any]]:
    for file in files:
        for sentence in read_conllu(file):
            yield {"tokens": [t.form for t in sentence], "upos": [t.upos for t in sentence]}


def load_split(benchmark: Benchmark, config: str, split: str, data_dir: str | Path | None = None) -> Any:
    """One split of one config as a ``datasets.Dataset`` (local folder first when ``data_dir`` is given)."""
    import datasets  # deferred: loading datasets (pyarrow, pandas) stays off `langgraft eval --help`

    where = f"benchmark {benchmark.name}: config {config!r}, split {split!r}"
    if data_dir is not None:
        data_dir = Path(data_dir)
        found = _local_files(data_dir, config, split)
        if found is not None:
            builder, files = found
            return datasets.load_dataset(builder, data_files=files, split="train")
        conllu = sorted((data_dir / config).glob(f"*{'dev' if split == 'validation' else split}.conllu"))
        if conllu and benchmark.kind == "token-cls":
            return datasets.Dataset.from_list(list(_conllu_rows(conllu)))
        raise UserError(f"{where}: no {data_dir / config}/{split}*.parquet (or .jsonl/.json/.csv) files; "
                        f"give a folder with one sub-folder per config (check --data-dir)")
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(benchmark.hub, config, split=split, revision=benchmark.revision)
    except (ConnectionError, FileNotFoundError, OSError) as error:
        offline = datasets.config.HF_HUB_OFFLINE
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise UserError(f"{where}: {benchmark.hub} is neither in the local HF cache nor reachable"
                        f"{' (offline mode)' if offline else ''} ({reason}); load it once with a network to cache "
                        f"it, or pass --data-dir with {config}/{split}*.parquet files") from None
    except ValueError as error:  # an unknown config or split
        raise UserError(f"{where}: {str(error).splitlines()[0][:300]}") from None


# ----------------------------------------------------------------------------- conversion
def _column(dataset: Any, benchmark: Benchmark, role: str, where: str) -> str:
    column = benchmark.columns[role]
    if column not in dataset.column_names:
        raise UserError(f"{where}: column {column!r} is missing (columns: {', '.join(dataset.column_names)}); "
                        f"a --data-dir folder needs the hub dataset's columns")
    return column


def _label_names(dataset: Any, column: str, benchmark: Benchmark) -> list[str] | None:
    feature = dataset.features[column]
    inner = getattr(feature, "feature", None) or getattr(feature, "dtype", None)
    names = getattr(inner, "names", None) or getattr(feature, "names", None)
    return list(names) if names else (list(benchmark.labels) or None)


def _name(value: Any, names: list[str] | None) -> str:
    if isinstance(value, str) or names is None:
        return str(value)
    return names[int(value)]


def _records(benchmark: Benchmark, dataset: Any, where: str) -> Iterator[dict[str, Any]]:
    """The dataset's rows in the file format of its task kind."""
    if benchmark.kind == "seq-cls":
        text, label = (_column(dataset, benchmark, r, where) for r in ("text", "label"))
        names = _label_names(dataset, label, benchmark)
        for row in dataset:
            yield {"text": row[text], "label": _name(row[label], names)}
    elif benchmark.kind == "token-cls":
        tokens, tags = (_column(dataset, benchmark, r, where) for r in ("tokens", "tags"))
        names = _label_names(dataset, tags, benchmark)
        for row in dataset:
            if row[tokens]:
                yield {"tokens": list(row[tokens]), "tags": [_name(t, names) for t in row[tags]]}
    elif benchmark.kind == "multiple-choice":
        context, question, label = (_column(dataset, benchmark, r, where) for r in ("context", "question", "label"))
        choices = [c for c in benchmark.columns["choices"] if c in dataset.column_names]
        if len(choices) != len(benchmark.columns["choices"]):
            raise UserError(f"{where}: answer columns {benchmark.columns['choices']} are missing")
        for number, row in enumerate(dataset):
            answer = str(row[label]).strip()
            if not answer.isdigit() or not 0 <= int(answer) - benchmark.first_choice < len(choices):
                raise UserError(f"{where}: row {number}: {label} is {row[label]!r}, not an answer number "
                                f"{benchmark.first_choice}..{benchmark.first_choice + len(choices) - 1}")
            yield {"context": row[context] or "", "question": row[question], "choices": [row[c] for c in choices],
                   "label": int(answer) - benchmark.first_choice, "group": row.get(benchmark.group or "")}
    else:
        raise ValueError(f"{benchmark.kind} rows are pairs, not records")


def _sample(items: list[Any], count: int | None, seed: int) -> list[Any]:
    """A seeded sample of ``count`` items, in their original order."""
    if count is None or count >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), count))
    return [items[i] for i in keep]


def _is_held_out(group: Any, share: float, seed: int) -> bool:
    """Stable, seeded assignment of a passage to the test side."""
    return random.Random(f"{seed}:{group}").random() < share


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with atomic_file(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_lines(path: Path, texts: list[str]) -> None:
    with atomic_file(path) as handle:
        handle.write("".join(" ".join(str(t).split()) + "\n" for t in texts))


def _retrieval_pairs(benchmark: Benchmark, target: str, source: str, data_dir: Any) -> list[tuple[str, str]]:
    where = f"benchmark {benchmark.name} ({target})"
    if "source" in benchmark.columns:  # one config per pair
        dataset = load_split(benchmark, benchmark.config_for(target), benchmark.test_split, data_dir)
        src, tgt = (_column(dataset, benchmark, r, where) for r in ("source", "target"))
        return [(row[src], row[tgt]) for row in dataset]
    sides = {}
    for language in (source, target):
        dataset = load_split(benchmark, benchmark.config_for(language), benchmark.test_split, data_dir)
        key, text = (_column(dataset, benchmark, r, where) for r in ("id", "text"))
        sides[language] = {row[key]: row[text] for row in dataset}
    shared = [k for k in sides[source] if k in sides[target]]
    if not shared:
        raise UserError(f"{where}: {source} and {target} share no {benchmark.columns['id']!r} values")
    return [(sides[source][k], sides[target][k]) for k in shared]


def prepare_benchmark(benchmark: Benchmark | str, language: str, out: str | Path, *, source_language: str | None = None,
                      data_dir: str | Path | None = None, max_examples: int | None = None,
                      seed: int = 0) -> dict[str, str]:
    """Write one benchmark's data for ``language`` into ``out``; returns ``{"kind", "train", "test"}`` paths.

    Classification and multiple choice: ``train.jsonl`` (the source language's train split, for
    the task module) and ``test.jsonl`` (the target language's test split). Retrieval:
    ``source.txt`` and ``target.txt``, line-aligned (``train`` and ``test`` name them). ``language``
    and ``source_language`` are configs (``{language}`` in the declaration's ``config``);
    ``max_examples`` keeps a seeded sample of each split.
    """
    benchmark = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    source = source_language or benchmark.source_language
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if benchmark.kind == "retrieval":
        pairs = _sample(_retrieval_pairs(benchmark, language, source, data_dir), max_examples, seed)
        pairs = [(s, t) for s, t in pairs if str(s).strip() and str(t).strip()]
        _write_lines(out / "source.txt", [s for s, _ in pairs])
        _write_lines(out / "target.txt", [t for _, t in pairs])
        return {"kind": benchmark.kind, "train": str(out / "source.txt"), "test": str(out / "target.txt")}
    where = f"benchmark {benchmark.name}"
    test_rows = list(_records(benchmark, load_split(benchmark, benchmark.config_for(language), benchmark.test_split,
                                                     data_dir), f"{where} ({language})"))
    train_split = benchmark.train_split or benchmark.test_split
    train_rows = list(_records(benchmark, load_split(benchmark, benchmark.config_for(source), train_split, data_dir),
                               f"{where} ({source})"))
    if benchmark.held_out is not None:
        test_rows = [r for r in test_rows if _is_held_out(r["group"], benchmark.held_out, seed)]
        train_rows = [r for r in train_rows if not _is_held_out(r["group"], benchmark.held_out, seed)]
    for rows in (train_rows, test_rows):
        for row in rows:
            row.pop("group", None)
    for split, rows in (("train", train_rows), ("test", test_rows)):
        if not rows:
            raise UserError(f"{where}: the {split} side has no examples")
        _write_jsonl(out / f"{split}.jsonl", _sample(rows, max_examples, seed))
    return {"kind": benchmark.kind, "train": str(out / "train.jsonl"), "test": str(out / "test.jsonl")}
