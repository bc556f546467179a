"""Hydra: one transformer body, several per-language embedding tables and LM heads.

A language is a small artifact directory: ``language_table.safetensors`` (input embeddings,
the untied output embeddings and the output bias when the model has them), the language's
tokenizer, and ``hydra_language.json``. :class:`HydraModel` keeps one body in memory and switches
language with one call (``hydra.set_language("ny")``), keeping rows trained while a language was
active. :func:`add_language` and :func:`export_language` work on checkpoints without loading the
body: they read or replace only the vocabulary tensors (:mod:`langgraft.vocab.checkpoint`), so the
exported stock checkpoint keeps the body's files, shard layout and dtype.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from langgraft.atomic import atomic_dir
from langgraft.outputs import check_output
from langgraft.errors import UserError
from langgraft.models import auto_class, head_kind, load_config, load_model, load_tokenizer
from langgraft.sidecars import read_sidecar
from langgraft.vocab.checkpoint import ModelSource, open_source, output_config, set_special_ids

TABLE_FILE = "language_table.safetensors"
INFO_FILE = "hydra_language.json"


@dataclass
class LanguageTable:
    """The vocabulary-indexed tensors of one language, and its tokenizer."""

    language: str
    input_embeddings: torch.Tensor
    output_embeddings: torch.Tensor | None  # None when tied to the input embeddings
    output_bias: torch.Tensor | None
    tokenizer: Any

    @property
    def vocab_size(self) -> int:
        return self.input_embeddings.shape[0]

    def save(self, out: str | os.PathLike, model_type: str = "", overwrite: bool = False) -> Path:
        """Write the artifact directory atomically (an existing ``out`` only with ``overwrite``)."""
        # deferred: keeps safetensors off `import langgraft.vocab.hydra`
        from safetensors.torch import save_file

        tensors = {"input_embeddings": self.input_embeddings}
        if self.output_embeddings is not None:
            tensors["output_embeddings"] = self.output_embeddings
        if self.output_bias is not None:
            tensors["output_bias"] = self.output_bias
        info = {"language": self.language, "vocab_size": self.vocab_size, "hidden_size": self.input_embeddings.shape[1],
                "model_type": model_type, "tensors": sorted(tensors)}
        with atomic_dir(out, overwrite=overwrite) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / TABLE_FILE))
            self.tokenizer.save_pretrained(tmp)
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return Path(out)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LanguageTable":
        # deferred: keeps safetensors off `import langgraft.vocab.hydra`
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / TABLE_FILE).is_file() or not (path / INFO_FILE).is_file():
            raise UserError(f"{path}: not a language table (missing {TABLE_FILE} or {INFO_FILE}); "
                            "create one with `langgraft hydra add`")
        tensors = load_file(str(path / TABLE_FILE))
        info = read_sidecar(path / INFO_FILE, "the language table record", "re-create it with `langgraft hydra add`",
                            {"language": str})
        return cls(info["language"], tensors["input_embeddings"], tensors.get("output_embeddings"),
                   tensors.get("output_bias"), load_tokenizer(path))


def _is_tied(model: Any) -> bool:
    output = model.get_output_embeddings()
    return output is None or output.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def table_from_model(model: Any, tokenizer: Any, language: str) -> LanguageTable:
    """Copy the language-specific tensors out of a loaded model."""
    output = model.get_output_embeddings()
    bias = getattr(output, "bias", None) if output is not None else None
    return LanguageTable(
        language,
        model.get_input_embeddings().weight.detach().clone(),
        None if _is_tied(model) else output.weight.detach().clone(),
        None if bias is None else bias.detach().clone(),
        tokenizer,
    )


class HydraModel:
    """One body with swappable per-language tables: ``add_language`` then ``set_language``."""

    def __init__(self, model: Any, tokenizer: Any, language: str):
        self.model = model
        self.tables: dict[str, LanguageTable] = {language: table_from_model(model, tokenizer, language)}
        self.language = language

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, language: str) -> "HydraModel":
        model = load_model(model_dir, auto_class(head_kind(load_config(model_dir))))
        return cls(model, load_tokenizer(model_dir), language)

    @property
    def tokenizer(self) -> Any:
        return self.tables[self.language].tokenizer

    def add_language(self, table: LanguageTable | str | os.PathLike) -> str:
        """Register a language (a :class:`LanguageTable` or its artifact directory); returns its name."""
        table = table if isinstance(table, LanguageTable) else LanguageTable.load(table)
        check_fits(table, self.model.get_input_embeddings().weight.shape[1], _is_tied(self.model))
        self.tables[table.language] = table
        return table.language

    @torch.no_grad()
    def set_language(self, language: str) -> Any:
        """Swap the active embedding table and head to ``language``; returns its tokenizer."""
        if language not in self.tables:
            raise UserError(f"unknown language {language!r}; added: {', '.join(sorted(self.tables))}")
        self.tables[self.language] = table_from_model(self.model, self.tables[self.language].tokenizer, self.language)
        table = self.tables[language]
        self.model.resize_token_embeddings(table.vocab_size, mean_resizing=False)
        self.model.get_input_embeddings().weight.copy_(table.input_embeddings)
        output = self.model.get_output_embeddings()
        if table.output_embeddings is not None:
            output.weight.copy_(table.output_embeddings)
        if table.output_bias is not None and getattr(output, "bias", None) is not None:
            output.bias.copy_(table.output_bias)
        set_special_ids(self.model.config, table.tokenizer)
        if getattr(self.model, "generation_config", None) is not None:
            set_special_ids(self.model.generation_config, table.tokenizer)
        self.language = language
        return table.tokenizer

    def save_language(self, language: str, out: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write one language's artifact (the active one is read from the live model)."""
        if language == self.language:
            self.tables[language] = table_from_model(self.model, self.tokenizer, language)
        return self.tables[language].save(out, self.model.config.model_type, overwrite=overwrite)

    def export(self, language: str, out: str | os.PathLike, overwrite: bool = False) -> Path:
        """Stock checkpoint of the body with ``language``'s table and tokenizer."""
        tokenizer = self.set_language(language)
        with atomic_dir(out, overwrite=overwrite) as tmp:
            self.model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return Path(out)


def check_fits(table: LanguageTable, hidden: int, tied: bool) -> None:
    """A :class:`UserError` when ``table`` was made for a body of another width or head tying."""
    if table.input_embeddings.shape[1] != hidden:
        raise UserError(f"language {table.language!r}: embedding width {table.input_embeddings.shape[1]} "
                        f"differs from the body's hidden size {hidden}; the table was made for another model")
    if tied != (table.output_embeddings is None):
        raise UserError(f"language {table.language!r}: the table is {'untied' if tied else 'tied'} but the body's "
                        f"head is {'tied' if tied else 'untied'}; make tables from the same model family")


def add_language(model_dir: str | os.PathLike, language: str, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Extract ``language``'s table from a checkpoint (e.g. a ``langgraft init`` output) into ``out``,
    reading only its vocabulary tensors."""
    check_output(out, inputs=[model_dir], overwrite=overwrite)
    source = open_source(model_dir)
    tokenizer = load_tokenizer(model_dir)
    if isinstance(source, ModelSource):
        return table_from_model(source.model, tokenizer, language).save(out, source.config.model_type, overwrite=overwrite)
    table = LanguageTable(language, source.read("input"), source.read("head") if source.has("head") else None,
                          source.read("bias") if source.has("bias") else None, tokenizer)
    return table.save(out, source.config.model_type, overwrite=overwrite)


def export_language(body_dir: str | os.PathLike, table_dir: str | os.PathLike, out: str | os.PathLike,
                    overwrite: bool = False) -> Path:
    """Attach the table in ``table_dir`` to the body of ``body_dir`` and write a stock checkpoint.

    Only the vocabulary tensors are replaced; every other tensor is carried over from ``body_dir``.
    """
    check_output(out, inputs=[body_dir, table_dir], overwrite=overwrite)
    table = LanguageTable.load(table_dir)  # a bad table fails before the body is opened
    source = open_source(body_dir)
    if isinstance(source, ModelSource):
        hydra = HydraModel(source.model, load_tokenizer(body_dir), "__body__")
        return hydra.export(hydra.add_language(table), out, overwrite=overwrite)
    check_fits(table, source.shape[1], source.vocab.tied)
    if source.has("bias") and table.output_bias is None:
        raise UserError(f"language {table.language!r}: the body's head has an output bias but the table has none; "
                        "make tables from the same model family")
    tables = {"input": table.input_embeddings}
    if table.output_embeddings is not None:
        tables["head"] = table.output_embeddings
    if source.has("bias"):
        tables["bias"] = table.output_bias
    config = output_config(source.config, table.vocab_size, table.tokenizer)
    with atomic_dir(out, overwrite=overwrite, inputs=[body_dir, table_dir]) as tmp:
        source.write(tmp, tables, config, source.generation_config(config, table.tokenizer))
        table.tokenizer.save_pretrained(tmp)
    return Path(out)
