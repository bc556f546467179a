"""Module metadata and base-model fingerprints, so mismatched modules fail before they touch a model.

Every module directory holds ``langgraft_module.json`` (:class:`ModuleMetadata`). Two digests
identify the base a module was trained on:

- ``base_fingerprint``: the architecture — config (minus vocabulary, label and token-id fields)
  and the shapes of the transformer layer stack. Independent of the vocabulary and of the head,
  so one English body serves an MLM, a classifier, and a checkpoint with transferred embeddings.
- ``body_digest``: the layer-stack *values* (a fixed sample of every tensor), so a module is not
  added to a different checkpoint of the same architecture.

``embedding_digest`` and ``tokenizer_hash`` identify the vocabulary the module saw; modules that
change embedding rows refuse a model whose embedding table differs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraft.errors import UserError
from langgraft.sidecars import read_sidecar

METADATA_FILE = "langgraft_module.json"
FORMAT_VERSION = 1
_SAMPLE_PER_TENSOR = 64

# Config fields that vary with vocabulary, labels, heads or serialization, not with the body.
_VOLATILE_CONFIG_KEYS = {
    "vocab_size", "architectures", "id2label", "label2id", "num_labels", "problem_type",
    "transformers_version", "torch_dtype", "dtype", "finetuning_task", "task_specific_params",
    "tie_word_embeddings", "tokenizer_class", "prefix", "output_hidden_states", "output_attentions",
    "return_dict", "use_cache", "classifier_dropout", "summary_type", "summary_use_proj",
    "summary_activation", "summary_proj_to_labels", "summary_first_dropout", "is_decoder",
    "add_cross_attention", "chunk_size_feed_forward", "pruned_heads", "torchscript",
}


@dataclass
class ModuleMetadata:
    """Everything needed to check a module against a model before composing it."""

    kind: str
    role: str  # "language" or "task"
    base_fingerprint: str
    body_digest: str
    embedding_digest: str
    tokenizer_hash: str
    language: str | None = None
    task: str | None = None  # "seq-cls" / "token-cls" for task modules
    labels: list[str] = field(default_factory=list)
    size: dict[str, Any] = field(default_factory=dict)  # e.g. {"rank": 8} or {"k": 100000}
    trainable_parameters: int = 0
    touches_embeddings: bool = False
    has_head: bool = False
    has_vocabulary: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # the kind's config dataclass as a dict
    training: dict[str, Any] = field(default_factory=dict)
    # a module written by ``compose --no-merge``: one record per part (name, path, kind, role, digests)
    parts: list[dict[str, Any]] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / METADATA_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "ModuleMetadata":
        path = Path(directory) / METADATA_FILE
        if not path.is_file():
            raise UserError(f"{directory} is not a langgraft module (no {METADATA_FILE}); "
                            "give a directory written by `langgraft module train-language/train-task`")
        data = read_sidecar(path, "the module metadata", "retrain or restore the module")
        try:
            known = {f.name for f in dataclasses.fields(cls)}
            metadata = cls(**{k: v for k, v in data.items() if k in known})
            if not isinstance(metadata.parts, list) or not all(isinstance(part, dict) for part in metadata.parts):
                raise TypeError("'parts' must be a list of objects")
            return metadata
        except (TypeError, AttributeError) as exc:
            raise UserError(f"{path}: corrupted module metadata ({exc}); retrain or restore the module") from None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def find_layer_stack(model: Any) -> Any:
    """The ``nn.ModuleList`` of transformer blocks (the longest ModuleList of the base model)."""
    # deferred: keeps torch off `langgraft --help`
    import torch.nn as nn

    base = getattr(model, "base_model", model)
    candidates = [m for m in base.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not candidates:
        raise UserError(f"cannot find the transformer layer stack of {type(model).__name__}; "
                        "langgraft modules need a model with a ModuleList of layers")
    return max(candidates, key=len)


def base_fingerprint(model: Any) -> str:
    """Hash of the body architecture: config minus volatile fields, plus layer-stack shapes."""
    config = {k: v for k, v in model.config.to_dict().items()
              if k not in _VOLATILE_CONFIG_KEYS and not k.startswith("_") and not k.endswith("token_id")
              and not k.endswith("token_ids")}
    shapes = [(name, list(p.shape)) for name, p in find_layer_stack(model).named_parameters()]
    return _sha(json.dumps([config, shapes], sort_keys=True, default=str).encode())


def _value_digest(named_tensors: Any) -> str:
    # deferred: keeps torch off `langgraft --help`
    import torch

    hasher = hashlib.sha256()
    for name, tensor in named_tensors:
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // _SAMPLE_PER_TENSOR)
        sample = flat[::step][:_SAMPLE_PER_TENSOR].to(torch.float32).cpu()
        hasher.update(name.encode())
        hasher.update(sample.numpy().round(5).tobytes())
    return hasher.hexdigest()[:16]


def body_digest(model: Any) -> str:
    return _value_digest(find_layer_stack(model).named_parameters())


def embedding_digest(model: Any) -> str:
    weight = model.get_input_embeddings().weight
    return _value_digest([(f"{tuple(weight.shape)}", weight)])


def tokenizer_hash(tokenizer: Any) -> str:
    """Hash of the vocabulary (token -> id) and special tokens; '' when no tokenizer is known."""
    if tokenizer is None:
        return ""
    payload = [sorted(tokenizer.get_vocab().items()), sorted(map(str, tokenizer.all_special_tokens))]
    return _sha(json.dumps(payload, ensure_ascii=False).encode())


@dataclass
class ModelIdentity:
    """The digests of a model as it was before any module was composed onto it."""

    base_fingerprint: str
    body_digest: str
    embedding_digest: str

    @classmethod
    def of(cls, model: Any) -> "ModelIdentity":
        return cls(base_fingerprint(model), body_digest(model), embedding_digest(model))


def check_compatible(meta: ModuleMetadata, identity: ModelIdentity, where: str) -> None:
    """Raise a one-line :class:`UserError` when ``meta`` was trained on another base."""
    if meta.base_fingerprint != identity.base_fingerprint:
        raise UserError(
            f"module {where} ({meta.kind}, {meta.role}) was trained on a different base architecture "
            f"(fingerprint {meta.base_fingerprint}, this model {identity.base_fingerprint}); "
            "use the model the module was trained on")
    if meta.body_digest != identity.body_digest:
        raise UserError(
            f"module {where} was trained on other base weights (body digest {meta.body_digest}, this "
            f"model {identity.body_digest}); use the exact checkpoint the module was trained on")
