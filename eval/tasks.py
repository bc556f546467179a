"""Zero-shot classification, tagging and multiple-choice evaluation from plain files.

A task head is trained on the source language only; these functions run that head on target
language files and score it: accuracy and macro-F1 for sequence classification, UPOS accuracy
(CoNLL-U) or entity F1 with seqeval (IOB/BIO) for token classification, accuracy for multiple
choice (a ``*ForMultipleChoice`` head, or the log-likelihood of each answer under a causal LM).
Each word is labelled by its first sub-word token, the convention of the BERT/XLM-R tagging papers.

The functions take an already-loaded (and, for modules, already-composed) model and its
tokenizer, so they work for stock checkpoints, PEFT models and langgraft's composed modules alike.
Labelled files are read by :mod:`langgraft.adapters.tasks`, so evaluation accepts exactly the
formats task modules train on (TSV/JSONL; CoNLL-U or IOB).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from langgraft.adapters.tasks import (choice_prompt, encode_choices, read_choice_examples, read_sequence_examples,
                                      read_token_examples)
from langgraft.corpora.readers import batched
from langgraft.errors import UserError
from langgraft.eval.intervals import IntervalOptions, macro_f1_interval, mean_interval, ratio_interval
from langgraft.lm import pad_batch  # torch: this module is imported only when a task is scored
from langgraft.models import default_max_length

CHUNK_EXAMPLES = 1024  # examples read, sorted by length and predicted at a time (streaming)


# ----------------------------------------------------------------------------- metrics
def classification_metrics(gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 from integer labels.

    Macro-F1 averages the per-class F1 over every class seen in ``gold`` or ``pred`` (the
    scikit-learn default), so a classifier that never predicts a gold class is penalised.
    """
    gold = np.asarray(gold, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    if gold.shape != pred.shape:
        raise ValueError(f"gold and pred differ in length: {gold.shape} vs {pred.shape}")
    if gold.size == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    classes = np.union1d(gold, pred)
    gold_idx = np.searchsorted(classes, gold)
    pred_idx = np.searchsorted(classes, pred)
    confusion = np.bincount(gold_idx * len(classes) + pred_idx, minlength=len(classes) ** 2)
    confusion = confusion.reshape(len(classes), len(classes))
    true_pos = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # predicted + gold = 2TP + FP + FN
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
    return {"accuracy": float(true_pos.sum() / gold.size), "macro_f1": float(f1.mean())}


def classification_intervals(gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray,
                             resamples: int = IntervalOptions.bootstrap,
                             seed: int = IntervalOptions.bootstrap_seed) -> dict[str, list[float]]:
    """Bootstrap 95% intervals of accuracy and macro-F1, resampling examples."""
    gold = np.asarray(gold, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    intervals = {"accuracy": mean_interval(gold == pred, resamples, seed),
                 "macro_f1": macro_f1_interval(gold, pred, resamples, seed)}
    return {k: v for k, v in intervals.items() if v is not None}


def sentence_entity_counts(gold: list[list[str]], pred: list[list[str]]) -> np.ndarray:
    """(sentences, 3) true-positive, predicted and gold entity counts per sentence (seqeval's entity rules).

    Their column sums give seqeval's micro scores: precision = TP / predicted, recall = TP / gold,
    F1 = 2 TP / (predicted + gold).
    """
    # deferred: keeps scipy, sklearn and seqeval off `import langgraft.eval.tasks`
    from seqeval.metrics.sequence_labeling import get_entities

    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for row, (gold_tags, pred_tags) in enumerate(zip(gold, pred)):
        gold_entities, pred_entities = set(get_entities(gold_tags)), set(get_entities(pred_tags))
        counts[row] = (len(gold_entities & pred_entities), len(pred_entities), len(gold_entities))
    return counts


def entity_intervals(gold: list[list[str]], pred: list[list[str]], resamples: int = IntervalOptions.bootstrap,
                     seed: int = IntervalOptions.bootstrap_seed) -> dict[str, list[float]]:
    """Bootstrap 95% intervals of entity F1, precision and recall, resampling whole sentences."""
    true_pos, predicted, gold_count = sentence_entity_counts(gold, pred).T
    intervals = {"f1": ratio_interval(2 * true_pos, predicted + gold_count, resamples, seed),
                 "precision": ratio_interval(true_pos, predicted, resamples, seed),
                 "recall": ratio_interval(true_pos, gold_count, resamples, seed)}
    return {k: v for k, v in intervals.items() if v is not None}


def entity_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Entity-level precision/recall/F1 (seqeval, CoNLL-2003 rules)."""
    # deferred: keeps scipy, sklearn and seqeval off `import langgraft.eval.tasks`
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
    }


# ----------------------------------------------------------------------------- batching
@contextlib.contextmanager
def inference(model: Any) -> Iterator[None]:
    """Eval mode and no autograd for the block; the model's training flag is restored afterwards."""

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def model_device(model: Any) -> "torch.device":
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def pad_id(model: Any, tokenizer: Any) -> int:
    """Padding id: the model's own (decoder classifiers locate the last token with it), else the tokenizer's."""
    for value in (getattr(model.config, "pad_token_id", None), tokenizer.pad_token_id):
        if value is not None:
            return int(value)
    return 0


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Index batches of similar lengths (longest first), so padding wastes little compute."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]



# ----------------------------------------------------------------------------- labels
def label_index(model: Any, gold_labels: Iterable[str], source: str) -> dict[str, int]:
    """Map the file's labels to the model's output indices; labels the model lacks -> UserError.

    Uses ``config.label2id``. Models saved without label names (``LABEL_0`` ...) accept the
    integers ``0 .. num_labels-1`` as labels.
    """
    label2id = {str(k): int(v) for k, v in (getattr(model.config, "label2id", None) or {}).items()}
    if label2id and all(name == f"LABEL_{i}" for name, i in label2id.items()):
        label2id.update({str(i): i for i in label2id.values()})
    unknown = sorted({label for label in gold_labels if label not in label2id})
    if unknown:
        known = sorted(k for k in label2id if not k.startswith("LABEL_"))
        raise UserError(
            f"{source} has labels the model does not know: {', '.join(map(repr, unknown[:5]))}"
            f"{' ...' if len(unknown) > 5 else ''}; model labels are {', '.join(map(repr, known[:20]))} "
            "(use a task module trained on this label set, or relabel the file)"
        )
    return label2id


# ----------------------------------------------------------------------------- sequence classification
def evaluate_sequence_classification(
    model: Any,
    tokenizer: Any,
    data: str | Path | Iterable[tuple[str, str]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    bootstrap: int = IntervalOptions.bootstrap,
    bootstrap_seed: int = IntervalOptions.bootstrap_seed,
) -> dict[str, Any]:
    """Accuracy and macro-F1 of a sequence classifier on (text, label) examples or a TSV/JSONL file.

    ``model`` is any ``*ForSequenceClassification`` (stock, PEFT-wrapped or composed); its
    ``config.label2id`` names the classes. Examples are streamed in chunks. ``intervals`` holds
    the bootstrap 95% interval of each score (``bootstrap`` resamples of the examples; 0: none).
    """
    source = str(data) if isinstance(data, (str, Path)) else "evaluation data"
    examples = read_sequence_examples(data) if isinstance(data, (str, Path)) else iter(data)
    max_length = max_length or default_max_length(model.config, tokenizer)
    padding = pad_id(model, tokenizer)
    if getattr(model.config, "pad_token_id", None) is None:
        batch_size = 1  # decoder classifiers cannot find the last token of a padded row without it
    device = model_device(model)
    gold: list[int] = []
    pred: list[int] = []
    for chunk in batched(examples, CHUNK_EXAMPLES):
        texts = [text for text, _ in chunk]
        label2id = label_index(model, (label for _, label in chunk), source)
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        chunk_pred = np.zeros(len(texts), dtype=np.int64)
        with inference(model):
            for batch in length_sorted_batches([len(row) for row in ids], batch_size):
                input_ids, attention_mask = pad_batch([ids[i] for i in batch], padding)
                logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
                chunk_pred[batch] = logits.argmax(-1).cpu().numpy()
        gold.extend(label2id[label] for _, label in chunk)
        pred.extend(chunk_pred.tolist())
    if not gold:
        raise UserError(f"{source} has no examples; expected text<TAB>label lines or JSON lines")
    return {**classification_metrics(gold, pred), "examples": len(gold),
            "intervals": classification_intervals(gold, pred, bootstrap, bootstrap_seed)}


# ----------------------------------------------------------------------------- token classification
def first_subword_positions(offsets: Sequence[tuple[int, int]], word_starts: np.ndarray,
                            word_ends: np.ndarray) -> np.ndarray:
    """For each word, the index of its first token (-1 when no token covers it).

    A token belongs to the word that contains its last character; this works for WordPiece,
    byte-level BPE (whose tokens carry the preceding space) and SentencePiece alike, without
    ``is_split_into_words`` quirks.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    last_char = offsets[:, 1] - 1
    word = np.searchsorted(word_starts, last_char, side="right") - 1
    valid = (offsets[:, 1] > offsets[:, 0]) & (word >= 0)
    valid &= last_char < word_ends[np.clip(word, 0, None)]
    first = np.full(len(word_starts), -1, dtype=np.int64)
    token_positions = np.nonzero(valid)[0]
    # reversed assignment leaves the smallest token position per word
    first[word[token_positions][::-1]] = token_positions[::-1]
    return first


def predict_word_labels(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[Sequence[str]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
) -> list[list[int]]:
    """Predicted label index per word (first sub-word rule); -1 where a word got no token."""
    max_length = max_length or default_max_length(model.config, tokenizer)
    texts = [" ".join(words) for words in sentences]
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
    device = model_device(model)
    padding = pad_id(model, tokenizer)
    out: list[list[int]] = [[] for _ in sentences]
    with inference(model):
        for batch in length_sorted_batches([len(row) for row in encoded["input_ids"]], batch_size):
            input_ids, attention_mask = pad_batch([encoded["input_ids"][i] for i in batch], padding)
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            token_pred = logits.argmax(-1).cpu().numpy()
            for row, index in enumerate(batch):
                lengths = np.fromiter((len(w) for w in sentences[index]), dtype=np.int64)
                starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
                first = first_subword_positions(encoded["offset_mapping"][index], starts, starts + lengths)
                out[index] = np.where(first >= 0, token_pred[row][np.clip(first, 0, None)], -1).tolist()
    return out


def is_iob_scheme(labels: Iterable[str]) -> bool:
    """True when every label is ``O`` or ``B-``/``I-``/``E-``/``S-`` prefixed: entity spans, scored with seqeval."""
    return all(label == "O" or (len(label) > 2 and label[0] in "BIES" and label[1] in "-_") for label in labels)


def evaluate_token_classification(
    model: Any,
    tokenizer: Any,
    data: str | Path | Iterable[tuple[list[str], list[str]]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    bootstrap: int = IntervalOptions.bootstrap,
    bootstrap_seed: int = IntervalOptions.bootstrap_seed,
) -> dict[str, Any]:
    """Score a ``*ForTokenClassification`` model on (words, labels) sentences or a CoNLL-U / IOB file.

    Word accuracy always (UPOS accuracy for CoNLL-U); entity-level precision/recall/F1 (seqeval)
    as well when the labels are IOB/BIO/IOBES tags. Words the model cannot see (truncated away, or
    producing no token) count as wrong (``O`` for seqeval) and are reported as ``unaligned_words``.
    ``intervals``: bootstrap 95% intervals resampling whole sentences (``bootstrap`` resamples; 0: none).
    """
    source = str(data) if isinstance(data, (str, Path)) else "evaluation data"
    sentences = read_token_examples(data) if isinstance(data, (str, Path)) else iter(data)
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    gold_all: list[list[str]] = []
    pred_all: list[list[str | None]] = []
    for chunk in batched(sentences, CHUNK_EXAMPLES):
        label2id = label_index(model, (label for _, labels in chunk for label in labels), source)
        predicted = predict_word_labels(model, tokenizer, [words for words, _ in chunk],
                                        batch_size=batch_size, max_length=max_length)
        for (_, labels), indices in zip(chunk, predicted):
            gold_all.append([id2label[label2id[label]] for label in labels])
            pred_all.append([id2label[i] if i >= 0 else None for i in indices])
    if not gold_all:
        raise UserError(f"{source} has no sentences; expected a CoNLL-U or IOB/BIO file")
    gold_flat = [label for labels in gold_all for label in labels]
    pred_flat = [label for labels in pred_all for label in labels]
    result: dict[str, Any] = {"accuracy": sum(g == p for g, p in zip(gold_flat, pred_flat)) / len(gold_flat)}
    correct = np.fromiter((sum(g == p for g, p in zip(gs, ps)) for gs, ps in zip(gold_all, pred_all)), dtype=np.int64)
    words = np.fromiter((len(gs) for gs in gold_all), dtype=np.int64)
    intervals = {"accuracy": ratio_interval(correct, words, bootstrap, bootstrap_seed)}
    if is_iob_scheme(gold_flat):
        pred_tags = [[p or "O" for p in ps] for ps in pred_all]
        result.update(entity_metrics(gold_all, pred_tags))
        intervals.update(entity_intervals(gold_all, pred_tags, bootstrap, bootstrap_seed))
    return {**result, "sentences": len(gold_all), "words": len(gold_flat),
            "unaligned_words": sum(p is None for p in pred_flat),
            "intervals": {k: v for k, v in intervals.items() if v is not None}}


# ----------------------------------------------------------------------------- multiple choice
def _choice_examples(data: str | Path | Iterable[tuple[str, str, list[str], int]]) -> tuple[str, Iterator[Any]]:
    if isinstance(data, (str, Path)):
        return str(data), read_choice_examples(data)
    return "evaluation data", iter(data)


def evaluate_multiple_choice(
    model: Any,
    tokenizer: Any,
    data: str | Path | Iterable[tuple[str, str, list[str], int]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    bootstrap: int = IntervalOptions.bootstrap,
    bootstrap_seed: int = IntervalOptions.bootstrap_seed,
) -> dict[str, Any]:
    """Accuracy of a ``*ForMultipleChoice`` model on (context, question, choices, label) examples or a JSONL file.

    Each (passage + question, choice) pair is scored by the head; the highest-scoring choice is the answer.
    ``intervals``: bootstrap 95% interval resampling examples (``bootstrap`` resamples; 0: none).
    """
    source, examples = _choice_examples(data)
    max_length = max_length or default_max_length(model.config, tokenizer)
    padding = pad_id(model, tokenizer)
    device = model_device(model)
    hits: list[bool] = []
    for chunk in batched(examples, CHUNK_EXAMPLES):
        chunk_hits = np.zeros(len(chunk), dtype=bool)
        encoded = [encode_choices(tokenizer, c, q, choices, max_length)["input_ids"] for c, q, choices, _ in chunk]
        with inference(model):
            for batch in length_sorted_batches([max(len(r) for r in rows) for rows in encoded], batch_size):
                rows = [row for i in batch for row in encoded[i]]
                input_ids, attention_mask = pad_batch(rows, padding)
                shape = (len(batch), len(encoded[batch[0]]), -1)
                logits = model(input_ids=input_ids.view(shape).to(device),
                               attention_mask=attention_mask.view(shape).to(device)).logits
                predicted = logits.argmax(-1).cpu().numpy()
                for k, i in enumerate(batch):
                    chunk_hits[i] = predicted[k] == chunk[i][3]
        hits.extend(chunk_hits.tolist())
    if not hits:
        raise UserError(f"{source} has no examples; expected JSON lines with context, question, choices and label")
    interval = mean_interval(hits, bootstrap, bootstrap_seed)
    return {"accuracy": float(np.mean(hits)), "examples": len(hits),
            "intervals": {"accuracy": interval} if interval is not None else {}}


def evaluate_choice_likelihood(
    model: Any,
    tokenizer: Any,
    data: str | Path | Iterable[tuple[str, str, list[str], int]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    bootstrap: int = IntervalOptions.bootstrap,
    bootstrap_seed: int = IntervalOptions.bootstrap_seed,
) -> dict[str, Any]:
    """Zero-shot multiple choice with a causal LM: the answer is the choice the model finds most likely.

    The prompt is ``passage\nquestion\nAnswer:`` and each choice its continuation (`` choice``), as in
    lm-evaluation-harness: ``accuracy`` takes the highest summed log-probability of the
    continuation's tokens, ``accuracy_norm`` the highest per character (fair to long answers).
    Prompts are cut from the left when a pair exceeds the model's length. ``intervals``: bootstrap
    95% intervals resampling examples (``bootstrap`` resamples; 0: none).
    """

    source, examples = _choice_examples(data)
    max_length = max_length or default_max_length(model.config, tokenizer)
    padding = pad_id(model, tokenizer)
    device = model_device(model)
    hits: list[bool] = []
    hits_norm: list[bool] = []
    for chunk in batched(examples, CHUNK_EXAMPLES):
        rows: list[list[int]] = []
        starts: list[int] = []
        characters: list[int] = []
        for context, question, choices, _ in chunk:
            prompt = tokenizer(choice_prompt(context, question) + "\nAnswer:")["input_ids"]
            for choice in choices:
                continuation = tokenizer(" " + choice, add_special_tokens=False)["input_ids"][: max_length - 1]
                kept = prompt[-(max_length - len(continuation)):]
                rows.append(kept + continuation)
                starts.append(len(kept))
                characters.append(max(1, len(choice) + 1))
        scores = np.zeros(len(rows), dtype=np.float64)
        with inference(model):
            for batch in length_sorted_batches([len(r) for r in rows], batch_size):
                input_ids, attention_mask = pad_batch([rows[i] for i in batch], padding)
                logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
                logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                token_scores = logprobs.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu().numpy()
                for k, i in enumerate(batch):
                    scores[i] = token_scores[k, starts[i] - 1 : len(rows[i]) - 1].sum()
        offset = 0
        for _, _, choices, label in chunk:
            window = slice(offset, offset + len(choices))
            hits.append(bool(np.argmax(scores[window]) == label))
            hits_norm.append(bool(np.argmax(scores[window] / np.asarray(characters[window])) == label))
            offset += len(choices)
    if not hits:
        raise UserError(f"{source} has no examples; expected JSON lines with context, question, choices and label")
    intervals = {"accuracy": mean_interval(hits, bootstrap, bootstrap_seed),
                 "accuracy_norm": mean_interval(hits_norm, bootstrap, bootstrap_seed)}
    return {"accuracy": float(np.mean(hits)), "accuracy_norm": float(np.mean(hits_norm)), "examples": len(hits),
            "intervals": {k: v for k, v in intervals.items() if v is not None}}
