"""MTEB glue (imported only by ``--harness mteb``): langgraft's pooled encoder and local tasks.

:class:`PooledEncoder` is the MTEB encoder protocol over
:func:`langgraft.eval.retrieval.mean_pooled_embeddings`, so MTEB scores the same sentence
embeddings as langgraft's retrieval task. :func:`local_task` builds MTEB tasks from local files, for
languages MTEB has no data for (and for tests without a network): ``[NAME=]bitext-mining:SRC,TGT``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining
from mteb.models.model_meta import ModelMeta

from langgraft.errors import UserError
from langgraft.eval.retrieval import mean_pooled_embeddings, read_pairs

LOCAL_KINDS = ("bitext-mining",)


class PooledEncoder:
    """An MTEB encoder: mean of ``hidden_states[layer]`` over non-special tokens, cosine similarity."""

    def __init__(self, model: Any, tokenizer: Any, *, layer: int | None = None, batch_size: int = 32) -> None:
        self.model, self.tokenizer, self.layer, self.batch_size = model, tokenizer, layer, batch_size
        self.mteb_model_meta = ModelMeta.create_empty()

    def encode(self, inputs: Any, **_: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        return mean_pooled_embeddings(self.model, self.tokenizer, texts, layer=self.layer,
                                      batch_size=self.batch_size).numpy()

    @staticmethod
    def _unit(rows: Any) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float32)
        return rows / np.clip(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12, None)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        return self._unit(embeddings1) @ self._unit(embeddings2).T

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        return (self._unit(embeddings1) * self._unit(embeddings2)).sum(-1)


def _metadata(task_type: str, name: str, main_score: str, description: str) -> TaskMetadata:
    return TaskMetadata(type=task_type, name=name, main_score=main_score, description=description,
                        reference=None, dataset={"path": "local", "revision": "local"}, category="t2t",
                        eval_splits=["test"], eval_langs=["und-Latn"], date=None, dialect=None, domains=None,
                        task_subtypes=None, license=None, annotations_creators=None, modalities=["text"],
                        sample_creation=None, bibtex_citation=None)


class LocalBitextMining(AbsTaskBitextMining):
    """Bitext mining on two aligned local files (line-aligned, or ``id<TAB>text`` joined on id).

    MTEB reads ``metadata`` from the class, so each task is a subclass made by :meth:`for_files`.
    """

    files: tuple[str, str]

    @classmethod
    def for_files(cls, name: str, source: str, target: str) -> "LocalBitextMining":
        metadata = _metadata("BitextMining", name, "f1", f"aligned sentences of {source} and {target}")
        return type(cls.__name__, (cls,), {"metadata": metadata, "files": (source, target)})()

    def load_data(self, num_proc: int | None = None, **_: Any) -> None:
        sources, targets = read_pairs(*self.files)
        self.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": sources, "sentence2": targets})})
        self.data_loaded = True


def local_task(spec: str) -> Any:
    """``[NAME=]bitext-mining:SRC,TGT`` as an MTEB task object."""
    name, equals, rest = spec.partition("=")
    if not equals:
        name, rest = "", spec
    kind, _, files_text = rest.partition(":")
    files = [f.strip() for f in files_text.split(",") if f.strip()]
    if kind.strip() not in LOCAL_KINDS or len(files) != 2:
        raise UserError(f"MTEB task {spec!r}: give an MTEB task name or bitext-mining:SRC_FILE,TGT_FILE")
    for file in files:
        if not Path(file).is_file():
            raise UserError(f"MTEB task {spec!r}: file {file} not found")
    return LocalBitextMining.for_files(name.strip() or f"bitext-mining:{Path(files[0]).name},{Path(files[1]).name}", *files)


def bitext_correct(folder: Path, task: str) -> dict[tuple[str, str], np.ndarray]:
    """Per query, whether bitext mining found its aligned sentence: ``{(subset, split): bools}``.

    Read from MTEB's prediction file (the nearest ``corpus_id`` of query ``i`` must be ``i``); empty
    for tasks that are not bitext mining.
    """
    path = folder / f"{task}_predictions.json"
    if not path.is_file():
        return {}
    found: dict[tuple[str, str], np.ndarray] = {}
    for subset, splits in json.loads(path.read_text(encoding="utf-8")).items():
        if not isinstance(splits, dict) or subset == "mteb_model_meta":
            continue
        for split, pairs in splits.items():
            if not isinstance(pairs, dict) or len(pairs) != 1:
                continue
            predictions = next(iter(pairs.values()))
            if isinstance(predictions, list) and all(isinstance(p, dict) and "corpus_id" in p for p in predictions):
                found[(subset, split)] = np.array([p["corpus_id"] == i for i, p in enumerate(predictions)])
    return found
