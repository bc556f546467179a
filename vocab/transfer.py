"""The vocabulary-transfer engine: apply a method's :class:`TokenMapping` to a whole checkpoint.

A method only decides *which source rows, with which weights* make each new token. This module
applies that rule identically to the input embeddings, an untied output head and the output
bias; maps special tokens by role; keeps old rows exactly in extension mode; draws fallback rows
from N(mean, std) of the source rows with a seeded generator; and writes a stock-loadable
checkpoint plus ``provenance.jsonl`` and ``transfer_summary.json``, atomically.
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from langgraft.atomic import atomic_dir
from langgraft.outputs import check_output
from langgraft.errors import UserError
from langgraft.models import auto_class, head_kind, load_config, load_model, load_tokenizer
from langgraft.vocab.canonical import ROLE_TWINS, special_roles, tokenizer_family
from langgraft.vocab.init.base import (COPIED, FALLBACK, KIND_NAMES, MODES, TokenMapping,
                                       TransferContext, TransferResources, config_from_options, get_method,
                                       read_extension_size)

PROVENANCE_FILE = "provenance.jsonl"
SUMMARY_FILE = "transfer_summary.json"
FACTORIZED_FILE = "factorized_embeddings.safetensors"
HEADLESS_HINT = ("the source has no LM head: this is a body-only checkpoint; run `langgraft head recover` "
                 "on the source first to measure or train with MLM")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def load_source(source: str | Path) -> tuple[Any, str | None]:
    """Load the source with its LM head when it has one; returns ``(model, head kind)``."""
    kind = head_kind(load_config(source))
    return load_model(source, auto_class(kind)), kind


def resolve_mode(mode: str, target_tokenizer_dir: str | None) -> str:
    if mode == "auto":
        has_extension = target_tokenizer_dir is not None and read_extension_size(target_tokenizer_dir) is not None
        return "extend" if has_extension else "replace"
    if mode not in MODES:
        raise UserError(f"--mode {mode!r} is not one of: auto, {', '.join(MODES)}")
    return mode


def check_families(source_tokenizer: Any, target_tokenizer: Any) -> None:
    """Both tokenizers must mark word boundaries the same way (same family)."""
    source_family, target_family = tokenizer_family(source_tokenizer), tokenizer_family(target_tokenizer)
    if source_family != target_family:
        raise UserError(f"target tokenizer is {target_family} but the source model's is {source_family}; "
                        f"train the target tokenizer with `langgraft tokenizer train` on the source's family")


def check_extension(source_tokenizer: Any, target_tokenizer: Any, original_size: int, target_dir: str | None) -> None:
    """In extension mode the first ids of the target tokenizer must be the source vocabulary."""
    source_vocab = source_tokenizer.convert_ids_to_tokens(list(range(original_size)))
    target_vocab = target_tokenizer.convert_ids_to_tokens(list(range(min(original_size, len(target_tokenizer)))))
    if original_size != len(source_tokenizer) or source_vocab != target_vocab or len(target_tokenizer) <= original_size:
        raise UserError(f"extension mode: tokenizer {target_dir or ''} is not the source vocabulary plus new pieces; "
                        "extend the source's own tokenizer (`langgraft tokenizer extend`) or use --mode replace")


def check_embedding_rows(ctx: TransferContext) -> None:
    """Every source token id must have an embedding row."""
    if len(ctx.source_tokenizer) > ctx.source_embeddings.shape[0]:
        raise UserError(f"the source tokenizer has {len(ctx.source_tokenizer)} tokens but the model only "
                        f"{ctx.source_embeddings.shape[0]} embedding rows; pass the source's own tokenizer")


# --------------------------------------------------------------------------------------------
# The full target-vocabulary plan: method rows + special roles + kept rows
# --------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """Neighbours, weights and kind for every target id (``V_t`` rows)."""

    source_ids: torch.Tensor
    weights: torch.Tensor
    kinds: torch.Tensor
    fallback: str
    factorization: tuple[torch.Tensor, torch.Tensor] | None = None
    kept_rows: int = 0  # extension mode: ids below this keep their source rows exactly


def special_source_ids(ctx: TransferContext) -> dict[int, int]:
    """target special id -> source id, by role (cls/bos, sep/eos, pad, mask, unk), then by string."""
    source_roles = special_roles(ctx.source_tokenizer)
    mapped: dict[int, int] = {}
    for role, target_id in special_roles(ctx.target_tokenizer).items():
        source_id = source_roles.get(role, source_roles.get(ROLE_TWINS.get(role, ""), None))
        if source_id is not None and target_id not in mapped:
            mapped[target_id] = source_id
    source_by_string = {ctx.source_tokenizer.convert_ids_to_tokens(i): i for i in ctx.source_tokenizer.all_special_ids}
    for target_id in sorted(ctx.target_special_ids):
        if target_id not in mapped:
            token = ctx.target_tokenizer.convert_ids_to_tokens(target_id)
            if token in source_by_string:
                mapped[target_id] = source_by_string[token]
    limit = ctx.source_embeddings.shape[0]
    return {t: s for t, s in mapped.items() if s < limit}


def build_plan(ctx: TransferContext, mapping: TokenMapping) -> Plan:
    """Kept extension rows, then specials by role, then the method's rows; everything else falls back."""
    vocab, width = ctx.target_vocab_size, mapping.source_ids.shape[1]
    source_ids = torch.full((vocab, width), -1, dtype=torch.long)
    weights = torch.zeros(vocab, width)
    kinds = torch.full((vocab,), FALLBACK, dtype=torch.int8)

    def copy(target: torch.Tensor, source: torch.Tensor) -> None:
        source_ids[target, 0] = source
        weights[target, 0] = 1.0
        kinds[target] = COPIED

    kept_rows = min(ctx.original_vocab_size, ctx.source_embeddings.shape[0]) if ctx.mode == "extend" else 0
    copy(torch.arange(kept_rows), torch.arange(kept_rows))
    specials = special_source_ids(ctx)
    if specials:
        copy(torch.tensor(list(specials)), torch.tensor(list(specials.values())))
    source_ids[mapping.target_ids] = mapping.source_ids
    weights[mapping.target_ids] = mapping.weights
    kinds[mapping.target_ids] = mapping.kinds
    return Plan(source_ids, weights, kinds, mapping.fallback, mapping.factorization, kept_rows)


def weight_matrix(plan: Plan, source_rows: int) -> torch.Tensor:
    """The plan as a sparse CSR (V_t × V_s) matrix: one row of neighbour weights per target token."""
    n, k = plan.source_ids.shape
    valid = plan.source_ids >= 0
    with warnings.catch_warnings():  # CSR support is flagged beta; products on CPU are exact and deterministic
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(torch.arange(0, n * k + 1, k), plan.source_ids.clamp_min(0).reshape(-1),
                                       torch.where(valid, plan.weights, 0.0).reshape(-1), size=(n, source_rows))


def combine_rows(matrix: torch.Tensor, plan: Plan, generator: torch.Generator) -> torch.Tensor:
    """Σ w · matrix[source] for every target row (one sparse product); fallback rows from the matrix stats."""
    source = matrix.detach().float()
    flat = source.dim() == 1
    source = source[:, None] if flat else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = weight_matrix(plan, source.shape[0]) @ source
    fallback = plan.kinds == FALLBACK
    mean = source.mean(dim=0)
    if plan.fallback == "mean" or flat:
        out[fallback] = mean
    else:
        std = source.std(dim=0)
        noise = torch.randn(int(fallback.sum()), source.shape[1], generator=generator)
        out[fallback] = mean + noise * std
    return out[:, 0] if flat else out


# --------------------------------------------------------------------------------------------
# Applying the plan to the model
# --------------------------------------------------------------------------------------------
def set_special_ids(model: Any, tokenizer: Any) -> None:
    """config/generation_config special ids follow the target tokenizer (None where it has none)."""
    configs = [model.config] + ([model.generation_config] if getattr(model, "generation_config", None) else [])
    for config in configs:
        for role in ("pad", "bos", "eos"):
            attribute = f"{role}_token_id"
            if hasattr(config, attribute) or getattr(tokenizer, attribute, None) is not None:
                setattr(config, attribute, getattr(tokenizer, attribute, None))
        if hasattr(config, "sep_token_id"):
            config.sep_token_id = getattr(tokenizer, "sep_token_id", None)


def factorized_rows(plan: Plan, old_input: torch.Tensor, generator: torch.Generator
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Target coordinates (same weights over the source coordinates) and rows = coordinates @ primitives."""
    coordinates, primitives = plan.factorization
    target_coordinates = combine_rows(coordinates, plan, generator)
    rows = target_coordinates @ primitives.float()
    rows[:plan.kept_rows] = old_input[:plan.kept_rows].float()
    return rows, {"coordinates": target_coordinates.contiguous(), "primitives": primitives.float().contiguous()}


@torch.no_grad()
def apply_plan(ctx: TransferContext, plan: Plan) -> dict[str, dict[str, torch.Tensor]]:
    """Resize the source model in place to the target vocabulary and fill every vocab-indexed tensor.

    Returns extra safetensors artifacts (file name -> tensors) to save beside the checkpoint.
    """
    model = ctx.source_model
    input_embeddings = model.get_input_embeddings()
    output_embeddings = model.get_output_embeddings()
    old_input = input_embeddings.weight.detach().clone()
    tied = output_embeddings is not None and output_embeddings.weight.data_ptr() == input_embeddings.weight.data_ptr()
    old_head = None if output_embeddings is None or tied else output_embeddings.weight.detach().clone()
    old_bias = None
    if output_embeddings is not None and getattr(output_embeddings, "bias", None) is not None:
        old_bias = output_embeddings.bias.detach().clone()

    artifacts = {}
    if plan.factorization is None:
        new_input = combine_rows(old_input, plan, ctx.generator(1))
    else:
        new_input, artifacts[FACTORIZED_FILE] = factorized_rows(plan, old_input, ctx.generator(1))
    model.resize_token_embeddings(ctx.target_vocab_size, mean_resizing=False)
    model.get_input_embeddings().weight.copy_(new_input.to(old_input.dtype))
    if old_head is not None:
        model.get_output_embeddings().weight.copy_(combine_rows(old_head, plan, ctx.generator(2)).to(old_head.dtype))
    if old_bias is not None:
        model.get_output_embeddings().bias.copy_(combine_rows(old_bias, plan, ctx.generator(3)).to(old_bias.dtype))
    model.config.vocab_size = ctx.target_vocab_size
    set_special_ids(model, ctx.target_tokenizer)
    return artifacts


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------
def provenance_rows(ctx: TransferContext, plan: Plan) -> list[dict[str, Any]]:
    """One JSON-able dict per target token: id, token, kind, neighbour ids/tokens, weights."""
    target_pieces = ctx.target_tokenizer.convert_ids_to_tokens(list(range(ctx.target_vocab_size)))
    source_pieces = ctx.source_tokenizer.convert_ids_to_tokens(list(range(len(ctx.source_tokenizer))))
    rounded = ((plan.weights.double() * 1e6).round() / 1e6).tolist()
    rows = []
    for target_id, (ids, weights, kind) in enumerate(zip(plan.source_ids.tolist(), rounded, plan.kinds.tolist())):
        pairs = [(i, w) for i, w in zip(ids, weights) if i >= 0]
        rows.append({
            "id": target_id, "token": target_pieces[target_id], "kind": KIND_NAMES[kind],
            "source_ids": [i for i, _ in pairs],
            "source_tokens": [source_pieces[i] if i < len(source_pieces) else None for i, _ in pairs],
            "weights": [w for _, w in pairs],
        })
    return rows


@dataclass
class TransferOutcome:
    model: Any
    tokenizer: Any
    summary: dict[str, Any]
    provenance: list[dict[str, Any]]
    artifacts: dict[str, dict[str, torch.Tensor]]


def save_outcome(outcome: TransferOutcome, out: str | Path, *, overwrite: bool = False,
                 inputs: Sequence[str | Path | None] = ()) -> Path:
    """Write checkpoint + tokenizer + provenance + summary (+ method artifacts) in one atomic rename.

    An existing ``out`` is replaced only with ``overwrite``; one that is, holds or lies inside one of
    ``inputs`` never is.
    """
    from safetensors.torch import save_file

    with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        outcome.model.save_pretrained(tmp)
        outcome.tokenizer.save_pretrained(tmp)
        with open(tmp / PROVENANCE_FILE, "w", encoding="utf-8") as handle:
            for row in outcome.provenance:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        for name, tensors in outcome.artifacts.items():
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / name))
        (tmp / SUMMARY_FILE).write_text(json.dumps(outcome.summary, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    return Path(out)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------
def transfer(source: Any, target_tokenizer: Any, method: str, *, mode: str = "auto",
             resources: TransferResources | None = None, seed: int = 0, source_tokenizer: Any = None,
             calibrate_bias: bool = False, **method_options: Any) -> TransferOutcome:
    """Run ``method`` and return the new model, tokenizer, summary and provenance (nothing written).

    ``source``: model name/dir, or a loaded ``PreTrainedModel`` (then pass ``source_tokenizer``;
    it is modified in place). ``target_tokenizer``: tokenizer dir or a loaded tokenizer.
    ``mode``: ``"replace"``, ``"extend"`` or ``"auto"`` (extend when the tokenizer dir holds
    ``langgraft_extension.json``).
    ``calibrate_bias``: afterwards shift the output bias of the initialized rows so the model's mean
    prediction on ``resources.target_corpus`` matches its token frequencies
    (:mod:`langgraft.vocab.calibration`); needs a head with a bias and target text.
    """
    started = time.perf_counter()
    spec = get_method(method)
    config = config_from_options(method, method_options)
    resources = resources or TransferResources()
    resources.check_files()
    config.validate(resources)
    if calibrate_bias and not resources.target_corpus:
        raise UserError("bias calibration needs target-language text: give --target-corpus FILE")

    target_dir = None
    if isinstance(target_tokenizer, (str, Path)):
        target_dir = str(target_tokenizer)
        target_tokenizer = load_tokenizer(target_tokenizer)
    mode = resolve_mode(mode, target_dir)
    if isinstance(source, (str, Path)):
        source_name = str(source)
        source_tokenizer = source_tokenizer or load_tokenizer(source)
    elif source_tokenizer is None:
        raise UserError("pass source_tokenizer= together with a loaded source model")
    else:
        source_name = getattr(source, "name_or_path", "") or type(source).__name__
    check_families(source_tokenizer, target_tokenizer)
    original = None
    if mode == "extend":
        original = (read_extension_size(target_dir) if target_dir else None) or len(source_tokenizer)
        check_extension(source_tokenizer, target_tokenizer, original, target_dir)
    model, kind = load_source(source) if isinstance(source, (str, Path)) else (source, head_kind(source.config))
    model.eval()
    if calibrate_bias:
        from langgraft.vocab.calibration import output_bias

        output_bias(model)  # fail before the transfer work when there is no bias to calibrate
    ctx = TransferContext(model, source_tokenizer, target_tokenizer, mode=mode, seed=seed, resources=resources,
                          original_vocab_size=original)
    check_embedding_rows(ctx)

    method_started = time.perf_counter()
    mapping = spec.fn(config, ctx)
    mapping.check(ctx)
    method_seconds = time.perf_counter() - method_started
    plan = build_plan(ctx, mapping)
    provenance = provenance_rows(ctx, plan)
    artifacts = apply_plan(ctx, plan)
    calibration = None
    if calibrate_bias:
        from langgraft.vocab.calibration import calibrate_output_bias

        calibration = calibrate_output_bias(model, target_tokenizer, resources.target_corpus, mapping.target_ids,
                                            objective=kind, seed=seed)

    counts = mapping.counts()
    initialized = max(len(mapping.target_ids), 1)
    summary = {
        "method": method,
        "options": dataclasses.asdict(config),
        "mode": mode,
        "seed": seed,
        "source": source_name,
        "target_tokenizer": target_dir,
        "tokenizer_family": ctx.family,
        "head": kind,
        "source_vocab_size": int(ctx.source_embeddings.shape[0]),
        "target_vocab_size": ctx.target_vocab_size,
        "initialized_tokens": len(mapping.target_ids),
        "counts": counts,
        "counts_all_tokens": {name: int((plan.kinds == code).sum()) for code, name in enumerate(KIND_NAMES)},
        "coverage": round(1.0 - counts["fallback"] / initialized, 6),
        "fallback": mapping.fallback,
        "resources": resources.as_dict(),
        "method_seconds": round(method_seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        **({"hint": HEADLESS_HINT} if kind is None else {}),
        **({"notes": mapping.notes} if mapping.notes else {}),
        **({"bias_calibration": calibration} if calibration else {}),
    }
    return TransferOutcome(model, target_tokenizer, summary, provenance, artifacts)


def initialize_embeddings(source: Any, target_tokenizer: Any, method: str, *, mode: str = "auto",
                          resources: TransferResources | None = None, seed: int = 0, out: str | Path | None = None,
                          source_tokenizer: Any = None, calibrate_bias: bool = False, overwrite: bool = False,
                          **method_options: Any) -> Any:
    """Transfer ``source`` to ``target_tokenizer`` with ``method``; save to ``out`` when given.

    Returns the new model (same class as the source: MLM, CLM or headless body). ``out`` gets a
    ``save_pretrained`` checkpoint + the target tokenizer + ``provenance.jsonl`` +
    ``transfer_summary.json``, written atomically. Options are the method's config fields.
    """
    inputs = [p for p in (source, target_tokenizer) if isinstance(p, (str, Path))]
    if out is not None:
        check_output(out, inputs=inputs, overwrite=overwrite)
    outcome = transfer(source, target_tokenizer, method, mode=mode, resources=resources, seed=seed,
                       source_tokenizer=source_tokenizer, calibrate_bias=calibrate_bias, **method_options)
    if out is not None:
        save_outcome(outcome, out, overwrite=overwrite, inputs=inputs)
    return outcome.model


__all__ = ["initialize_embeddings", "transfer", "TransferOutcome", "save_outcome", "load_source",
           "PROVENANCE_FILE", "SUMMARY_FILE", "FACTORIZED_FILE"]
