"""Sentence retrieval on aligned pairs: the SR-B protocol of Glot500 and OFA.

Each sentence is embedded as the mean of one middle layer's hidden states over its non-special
tokens; every source sentence then looks for its translation among all target sentences by cosine
similarity (and the other way round). Top-1 and top-10 accuracy in both directions measure how
well the adapted model's representation of the new language lines up with the source language,
without any labels. The two sides may use different models and tokenizers, e.g. the English
source model for English and the adapted model for the new language.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from langgraft.corpora.readers import read_parallel
import numpy as np
import torch

from langgraft.errors import UserError
from langgraft.eval.intervals import IntervalOptions, mean_interval
from langgraft.models import default_max_length
from langgraft.eval.tasks import inference, length_sorted_batches, model_device, pad_id
from langgraft.lm import pad_batch

TOP_K = (1, 10)


def num_layers(model: Any) -> int:
    """Number of transformer layers (``hidden_states`` holds this many plus the embeddings)."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    layers = getattr(config, "num_hidden_layers", None)
    if layers is None:
        raise UserError(f"cannot tell how many layers {type(model).__name__} has; pass an explicit layer")
    return int(layers)


def resolve_layer(model: Any, layer: int | None) -> int:
    """Index into ``hidden_states``: ``None`` = the middle layer, negative counts from the top."""
    total = num_layers(model)
    if layer is None:
        return max(1, total // 2)
    if not -(total + 1) <= layer <= total:
        raise UserError(f"layer {layer} is out of range for a {total}-layer model; use 0..{total} "
                        "(0 = embeddings) or a negative index")
    return layer % (total + 1)


def mean_pooled_embeddings(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    layer: int | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
) -> "torch.Tensor":
    """(len(texts), hidden) float32: mean of ``hidden_states[layer]`` over non-special, non-pad tokens."""

    index = resolve_layer(model, layer)
    max_length = max_length or default_max_length(model.config, tokenizer)
    padding = pad_id(model, tokenizer)
    device = model_device(model)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
    out: torch.Tensor | None = None
    with inference(model):
        for batch in length_sorted_batches([len(row) for row in encoded["input_ids"]], batch_size):
            input_ids, attention_mask = pad_batch([encoded["input_ids"][i] for i in batch], padding)
            special, _ = pad_batch([encoded["special_tokens_mask"][i] for i in batch], 1)
            outputs = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                            output_hidden_states=True)
            hidden = outputs.hidden_states[index].float()
            weights = (attention_mask * (1 - special)).to(hidden.device, hidden.dtype).unsqueeze(-1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
            if out is None:
                out = torch.empty((len(texts), pooled.shape[-1]), dtype=torch.float32)
            out[torch.as_tensor(batch)] = pooled.cpu()
    return out if out is not None else torch.empty((0, 0))


def retrieval_hits(
    queries: "torch.Tensor", keys: "torch.Tensor", ks: Sequence[int] = TOP_K, block_size: int = 1024
) -> dict[int, np.ndarray]:
    """Per query (bool array), whether its aligned key (same row index) is among its k most cosine-similar keys.

    Similarities are computed one block of queries at a time (memory ``block_size x len(keys)``).
    """

    queries = torch.nn.functional.normalize(queries.float(), dim=-1)
    keys = torch.nn.functional.normalize(keys.float(), dim=-1)
    depth = min(max(ks), len(keys))
    hits = {k: np.zeros(len(queries), dtype=bool) for k in ks}
    for start in range(0, len(queries), block_size):
        block = queries[start : start + block_size]
        top = (block @ keys.T).topk(depth, dim=-1).indices
        gold = torch.arange(start, start + len(block)).unsqueeze(-1)
        found = top == gold
        for k in ks:
            hits[k][start : start + len(block)] = found[:, :k].any(-1).numpy()
    return hits


def retrieval_accuracy(
    queries: "torch.Tensor", keys: "torch.Tensor", ks: Sequence[int] = TOP_K, block_size: int = 1024
) -> dict[int, float]:
    """Share of queries whose aligned key (same row index) is among their k most cosine-similar keys."""
    return {k: float(hit.mean()) if hit.size else 0.0
            for k, hit in retrieval_hits(queries, keys, ks, block_size).items()}


def read_pairs(src_path: str | Path, tgt_path: str | Path, fmt: str = "auto",
               max_pairs: int | None = None) -> tuple[list[str], list[str]]:
    """Aligned (source, target) sentences from line-aligned or ``id<TAB>text`` files; blank pairs dropped."""
    sources: list[str] = []
    targets: list[str] = []
    for _, src, tgt in read_parallel(src_path, tgt_path, fmt):
        if src.strip() and tgt.strip():
            sources.append(src)
            targets.append(tgt)
            if max_pairs is not None and len(sources) >= max_pairs:
                break
    return sources, targets


def evaluate_retrieval(
    source: tuple[Any, Any],
    target: tuple[Any, Any],
    pairs: Iterable[tuple[str, str]] | tuple[str | Path, str | Path],
    *,
    layer: int | None = None,
    batch_size: int = 32,
    max_pairs: int | None = None,
    bootstrap: int = IntervalOptions.bootstrap,
    bootstrap_seed: int = IntervalOptions.bootstrap_seed,
) -> dict[str, Any]:
    """SR-B retrieval scores for aligned sentence pairs.

    ``source`` and ``target`` are ``(model, tokenizer)`` pairs (the same pair twice for one
    multilingual model). ``pairs`` is an iterable of ``(source_text, target_text)`` or a
    ``(source_file, target_file)`` tuple of paths (see :func:`read_pairs`). ``layer`` indexes
    ``hidden_states`` of both models (``None``: each model's middle layer). ``intervals``: bootstrap
    95% intervals resampling the pairs (both directions of a pair together; 0 ``bootstrap``: none).
    """
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, (str, Path)) for p in pairs):
        sources, targets = read_pairs(pairs[0], pairs[1], max_pairs=max_pairs)
        where = f"{pairs[0]} / {pairs[1]}"
    else:
        chosen = [(s, t) for s, t in pairs if s.strip() and t.strip()][:max_pairs]
        sources, targets = [s for s, _ in chosen], [t for _, t in chosen]
        where = "the given pairs"
    if len(sources) < 2:
        raise UserError(f"sentence retrieval needs at least 2 aligned non-empty pairs, {where} has {len(sources)}")
    src_emb = mean_pooled_embeddings(*source, sources, layer=layer, batch_size=batch_size)
    tgt_emb = mean_pooled_embeddings(*target, targets, layer=layer, batch_size=batch_size)
    forward = retrieval_hits(src_emb, tgt_emb)
    backward = retrieval_hits(tgt_emb, src_emb)
    result: dict[str, Any] = {}
    per_pair: dict[str, np.ndarray] = {}
    for k in TOP_K:
        per_pair[f"top{k}_src2tgt"] = forward[k].astype(np.float64)
        per_pair[f"top{k}_tgt2src"] = backward[k].astype(np.float64)
        per_pair[f"top{k}"] = (per_pair[f"top{k}_src2tgt"] + per_pair[f"top{k}_tgt2src"]) / 2
    result.update({name: float(values.mean()) for name, values in per_pair.items()})
    result["pairs"] = len(sources)
    result["layer"] = [resolve_layer(source[0], layer), resolve_layer(target[0], layer)]
    intervals = {name: mean_interval(values, bootstrap, bootstrap_seed) for name, values in per_pair.items()}
    result["intervals"] = {k: v for k, v in intervals.items() if v is not None}
    return result
