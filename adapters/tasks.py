"""Task heads and labelled data for task modules: sequence and token classification, multiple choice.

Labelled files:
- ``seq-cls``: TSV ``text<TAB>label`` (an optional ``text<TAB>label`` header is skipped) or JSONL
  objects with ``text`` and ``label``.
- ``token-cls``: CoNLL-U (the UPOS column), IOB/CoNLL files (``token ... tag`` per line, the tag
  in the last column, sentences separated by blank lines) or JSONL objects with ``tokens`` and
  ``tags`` (lists of equal length; tokens may contain spaces).
- ``multiple-choice``: JSONL objects with ``context`` (may be empty), ``question``, ``choices`` (a
  list, the same length on every line) and ``label`` (the index of the right choice).

The head is whatever the task model has that the base checkpoint lacks (``missing_keys`` when
loading), so BERT's freshly created pooler travels with the classifier and nothing is guessed
from module names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from langgraft.corpora.readers import iter_lines, read_conllu
from langgraft.errors import UserError
from langgraft.models import load_model, load_tokenizer, resolve_model_path

TASKS = ("seq-cls", "token-cls", "multiple-choice")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def read_sequence_examples(path: str | Path) -> Iterator[tuple[str, str]]:
    """Stream ``(text, label)`` pairs from a TSV or JSONL file.

    TSV: a header naming ``text`` and ``label`` columns selects them (other columns are ignored);
    without one, every line is ``text<TAB>label``.
    """

    path = Path(path)
    if not path.is_file():
        raise UserError(f"labelled file {path} not found; check --train")
    is_jsonl = _is_jsonl(path)
    columns: tuple[int, int] | None = None
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        if is_jsonl:
            try:
                record = json.loads(line)
                yield str(record["text"]), str(record["label"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path}:{number}: expected a JSON object with 'text' and 'label'") from None
            continue
        cells = line.rstrip("\n").split("\t")
        if number == 1 and {"text", "label"} <= {c.strip().lower() for c in cells}:
            names = [c.strip().lower() for c in cells]
            columns = (names.index("text"), names.index("label"))
            continue
        if columns is not None and len(cells) > max(columns):
            text, label = cells[columns[0]], cells[columns[1]]
        elif columns is None and len(cells) >= 2:
            text, label = "\t".join(cells[:-1]), cells[-1]
        else:
            text, label = "", ""
        if not label.strip():
            raise UserError(f"{path}:{number}: expected 'text<TAB>label' (or the columns its header names)")
        yield text, label.strip()


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".ndjson") or path.name.endswith((".jsonl.gz", ".ndjson.gz"))


def _json_records(path: Path, expected: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank JSON line; anything else is a :class:`UserError`."""

    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: expected a JSON object with {expected}")
        yield number, record


def read_choice_examples(path: str | Path) -> Iterator[tuple[str, str, list[str], int]]:
    """Stream ``(context, question, choices, label)`` from a multiple-choice JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labelled file {path} not found; check --train")
    expected = "'context', 'question', 'choices' (a list) and 'label' (the right choice's index)"
    width = None
    for number, record in _json_records(path, expected):
        choices, label = record.get("choices"), record.get("label")
        if not isinstance(choices, list) or len(choices) < 2 or isinstance(label, bool) or not isinstance(label, int) \
                or not 0 <= label < len(choices) or not isinstance(record.get("question"), str):
            raise UserError(f"{path}:{number}: expected a JSON object with {expected}")
        if width is not None and len(choices) != width:
            raise UserError(f"{path}:{number}: {len(choices)} choices where earlier lines have {width}; "
                            "every question needs the same number of choices")
        width = len(choices)
        yield str(record.get("context") or ""), record["question"], [str(c) for c in choices], label


def read_token_examples(path: str | Path) -> Iterator[tuple[list[str], list[str]]]:
    """Stream ``(words, tags)`` sentences from CoNLL-U (UPOS) or IOB/CoNLL files."""

    path = Path(path)
    if not path.is_file():
        raise UserError(f"labelled file {path} not found; check --train")
    if _is_jsonl(path):
        for number, record in _json_records(path, "'tokens' and 'tags' lists of equal length"):
            tokens, tags = record.get("tokens"), record.get("tags")
            if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags) or not tokens:
                raise UserError(f"{path}:{number}: expected a JSON object with 'tokens' and 'tags' lists of equal length")
            yield [str(t) for t in tokens], [str(t) for t in tags]
        return
    if path.suffix.lower() == ".conllu" or path.name.endswith(".conllu.gz"):
        for sentence in read_conllu(path):
            yield [token.form for token in sentence], [token.upos for token in sentence]
        return
    words: list[str] = []
    tags: list[str] = []
    for number, line in iter_lines(path):
        cells = line.split()
        if not cells or line.startswith("-DOCSTART-"):
            if words:
                yield words, tags
            words, tags = [], []
            continue
        if len(cells) < 2:
            raise UserError(f"{path}:{number}: expected 'token ... tag' (tag in the last column)")
        words.append(cells[0])
        tags.append(cells[-1])
    if words:
        yield words, tags


def collect_labels(task: str, path: str | Path) -> list[str]:
    """Sorted label inventory of a training file (deterministic label ids)."""
    _check_task(task)
    if task == "multiple-choice":
        first = next(read_choice_examples(path), None)
        if first is None:
            raise UserError(f"{path}: no examples; expected JSON lines with context, question, choices and label")
        return [str(i) for i in range(len(first[2]))]  # choice positions
    if task == "seq-cls":
        labels = {label for _, label in read_sequence_examples(path)}
    else:
        labels = {tag for _, tags in read_token_examples(path) for tag in tags}
    if len(labels) < 2:
        raise UserError(f"{path}: found {len(labels)} label(s); a classifier needs at least 2")
    return sorted(labels)


def task_model_class(task: str) -> Any:
    # deferred: keeps torch, transformers and huggingface_hub off `langgraft --help`
    from transformers import (AutoModelForMultipleChoice, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)

    _check_task(task)
    return {"seq-cls": AutoModelForSequenceClassification, "token-cls": AutoModelForTokenClassification,
            "multiple-choice": AutoModelForMultipleChoice}[task]


def choice_prompt(context: str, question: str) -> str:
    """The first segment of every (prompt, choice) pair: passage and question."""
    return f"{context}\n{question}" if context else question


def encode_choices(tokenizer: Any, context: str, question: str, choices: Sequence[str], max_length: int) -> dict[str, Any]:
    """One (prompt, choice) pair per choice; the prompt is truncated first, so every choice stays whole."""
    prompt = choice_prompt(context, question)
    return tokenizer([prompt] * len(choices), list(choices), truncation="only_first", max_length=max_length)


def load_task_model(model_dir: str | Path, task: str, labels: Sequence[str], seed: int = 0,
                    **load: Any) -> tuple[Any, list[str]]:
    """The base checkpoint with a fresh task head; returns ``(model, head parameter names)``.

    The head is seeded so the same inputs give the same initial head. ``load``: further
    ``from_pretrained`` arguments (``dtype``, ``attn_implementation``).
    """
    # deferred: keeps torch off `langgraft --help`
    import torch

    torch.manual_seed(seed)
    id2label = dict(enumerate(labels))
    model, info = load_model(model_dir, auto_class=task_model_class(task), num_labels=len(labels), id2label=id2label,
                             label2id={v: k for k, v in id2label.items()}, output_loading_info=True, **load)
    if model.config.pad_token_id is None:  # decoder-only classifiers find the last token by padding

        tokenizer = load_tokenizer(resolve_model_path(model_dir))
        model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    parameter_names = {name for name, _ in model.named_parameters()}
    head = sorted(name for name in info["missing_keys"] if name in parameter_names)
    if not head:
        raise UserError(f"{model_dir} already holds a {task} head; give a base checkpoint (MLM/CLM or encoder)")
    return model, head


def task_dataset(task: str, path: str | Path, tokenizer: Any, labels: Sequence[str], max_length: int) -> Any:
    """Tokenized training examples as a ``datasets.Dataset`` (labels mapped to ids)."""
    # deferred: keeps datasets, huggingface_hub and pandas off `langgraft --help`
    import datasets

    label_ids = {label: i for i, label in enumerate(labels)}

    def unknown(label: str) -> UserError:
        return UserError(f"{path}: label {label!r} is not among the module's labels {list(labels)}")

    def rows() -> Iterator[dict[str, Any]]:
        if task == "multiple-choice":
            for context, question, choices, label in read_choice_examples(path):
                if len(choices) != len(labels):
                    raise UserError(f"{path}: {len(choices)} choices per question, the module has {len(labels)}")
                encoded = encode_choices(tokenizer, context, question, choices, max_length)
                yield {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": label}
        elif task == "seq-cls":
            for text, label in read_sequence_examples(path):
                if label not in label_ids:
                    raise unknown(label)
                encoded = tokenizer(text, truncation=True, max_length=max_length)
                yield {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                       "labels": label_ids[label]}
        else:
            for words, tags in read_token_examples(path):
                if any(tag not in label_ids for tag in tags):
                    raise unknown(next(tag for tag in tags if tag not in label_ids))
                encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
                yield {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                       "labels": align_word_labels(encoded.word_ids(), [label_ids[t] for t in tags])}

    _check_task(task)
    return datasets.Dataset.from_list(list(rows()))


def align_word_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Label the first piece of every word; other pieces and special tokens get -100 (ignored)."""
    aligned, previous = [], None
    for word in word_ids:
        aligned.append(-100 if word is None or word == previous else word_labels[word])
        previous = word
    return aligned


class MultipleChoiceCollator:
    """Pads ``(choices, tokens)`` examples into ``(batch, choices, length)`` tensors for ``*ForMultipleChoice``."""

    def __init__(self, tokenizer: Any) -> None:
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        # deferred: keeps torch off `langgraft --help`
        import torch

        width = max(len(row) for f in features for row in f["input_ids"])
        choices = len(features[0]["input_ids"])
        ids = torch.full((len(features), choices, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), choices, width), dtype=torch.long)
        for i, feature in enumerate(features):
            for j, row in enumerate(feature["input_ids"]):
                ids[i, j, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[i, j, : len(row)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return batch


def task_collator(task: str, tokenizer: Any) -> Any:
    # deferred: keeps transformers, tokenizers and huggingface_hub off `langgraft --help`
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if task == "multiple-choice":
        return MultipleChoiceCollator(tokenizer)
    return DataCollatorWithPadding(tokenizer) if task == "seq-cls" else DataCollatorForTokenClassification(tokenizer)
