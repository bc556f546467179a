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

``intervals["bpc"]`` is a bootstrap 95% interval resampling documents (ratio of the resampled
bits and characters sums, :func:`langgraft.eval.intervals.ratio_interval`).

``loss`` is the mean NLL per scored token in nats (the number Trainer reports); compare it only
between models that share a tokenizer. A document is one item of the input (a line of a text
file, or what :func:`langgraft.corpora.read_documents` yields for other formats).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from langgraft.corpora import read_documents
from langgraft.corpora.readers import batched
from langgraft.errors import UserError
from langgraft.eval.intervals import IntervalOptions, ratio_interval
from langgraft.models import OBJECTIVES, default_max_length, model_objective
from langgraft.options import Validated, option

_DOCUMENTS_PER_CHUNK = 256


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
    intervals: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- inputs


def iter_documents(texts_or_files: str | os.PathLike | Iterable[str | os.PathLike]) -> Iterator[str]:
    """Documents from texts and/or files: a single ``str``/path is a file; in a list, a ``str`` is a text."""

    if isinstance(texts_or_files, (str, os.PathLike)):
        texts_or_files = [Path(texts_or_files)]
    for item in texts_or_files:
        if isinstance(item, os.PathLike):
            yield from read_documents(item)
        elif item.strip():
            yield item



@dataclass
class BpcOptions(Validated):
    """How bits per character are measured (``eval bpc`` options and :func:`compute_bpc` keywords)."""

    mask_seed: int = option(0, help="seed of the fixed word masks (MLM)", ge=0)
    mask_rate: float = option(0.15, help="share of words masked (MLM)", gt=0, le=1)
    max_length: int | None = option(None, help="tokens per window (default: the model's limit)", ge=2)
    batch_size: int = option(16, help="windows per forward pass", ge=1, le=1 << 20)


def _window_nll(model: Any, windows: list[Any], pad_id: int) -> tuple[np.ndarray, int]:
    """NLL (nats) summed per window, and the count of scored positions, of ``windows`` in one padded batch."""
    # deferred: keeps torch off `langgraft --help`
    import torch

    from langgraft.lm import window_logits

    logits, targets = window_logits(model, windows, pad_id)
    nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    owner = torch.repeat_interleave(torch.arange(len(windows), device=nll.device),
                                    torch.tensor([len(w.targets) for w in windows], device=nll.device))
    per_window = torch.zeros(len(windows), dtype=torch.float64, device=nll.device).index_add_(0, owner, nll.double())
    return per_window.cpu().numpy(), len(targets)


def compute_bpc(
    model: Any,
    tokenizer: Any,
    texts_or_files: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    objective: str = "auto",
    mask_seed: int = BpcOptions.mask_seed,
    mask_rate: float = BpcOptions.mask_rate,
    max_length: int | None = BpcOptions.max_length,
    batch_size: int = BpcOptions.batch_size,
    bootstrap: int = IntervalOptions.bootstrap,
    bootstrap_seed: int = IntervalOptions.bootstrap_seed,
) -> BpcResult:
    """Bits per character of ``model`` on documents (texts, or files read with ``read_documents``).

    Streams the input in chunks, so corpora of any size fit in memory. The model is put in eval
    mode for the call and restored afterwards. See the module docstring for the definitions.
    Keeps two numbers per document (bits, characters) for the interval (``bootstrap`` resamples; 0: none).
    """
    # deferred: keeps torch off `langgraft --help`
    import torch

    from langgraft.lm import clm_windows, mlm_windows, special_token_frame  # torch: imported when scoring

    BpcOptions(mask_seed=mask_seed, mask_rate=mask_rate, max_length=max_length, batch_size=batch_size)
    if objective not in ("auto", *OBJECTIVES):
        raise UserError(f"objective {objective!r} is not one of auto, {', '.join(OBJECTIVES)}")
    if objective == "auto":
        objective = model_objective(model)
    elif model.get_output_embeddings() is None:
        raise UserError("model has no language-modelling head; add one with `langgraft head recover`")
    if objective == "mlm" and tokenizer.mask_token_id is None:
        raise UserError("tokenizer has no mask token, so it cannot be scored as a masked LM; use objective 'clm'")
    max_length = max_length or default_max_length(model.config, tokenizer)
    frame = sum(map(len, special_token_frame(tokenizer))) if objective == "mlm" else 1
    if max_length <= frame:
        raise UserError(f"max_length {max_length} leaves no room for text: this tokenizer adds {frame} special "
                        f"token(s) around each window; give at least {frame + 1}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    was_training = model.training
    model.eval()
    total_tokens, documents = 0, 0
    document_nll: list[np.ndarray] = []  # nats per document
    document_chars: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for texts in batched(iter_documents(texts_or_files), _DOCUMENTS_PER_CHUNK):
                windows, owners, chars = [], [], np.zeros(len(texts), dtype=np.int64)
                for offset, text in enumerate(texts):  # one call per document: windows stay with their document
                    if objective == "mlm":
                        found, chars[offset] = mlm_windows(tokenizer, [text], documents + offset, mask_seed, mask_rate,
                                                           max_length)
                    else:
                        found, chars[offset] = clm_windows(tokenizer, [text], max_length)
                    windows += found
                    owners += [offset] * len(found)
                order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))  # less padding
                nll = np.zeros(len(texts), dtype=np.float64)
                for batch in batched(order, batch_size):
                    per_window, count = _window_nll(model, [windows[i] for i in batch], pad_id)
                    np.add.at(nll, [owners[i] for i in batch], per_window)
                    total_tokens += count
                documents += len(texts)
                document_nll.append(nll)
                document_chars.append(chars)
    finally:
        model.train(was_training)
    nll_per_document = np.concatenate(document_nll) if document_nll else np.zeros(0)
    chars_per_document = np.concatenate(document_chars) if document_chars else np.zeros(0, dtype=np.int64)
    total_nll, total_chars = float(nll_per_document.sum()), int(chars_per_document.sum())
    if total_tokens == 0 or total_chars == 0:
        raise UserError(f"nothing to score in {_describe(texts_or_files)}: no documents"
                        + (" with a masked word; use more text or a higher --mask-rate" if objective == "mlm" else ""))
    bits = total_nll / math.log(2)
    interval = ratio_interval(nll_per_document / math.log(2), chars_per_document, bootstrap, bootstrap_seed)
    return BpcResult(bpc=bits / total_chars, loss=total_nll / total_tokens, tokens=total_tokens,
                     characters=total_chars, documents=documents, objective=objective, nll_bits=bits,
                     intervals={"bpc": interval} if interval is not None else {})


def _describe(texts_or_files: Any) -> str:
    if isinstance(texts_or_files, (str, os.PathLike)):
        return str(texts_or_files)
    return "the given texts"
