"""Bits per character: the one intrinsic score comparable across tokenizers.

Token-level loss depends on how text is cut into tokens, so langgraft compares models by the
information they need per *character* of the original text:

- **MLM** (encoders): masks are drawn once over whole whitespace-separated words. Word ``w`` of
  document ``d`` is masked when ``u(seed, d, w) < mask_rate``, where ``u`` is a splitmix64 hash
  mapped to [0, 1). The choice never looks at a tokenizer, so every model and every checkpoint
  is scored on the same words. Every token whose character span overlaps a masked word is
  replaced by the mask token (all masked words of a window at once) and
  ``bpc = sum of NLL in bits of those tokens / sum of len(masked word)``.
- **CLM** (decoders): each document is prefixed with BOS (EOS when there is no BOS) and every
  text token is predicted from the ones before it;
  ``bpc = sum of NLL in bits of the predicted tokens / characters of the documents``.
  Long documents are scored in windows of ``max_length`` tokens that overlap by half a window,
  each token predicted exactly once.

``loss`` is the mean NLL per scored token in nats (the number Trainer reports); compare it only
between models that share a tokenizer. A document is one item of the input (a line of a text
file, or what :func:`langgraft.corpora.read_documents` yields for other formats).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from langgraft.corpora.readers import batched
from langgraft.errors import UserError

OBJECTIVES = ("auto", "mlm", "clm")
_WORD = re.compile(r"\S+")
_DOCUMENTS_PER_CHUNK = 256
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class BpcResult:
    """Scores of one model on one corpus (see the module docstring for the exact definitions)."""

    bpc: float
    loss: float
    tokens: int
    characters: int
    documents: int
    objective: str
    nll_bits: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


def word_mask_draws(seed: int, document_index: int, n_words: int) -> np.ndarray:
    """Uniform [0, 1) draws for words ``0..n_words-1`` of a document; word i is masked if draw < rate."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x100000001B3) + np.uint64(document_index))
        hashed = _splitmix64(key ^ _splitmix64(np.arange(n_words, dtype=np.uint64)))
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def masked_word_spans(text: str, document_index: int, seed: int, rate: float) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the words of ``text`` chosen for masking."""
    spans = [match.span() for match in _WORD.finditer(text)]
    draws = word_mask_draws(seed, document_index, len(spans))
    return [span for span, draw in zip(spans, draws) if draw < rate]


# --------------------------------------------------------------------------- models


def objective_from_config(config: Any) -> str:
    """``"mlm"`` or ``"clm"`` from ``config.architectures`` (else the model type's task mappings).

    Raises :class:`UserError` when the checkpoint has no language-modelling head.
    """
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    for name in getattr(config, "architectures", None) or ():
        if name.endswith(("ForMaskedLM", "ForPreTraining")) and config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return "mlm"
        if name.endswith(("ForCausalLM", "LMHeadModel")):
            return "clm"
    if not getattr(config, "architectures", None):
        if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not getattr(config, "is_encoder_decoder", False) \
                and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return "clm"
        if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return "mlm"
    raise UserError(
        f"model ({', '.join(getattr(config, 'architectures', None) or [config.model_type])}) has no "
        "language-modelling head; add one with `langgraft head recover` and pass that directory"
    )


def model_objective(model: Any) -> str:
    """Objective of an already loaded model, from its class (falls back to its config)."""
    if model.get_output_embeddings() is None:
        raise UserError(f"model {type(model).__name__} has no language-modelling head; "
                        "add one with `langgraft head recover`")
    name = type(model).__name__
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
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from langgraft.models import load_config, load_model

    objective = objective_from_config(load_config(name_or_path))
    auto_class = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    model, info = load_model(name_or_path, auto_class, output_loading_info=True, **kwargs)
    head = model.get_output_embeddings()
    head_names = {name for name, module in model.named_modules() if module is head}
    missing = [key for key in info.get("missing_keys", ()) if any(key.startswith(h) for h in head_names)
               and not model.config.tie_word_embeddings]
    if missing:
        raise UserError(f"model {name_or_path} has no trained language-modelling head ({missing[0]} is missing); "
                        "add one with `langgraft head recover`")
    return model, objective


def default_max_length(config: Any, tokenizer: Any, cap: int = 512) -> int:
    """Longest safe input: the model's position table (minus 2 for RoBERTa-style offsets) and the cap."""
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or cap
    limit = min(cap, positions - 2 if getattr(config, "pad_token_id", None) is not None and positions > 8 else positions)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limit = min(limit, tokenizer_limit)
    return int(limit)


def special_token_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single sequence (``[CLS]``/``[SEP]``, ``<s>``/``</s>``)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare):])
    return [], []


# --------------------------------------------------------------------------- inputs


def iter_documents(texts_or_files: str | os.PathLike | Iterable[str | os.PathLike]) -> Iterator[str]:
    """Documents from texts and/or files: a single ``str``/path is a file; in a list, a ``str`` is a text."""
    from langgraft.corpora import read_documents

    if isinstance(texts_or_files, (str, os.PathLike)):
        texts_or_files = [Path(texts_or_files)]
    for item in texts_or_files:
        if isinstance(item, os.PathLike):
            yield from read_documents(item)
        elif item.strip():
            yield item



@dataclass
class ScoredWindow:
    """One model input and the positions scored in it (``targets[i]`` is the id expected at ``positions[i]``)."""

    input_ids: list[int]
    positions: list[int]
    targets: list[int]


def mlm_windows(tokenizer: Any, texts: list[str], first_index: int, seed: int, rate: float,
                max_length: int) -> tuple[list[ScoredWindow], int]:
    """Windows with the tokens of masked words replaced by the mask token; returns masked characters."""
    prefix, suffix = special_token_frame(tokenizer)
    body = max_length - len(prefix) - len(suffix)
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    windows, characters = [], 0
    for offset, (text, ids, offsets) in enumerate(zip(texts, encoded["input_ids"], encoded["offset_mapping"])):
        spans = masked_word_spans(text, first_index + offset, seed, rate)
        if not spans or not ids:
            continue
        starts = np.array([s for s, _ in spans])
        ends = np.array([e for _, e in spans])
        token_offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        overlaps = (token_offsets[:, :1] < ends[None, :]) & (token_offsets[:, 1:] > starts[None, :])
        masked = overlaps.any(axis=1)
        characters += int((ends - starts)[overlaps.any(axis=0)].sum())
        for begin in range(0, len(ids), body):
            chunk = np.asarray(ids[begin:begin + body])
            chosen = np.flatnonzero(masked[begin:begin + body])
            if chosen.size == 0:
                continue
            inputs = chunk.copy()
            inputs[chosen] = tokenizer.mask_token_id
            windows.append(ScoredWindow(prefix + inputs.tolist() + suffix, (chosen + len(prefix)).tolist(),
                                        chunk[chosen].tolist()))
    return windows, characters


def clm_windows(tokenizer: Any, texts: list[str], max_length: int) -> tuple[list[ScoredWindow], int]:
    """Overlapping windows over BOS + document; every text token is a target exactly once."""
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    stride = max(1, max_length // 2)
    windows, characters = [], 0
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        if not ids:
            continue
        if start_id is None:  # the first token has no context: score from the second one
            characters += len(text) - offsets[0][1]
        else:
            ids = [start_id] + list(ids)
            characters += len(text)
        first = 1
        while first < len(ids):
            end = min(len(ids), first + stride if first > 1 else max_length)
            begin = max(0, end - max_length)
            positions = list(range(first - 1 - begin, end - 1 - begin))
            windows.append(ScoredWindow(list(ids[begin:end]), positions, list(ids[first:end])))
            first = end
    return windows, characters


def window_logits(model: Any, windows: list[ScoredWindow], pad_id: int) -> tuple[Any, Any]:
    """Logits at the scored positions of ``windows`` (one padded batch) and the ids expected there."""
    import torch

    device = next(model.parameters()).device
    width = max(len(w.input_ids) for w in windows)
    input_ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(windows), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for row, window in enumerate(windows):
        input_ids[row, :len(window.input_ids)] = torch.tensor(window.input_ids)
        attention[row, :len(window.input_ids)] = 1
        rows += [row] * len(window.positions)
        cols += window.positions
        targets += window.targets
    selected = torch.zeros((len(windows), width), dtype=torch.bool)
    selected[rows, cols] = True
    from langgraft.adapt.lm_rows import logits_at

    # positions ascend within each window, so ``targets`` is in the row-major order of ``selected``
    logits = logits_at(model, input_ids.to(device), attention.to(device), selected.to(device))
    return logits, torch.tensor(targets, device=device)


def _window_nll(model: Any, windows: list[ScoredWindow], pad_id: int) -> tuple[float, int]:
    """Summed NLL (nats) and count of the scored positions of ``windows`` in one padded batch."""
    import torch

    logits, targets = window_logits(model, windows, pad_id)
    nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return float(nll), len(targets)


def compute_bpc(
    model: Any,
    tokenizer: Any,
    texts_or_files: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    objective: str = "auto",
    mask_seed: int = 0,
    mask_rate: float = 0.15,
    max_length: int | None = None,
    batch_size: int = 16,
) -> BpcResult:
    """Bits per character of ``model`` on documents (texts, or files read with ``read_documents``).

    Streams the input in chunks, so corpora of any size fit in memory. The model is put in eval
    mode for the call and restored afterwards. See the module docstring for the definitions.
    """
    import torch

    if objective not in OBJECTIVES:
        raise UserError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    if objective == "auto":
        objective = model_objective(model)
    elif model.get_output_embeddings() is None:
        raise UserError("model has no language-modelling head; add one with `langgraft head recover`")
    if objective == "mlm" and tokenizer.mask_token_id is None:
        raise UserError("tokenizer has no mask token, so it cannot be scored as a masked LM; use objective 'clm'")
    if not 0.0 < mask_rate <= 1.0:
        raise UserError(f"mask rate {mask_rate} must be in (0, 1]")
    max_length = max_length or default_max_length(model.config, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    was_training = model.training
    model.eval()
    total_nll, total_tokens, total_chars, documents = 0.0, 0, 0, 0
    try:
        with torch.inference_mode():
            for texts in batched(iter_documents(texts_or_files), _DOCUMENTS_PER_CHUNK):
                if objective == "mlm":
                    windows, chars = mlm_windows(tokenizer, texts, documents, mask_seed, mask_rate, max_length)
                else:
                    windows, chars = clm_windows(tokenizer, texts, max_length)
                documents += len(texts)
                total_chars += chars
                windows.sort(key=lambda w: len(w.input_ids))  # less padding per batch
                for batch in batched(windows, batch_size):
                    nll, count = _window_nll(model, batch, pad_id)
                    total_nll += nll
                    total_tokens += count
    finally:
        model.train(was_training)
    if total_tokens == 0 or total_chars == 0:
        raise UserError(f"nothing to score in {_describe(texts_or_files)}: no documents"
                        + (" with a masked word; use more text or a higher --mask-rate" if objective == "mlm" else ""))
    bits = total_nll / math.log(2)
    return BpcResult(bpc=bits / total_chars, loss=total_nll / total_tokens, tokens=total_tokens,
                     characters=total_chars, documents=documents, objective=objective, nll_bits=bits)


def _describe(texts_or_files: Any) -> str:
    if isinstance(texts_or_files, (str, os.PathLike)):
        return str(texts_or_files)
    return "the given texts"


# --------------------------------------------------------------------------- CLI


def add_bpc_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bpc`` (``langgraft eval bpc``) to an ``eval`` sub-command tree."""
    parser = subparsers.add_parser(
        "bpc", help="bits per character of a checkpoint on held-out text",
        description="Bits per character (MLM with fixed whole-word masks, CLM by perplexity); "
                    "comparable across tokenizers.")
    parser.add_argument("--model", required=True, help="model directory (or hub name) with an LM head")
    parser.add_argument("--corpus", required=True, nargs="+", type=Path, help="held-out text file(s)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="auto")
    parser.add_argument("--mask-seed", type=int, default=0, help="seed of the fixed word masks (MLM)")
    parser.add_argument("--mask-rate", type=float, default=0.15, help="share of words masked (MLM)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per window (default: model limit)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run_bpc)
    return parser


def _run_bpc(args: argparse.Namespace) -> int:
    from langgraft.models import load_tokenizer

    model, objective = load_language_model(args.model)
    if args.objective != "auto":
        objective = args.objective
    tokenizer = load_tokenizer(args.model)
    result = compute_bpc(model, tokenizer, list(args.corpus), objective=objective, mask_seed=args.mask_seed,
                         mask_rate=args.mask_rate, max_length=args.max_length, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"bpc {result.bpc:.4f}  loss {result.loss:.4f}  ({result.objective}, {result.tokens} tokens, "
              f"{result.characters} characters, {result.documents} documents)")
    return 0
