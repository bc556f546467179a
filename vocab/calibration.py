"""Output-bias calibration: make a transferred model's average prediction match the target's token frequencies.

Transferred rows carry what the source model knows about context, but the output bias (and the
frequency part of the tied rows) still describes the *source* language. Measured on MiniLM →
Chichewa, every transferred checkpoint predicted masked Chichewa words worse than a context-free
unigram model at step 0 (2.9–3.6 bits per character against 2.29), and the first training steps
were spent repairing that through the tied rows, wiping out much of the transferred knowledge
(docs/benchmarks.md, "Convergence"). A closed-form correction does that repair before training:

    b_t  +=  log p(t) − log q̄(t)

where ``p`` is the smoothed frequency of token ``t`` in target text and ``q̄`` the model's
predicted distribution averaged over the scored positions of a sample of that text (the masked
words of the bits-per-character metric for MLM, every next token for CLM). It is the prior
correction of a classifier whose label frequencies changed; two rounds get the fixed point close.
Only the rows the transfer initialized change, so extension mode keeps the source's rows exact.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from langgraft.corpora import read_documents
from langgraft.errors import UserError
from langgraft.lm import clm_windows, mlm_windows, window_logits


@dataclass
class BiasCalibrationConfig:
    """How much text the correction reads; the defaults take a few seconds on a small model."""

    sample_documents: int = 512  # documents whose average prediction is q̄ (seeded reservoir sample)
    count_documents: int = 50_000  # documents whose token counts give p (the first ones of the corpus)
    rounds: int = 2
    smoothing: float = 0.1  # added to every token count
    mask_rate: float = 0.15  # MLM: share of words masked, as in the bits-per-character metric
    max_length: int = 128
    batch_size: int = 16


def require_output_bias(kind: str | None, has_bias: bool, model_type: str) -> None:
    """A :class:`UserError` saying why there is no output bias to calibrate, if there is none."""
    if kind is None:
        raise UserError("bias calibration needs an LM head; this checkpoint has none (run `langgraft head recover`)")
    if not has_bias:
        raise UserError(f"bias calibration: the {model_type} LM head has no output bias to calibrate; "
                        "leave calibration off for this model")


def output_bias(model: Any) -> torch.nn.Parameter:
    """The LM head's bias, or a :class:`UserError` saying why there is none to calibrate."""
    output = model.get_output_embeddings()
    bias = getattr(output, "bias", None) if output is not None else None
    require_output_bias(None if output is None else "head", bias is not None, model.config.model_type)
    return bias


def _token_frequencies_and_sample(tokenizer: Any, corpus: Sequence[str | os.PathLike], config: BiasCalibrationConfig,
                                  seed: int, rows: int) -> tuple[torch.Tensor, list[str], int]:
    """Smoothed frequencies of the ``rows`` output ids (padding rows past the tokenizer only get the
    smoothing) in the first ``count_documents`` documents, and a seeded sample of them."""
    counts = torch.zeros(max(rows, len(tokenizer)), dtype=torch.float64)
    chooser, sample, seen, batch = random.Random(seed), [], 0, []

    def count(texts: list[str]) -> None:
        ids = [token for document in tokenizer(texts, add_special_tokens=False)["input_ids"] for token in document]
        if ids:
            counts.add_(torch.bincount(torch.tensor(ids), minlength=counts.numel()).double())

    for text in (document for path in corpus for document in read_documents(Path(path))):
        if seen >= config.count_documents:
            break
        if len(sample) < config.sample_documents:  # reservoir sampling: every document equally likely
            sample.append(text)
        else:
            slot = chooser.randrange(seen + 1)
            if slot < config.sample_documents:
                sample[slot] = text
        seen += 1
        batch.append(text)
        if len(batch) == 1000:
            count(batch)
            batch = []
    if batch:
        count(batch)
    if counts.sum() == 0:
        raise UserError(f"bias calibration: no target-language text in {', '.join(map(str, corpus))}; "
                        "give the target corpus the tokenizer was trained on")
    smoothed = counts + config.smoothing
    return (smoothed / smoothed.sum()).float(), sample, seen


@torch.no_grad()
def mean_prediction(model: Any, tokenizer: Any, texts: list[str], objective: str, config: BiasCalibrationConfig,
                    seed: int) -> tuple[torch.Tensor, int]:
    """The model's predicted distribution averaged over the scored positions of ``texts``, and their number."""

    if objective == "mlm":
        windows, _ = mlm_windows(tokenizer, texts, 0, seed, config.mask_rate, config.max_length)
    else:
        windows, _ = clm_windows(tokenizer, texts, config.max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, positions = None, 0
    for start in range(0, len(windows), config.batch_size):
        logits, targets = window_logits(model, windows[start:start + config.batch_size], pad_id)
        probabilities = logits.float().softmax(dim=-1).sum(dim=0)
        total = probabilities if total is None else total + probabilities
        positions += len(targets)
    if total is None:
        raise UserError("bias calibration: the sample of target text has no scorable positions; give longer documents")
    return (total / positions).cpu(), positions


def calibrate_output_bias(model: Any, tokenizer: Any, corpus: Sequence[str | os.PathLike],
                          token_ids: torch.Tensor, *, objective: str, seed: int = 0,
                          config: BiasCalibrationConfig | None = None) -> dict[str, Any]:
    """Shift the output bias of ``token_ids`` so the mean prediction on ``corpus`` matches its token frequencies.

    Returns a summary with KL(p ‖ q̄) in bits before and after each round (lower is better calibrated).
    Deterministic for a given ``seed``. The model is left in eval mode as it was found.
    """
    config = config or BiasCalibrationConfig()
    bias = output_bias(model)
    if objective == "mlm" and tokenizer.mask_token_id is None:
        raise UserError("bias calibration: the tokenizer has no mask token, so masked-LM predictions cannot be taken")
    frequencies, sample, counted = _token_frequencies_and_sample(tokenizer, corpus, config, seed, bias.numel())
    ids = token_ids.to(torch.long).to(bias.device)
    was_training = model.training
    model.eval()
    kl_bits, positions = [], 0

    def divergence(prediction: torch.Tensor) -> float:
        return float((frequencies * (frequencies.log() - prediction.clamp_min(1e-30).log())).sum() / math.log(2))

    try:
        for _ in range(config.rounds):
            prediction, positions = mean_prediction(model, tokenizer, sample, objective, config, seed)
            kl_bits.append(divergence(prediction))
            shift = frequencies.log() - prediction.clamp_min(1e-30).log()
            bias.data[ids] += shift.to(bias.device, bias.dtype)[ids]
        prediction, positions = mean_prediction(model, tokenizer, sample, objective, config, seed)
        kl_bits.append(divergence(prediction))
    finally:
        model.train(was_training)
    return {"rounds": config.rounds, "counted_documents": counted, "sample_documents": len(sample),
            "scored_positions": positions, "calibrated_tokens": int(ids.numel()),
            "kl_bits_per_round": [round(value, 4) for value in kl_bits]}


__all__ = ["BiasCalibrationConfig", "calibrate_output_bias", "mean_prediction", "output_bias", "require_output_bias"]
