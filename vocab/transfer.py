"""The vocabulary-transfer engine: apply a method's :class:`TokenMapping` to a checkpoint's vocabulary tensors.

A method only decides *which source rows, with which weights* make each new token. This module
applies that rule identically to the input embeddings, an untied output head and the output
bias; maps special tokens by role; keeps old rows exactly in extension mode; draws fallback rows
from N(mean, std) of the source rows with a seeded generator; pads the new tables like the
source's; and writes a stock-loadable checkpoint plus ``provenance.jsonl`` and
``transfer_summary.json``, atomically.

It works on tensors, not on a model: from a checkpoint directory only the vocabulary tensors are
read (:mod:`langgraft.vocab.checkpoint`), the new ones are computed in float32 blocks and stored
in the source's dtype, and the output carries every other tensor over byte for byte, in the
source's shard layout. The body is loaded only by a step that runs the model (bias calibration)
or when a caller asks for :attr:`TransferOutcome.model`; the summary records when that happened.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from langgraft.atomic import atomic_dir
from langgraft.outputs import check_output
from langgraft.errors import UserError
from langgraft.models import auto_class, head_kind, load_config, load_model, load_tokenizer
from langgraft.vocab.calibration import calibrate_output_bias, require_output_bias
from langgraft.vocab.canonical import ROLE_TWINS, detect_family, special_roles
from langgraft.vocab.checkpoint import (ROLES, CheckpointSource, ModelSource, file_sha256, open_source,
                                       output_config, set_special_ids)
from langgraft.vocab.init.base import (COPIED, FACTORIZED_FILE, FALLBACK, KIND_NAMES, MODES, UNREACHABLE, TokenMapping,
                                       TransferContext, TransferResources, config_from_options, get_method,
                                       read_extension_size, resolve_device)

log = logging.getLogger(__name__)

PROVENANCE_FILE = "provenance.jsonl"
TRANSFER_SUMMARY_FILE = "transfer_summary.json"
HEADLESS_HINT = ("the source has no LM head: this is a body-only checkpoint; run `langgraft head recover` "
                 "on the source first to measure or train with MLM")
MAX_INFERRED_MULTIPLE = 1024  # a padded table's multiple is the largest power of two dividing its rows, up to this
ENTRY_BUDGET = 1 << 24  # float32 numbers of gathered neighbour rows per block (64 MB)
NOISE_BLOCK = 4096  # fallback rows drawn per call of the generator (fixed: same seed, same rows)


# --------------------------------------------------------------------------------------------
# Loading and checks
# --------------------------------------------------------------------------------------------
def load_source(source: str | Path) -> tuple[Any, str | None]:
    """Load the whole source model with its LM head when it has one; returns ``(model, head kind)``."""
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
    """Both tokenizers must mark word boundaries the same way (:attr:`TokenizerFamily.marker`)."""
    source_family, target_family = detect_family(source_tokenizer), detect_family(target_tokenizer)
    if source_family.marker != target_family.marker:
        raise UserError(f"target tokenizer is {target_family.name} but the source model's is {source_family.name}; "
                        f"train the target tokenizer with `langgraft tokenizer train` on the source's family")


def check_extension(source_tokenizer: Any, target_tokenizer: Any, original_size: int, target_dir: str | None) -> None:
    """In extension mode the first ids of the target tokenizer must be the source vocabulary."""
    source_vocab = source_tokenizer.convert_ids_to_tokens(list(range(original_size)))
    target_vocab = target_tokenizer.convert_ids_to_tokens(list(range(min(original_size, len(target_tokenizer)))))
    if original_size != len(source_tokenizer) or source_vocab != target_vocab or len(target_tokenizer) <= original_size:
        raise UserError(f"extension mode: tokenizer {target_dir or ''} is not the source vocabulary plus new pieces; "
                        "extend the source's own tokenizer (`langgraft tokenizer extend`) or use --mode replace")


# --------------------------------------------------------------------------------------------
# Padded tables
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddingLayout:
    """Rows of the source and target tables: tokens first, padding rows (no token) after them."""

    source_rows: int
    source_tokens: int
    target_tokens: int
    multiple: int  # the output has a multiple of this many rows
    rows: int
    mode: str

    @property
    def kept_padding(self) -> slice:
        """Rows past the target tokens that keep the source's padding rows (extension mode only)."""
        end = min(self.source_rows, self.rows) if self.mode == "extend" else self.target_tokens
        return slice(self.target_tokens, max(end, self.target_tokens))

    @property
    def new_padding(self) -> slice:
        """Padding rows with no source row to keep: they get the mean source row."""
        return slice(self.kept_padding.stop, self.rows)

    def as_dict(self) -> dict[str, int]:
        return {"source_rows": self.source_rows, "source_tokens": self.source_tokens, "rows": self.rows,
                "tokens": self.target_tokens, "padding_rows": self.rows - self.target_tokens,
                "padding_multiple": self.multiple}


def embedding_layout(source_rows: int, source_tokens: int, target_tokens: int, mode: str,
                     pad_to_multiple_of: int | None = None) -> EmbeddingLayout:
    """The target table's size: the target tokens rounded up to the source's padding multiple.

    A source with rows past its tokenizer (Qwen2.5: 151,936 rows for 151,665 tokens) is padded
    to the largest power of two dividing its row count (128 there), capped at
    :data:`MAX_INFERRED_MULTIPLE`; ``pad_to_multiple_of`` overrides that; an unpadded source
    gives an unpadded target. In extension mode the table never shrinks below the source's.
    """
    if source_tokens > source_rows:
        raise UserError(f"the source tokenizer has {source_tokens} tokens but the model only {source_rows} embedding "
                        "rows (no padding room for the extra tokens); pass the source's own tokenizer, or resize "
                        "the model's embeddings to cover it first")
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise UserError(f"--pad-to-multiple-of {pad_to_multiple_of}: must be 1 (no padding) or more")
    multiple = pad_to_multiple_of or 1
    if pad_to_multiple_of is None and source_rows > source_tokens:
        multiple = min(source_rows & -source_rows, MAX_INFERRED_MULTIPLE)
    rows = -(-target_tokens // multiple) * multiple
    if mode == "extend":
        rows = max(rows, source_rows)
    return EmbeddingLayout(source_rows, source_tokens, target_tokens, multiple, rows, mode)


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
    return {t: s for t, s in mapped.items() if s < ctx.source_vocab_size}


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

    kept_rows = min(ctx.original_vocab_size, ctx.source_vocab_size) if ctx.mode == "extend" else 0
    copy(torch.arange(kept_rows), torch.arange(kept_rows))
    specials = special_source_ids(ctx)
    if specials:
        copy(torch.tensor(list(specials)), torch.tensor(list(specials.values())))
    source_ids[mapping.target_ids] = mapping.source_ids
    weights[mapping.target_ids] = mapping.weights
    kinds[mapping.target_ids] = mapping.kinds
    return Plan(source_ids, weights, kinds, mapping.fallback, mapping.factorization, kept_rows)


# --------------------------------------------------------------------------------------------
# New rows, in blocks
# --------------------------------------------------------------------------------------------
def row_statistics(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and (unbiased) std of ``matrix``'s rows, two passes over float32 blocks
    whose sums are accumulated in float64."""
    matrix = matrix if matrix.dim() == 2 else matrix[:, None]
    n, width = matrix.shape
    block = max(1, ENTRY_BUDGET // max(width, 1))
    total = torch.zeros(width, dtype=torch.float64)
    for start in range(0, n, block):
        total += matrix[start:start + block].float().sum(dim=0)
    mean = (total / max(n, 1)).float()
    squares = torch.zeros(width, dtype=torch.float64)
    for start in range(0, n, block):
        squares += ((matrix[start:start + block].float() - mean) ** 2).sum(dim=0)
    std = (squares / (n - 1)).sqrt().float() if n > 1 else torch.zeros(width)
    return mean, std


def fill_rows(out: torch.Tensor, source: torch.Tensor, plan: Plan, generator: torch.Generator,
              start: int = 0, statistics: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """``out[i] = Σ w · source[neighbour]`` for plan rows ``start..V_t`` (float32 sums, stored in ``out``'s dtype);
    fallback rows from the source rows' mean/std (``statistics``, computed when not given; the mean
    for a 1-D bias or ``fallback="mean"``); unreachable rows the mean."""
    flat = source.dim() == 1
    matrix = source[:, None] if flat else source
    target = out[:, None] if flat else out
    n, width = plan.source_ids.shape[0], matrix.shape[1]
    # blocks of target rows holding at most ENTRY_BUDGET / width neighbours (padding entries are skipped)
    per_block = max(1, ENTRY_BUDGET // max(1, width))
    filled = torch.cat([torch.zeros(1, dtype=torch.long), (plan.source_ids[start:] >= 0).sum(dim=1).cumsum(0)])
    begin = start
    while begin < n:
        reach = int(torch.searchsorted(filled, filled[begin - start] + per_block, right=True)) - 1
        end = min(n, max(begin + 1, start + reach))
        ids, weights = plan.source_ids[begin:end], plan.weights[begin:end]
        rows, columns = torch.nonzero(ids >= 0, as_tuple=True)
        block = torch.zeros(end - begin, width)
        block.index_add_(0, rows, matrix[ids[rows, columns]].float() * weights[rows, columns, None])
        target[begin:end] = block.to(out.dtype)
        begin = end
    fallback = torch.nonzero(plan.kinds[start:] == FALLBACK).squeeze(1) + start
    unreachable = torch.nonzero(plan.kinds[start:] == UNREACHABLE).squeeze(1) + start
    if not len(fallback) and not len(unreachable):
        return
    mean, std = statistics or row_statistics(matrix)
    target[unreachable] = mean.to(out.dtype)
    if plan.fallback == "mean" or flat:
        target[fallback] = mean.to(out.dtype)
        return
    for begin in range(0, len(fallback), NOISE_BLOCK):
        rows = fallback[begin:begin + NOISE_BLOCK]
        noise = torch.randn(len(rows), width, generator=generator)
        target[rows] = (mean + noise * std).to(out.dtype)


def table_rows(source: torch.Tensor, plan: Plan, layout: EmbeddingLayout, generator: torch.Generator) -> torch.Tensor:
    """The new (padded) table for one vocabulary tensor, in the source tensor's dtype."""
    real = source[:layout.source_tokens]
    out = torch.empty((layout.rows, *source.shape[1:]), dtype=source.dtype)
    new_padding = layout.new_padding.stop > layout.new_padding.start
    fallback = bool(((plan.kinds[plan.kept_rows:] == FALLBACK) | (plan.kinds[plan.kept_rows:] == UNREACHABLE)).any())
    statistics = row_statistics(real) if new_padding or fallback else None
    fill_rows(out, real, plan, generator, start=plan.kept_rows, statistics=statistics)
    out[:plan.kept_rows] = source[:plan.kept_rows]
    out[layout.kept_padding] = source[layout.kept_padding]
    if new_padding:
        out[layout.new_padding] = statistics[0].reshape(source.shape[1:]).to(out.dtype)
    return out


def factorized_table(source: torch.Tensor, plan: Plan, layout: EmbeddingLayout, generator: torch.Generator
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """OFA: target coordinates (same weights over the source coordinates, padding rows at the mean
    coordinates) and rows = coordinates @ primitives; kept rows stay exact."""
    coordinates, primitives = plan.factorization
    target = torch.empty(layout.rows, coordinates.shape[1])
    statistics = row_statistics(coordinates)
    fill_rows(target, coordinates, plan, generator, statistics=statistics)
    target[layout.target_tokens:] = statistics[0]
    out = torch.empty((layout.rows, source.shape[1]), dtype=source.dtype)
    block = max(1, ENTRY_BUDGET // source.shape[1])
    for begin in range(0, layout.rows, block):
        out[begin:begin + block] = (target[begin:begin + block] @ primitives.float()).to(source.dtype)
    out[:plan.kept_rows] = source[:plan.kept_rows]
    out[layout.kept_padding] = source[layout.kept_padding]
    return out, {"coordinates": target.contiguous(), "primitives": primitives.float().contiguous()}


def vocab_tables(ctx: TransferContext, plan: Plan, layout: EmbeddingLayout
                 ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """role -> new table for each vocabulary tensor the source has, one source tensor in memory at a time,
    and extra artifacts (OFA's factors)."""
    tables, artifacts = {}, {}
    for offset, role in enumerate(ROLES, start=1):
        if not ctx.source.has(role):
            continue
        source = ctx.source.read(role)
        if role == "input" and plan.factorization is not None:
            tables[role], artifacts[FACTORIZED_FILE] = factorized_table(source, plan, layout, ctx.generator(offset))
        else:
            tables[role] = table_rows(source, plan, layout, ctx.generator(offset))
        del source
    return tables, artifacts


# --------------------------------------------------------------------------------------------
# Config and model
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def apply_tables(model: Any, tables: dict[str, torch.Tensor], tokenizer: Any) -> Any:
    """Resize ``model`` in place to the new tables and copy them in; its configs follow ``tokenizer``."""
    model.resize_token_embeddings(tables["input"].shape[0], mean_resizing=False)
    model.get_input_embeddings().weight.copy_(tables["input"])
    if "head" in tables:
        model.get_output_embeddings().weight.copy_(tables["head"])
    if "bias" in tables:
        model.get_output_embeddings().bias.copy_(tables["bias"])
    set_special_ids(model.config, tokenizer)
    if getattr(model, "generation_config", None) is not None:
        set_special_ids(model.generation_config, tokenizer)
    return model


def load_transferred_model(source: CheckpointSource, tables: dict[str, torch.Tensor], tokenizer: Any, why: str) -> Any:
    """The whole source model loaded (its body included) with the new tables; says so in the log."""
    log.warning("%s: loading the whole source model (%s)", source.name, why)
    model = load_model(source.checkpoint.path, auto_class(source.kind))
    model.eval()
    return apply_tables(model, tables, tokenizer)


def inherit_chat_template(source_tokenizer: Any, target_tokenizer: Any) -> bool:
    """A target tokenizer without a chat template takes the source's (its special tokens are kept by role)."""
    template = getattr(source_tokenizer, "chat_template", None)
    if template and not getattr(target_tokenizer, "chat_template", None):
        target_tokenizer.chat_template = template
        return True
    return False


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


# --------------------------------------------------------------------------------------------
# Outcome and saving
# --------------------------------------------------------------------------------------------
@dataclass
class TransferOutcome:
    """The new vocabulary tensors (``tables``: role -> tensor in the source's dtype), config,
    tokenizer, summary and provenance; :meth:`save` / :func:`save_outcome` write the checkpoint."""

    source: CheckpointSource | ModelSource
    tables: dict[str, torch.Tensor]
    config: Any
    generation_config: Any | None
    tokenizer: Any
    summary: dict[str, Any]
    provenance: list[dict[str, Any]]
    artifacts: dict[str, dict[str, torch.Tensor]]
    loaded_model: Any = field(default=None, repr=False)

    @property
    def model(self) -> Any:
        """The transferred model in memory. From a checkpoint source this loads the whole model on
        first access (the CLI never does); from a loaded model it is that model, resized in place."""
        if self.loaded_model is None:
            self.loaded_model = load_transferred_model(self.source, self.tables, self.tokenizer, "outcome.model asked for")
        return self.loaded_model


def save_outcome(outcome: TransferOutcome, out: str | Path, copy_untouched: bool = False, *, overwrite: bool = False,
                 inputs: Sequence[str | Path | None] = ()) -> Path:
    """Write checkpoint + tokenizer + provenance + summary (+ method artifacts) in one atomic rename.

    An existing ``out`` is replaced only with ``overwrite``; one that is, holds or lies inside one of
    ``inputs`` never is.

    From a checkpoint source the weights keep its files and shard layout: shards without a
    vocabulary tensor are reflinked or hard-linked when the filesystem allows (``copy_untouched``:
    copied), the others rewritten tensor by tensor. ``summary["output_files"]`` records each
    weight file's size, sha256 and how it was written.
    """
    # deferred: keeps safetensors off `import langgraft.vocab.transfer`
    from safetensors.torch import save_file

    with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        if isinstance(outcome.source, CheckpointSource):
            files = outcome.source.write(tmp, outcome.tables, outcome.config, outcome.generation_config, copy_untouched)
        else:
            outcome.model.save_pretrained(tmp)
            files = {path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path), "written": "save_pretrained"}
                     for path in sorted(tmp.glob("*.safetensors"))}
        outcome.tokenizer.save_pretrained(tmp)
        with open(tmp / PROVENANCE_FILE, "w", encoding="utf-8") as handle:
            for row in outcome.provenance:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        for name, tensors in outcome.artifacts.items():
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / name))
        outcome.summary["output_files"] = files
        (tmp / TRANSFER_SUMMARY_FILE).write_text(json.dumps(outcome.summary, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    return Path(out)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------
def transfer(source: Any, target_tokenizer: Any, method: str, *, mode: str = "auto",
             resources: TransferResources | None = None, seed: int = 0, source_tokenizer: Any = None,
             calibrate_bias: bool = False, device: str = "auto", pad_to_multiple_of: int | None = None,
             **method_options: Any) -> TransferOutcome:
    """Run ``method`` and return the new tables, config, tokenizer, summary and provenance (nothing written).

    ``source``: model name/dir (only its vocabulary tensors are read), or a loaded
    ``PreTrainedModel`` (then pass ``source_tokenizer``; it is resized in place).
    ``target_tokenizer``: tokenizer dir or a loaded tokenizer. ``mode``: ``"replace"``,
    ``"extend"`` or ``"auto"`` (extend when the tokenizer dir holds ``langgraft_extension.json``).
    ``device``: where the similarity step runs (``auto``: a GPU when one is visible).
    ``pad_to_multiple_of``: rows of the new tables (default: the source's padding, see
    :func:`embedding_layout`).
    ``calibrate_bias``: afterwards shift the output bias of the initialized rows so the model's mean
    prediction on ``resources.target_corpus`` matches its token frequencies
    (:mod:`langgraft.vocab.calibration`); needs a head with a bias and target text, and runs the
    whole model.
    """
    started = time.perf_counter()
    spec = get_method(method)
    config = config_from_options(method, method_options)
    resources = resources or TransferResources()
    resources.check_files()
    config.validate(resources)
    if calibrate_bias and not resources.target_corpus:
        raise UserError("bias calibration needs target-language text: give --target-corpus FILE")
    device = resolve_device(device)

    target_dir = None
    if isinstance(target_tokenizer, (str, Path)):
        target_dir = str(target_tokenizer)
        target_tokenizer = load_tokenizer(target_tokenizer)
    mode = resolve_mode(mode, target_dir)
    if isinstance(source, (str, Path)):
        tensors = open_source(source)  # weights and headers are validated here, before any work
        source_tokenizer = source_tokenizer or load_tokenizer(source)
    elif source_tokenizer is None:
        raise UserError("pass source_tokenizer= together with a loaded source model")
    else:
        source.eval()
        tensors = ModelSource(source)
    check_families(source_tokenizer, target_tokenizer)
    original = None
    if mode == "extend":
        original = (read_extension_size(target_dir) if target_dir else None) or len(source_tokenizer)
        check_extension(source_tokenizer, target_tokenizer, original, target_dir)
    if calibrate_bias:
        require_output_bias(tensors.kind, tensors.has("bias"), tensors.config.model_type)
    layout = embedding_layout(tensors.shape[0], len(source_tokenizer), len(target_tokenizer), mode, pad_to_multiple_of)
    ctx = TransferContext(tensors, source_tokenizer, target_tokenizer, mode=mode, seed=seed, resources=resources,
                          original_vocab_size=original, device=device)

    method_started = time.perf_counter()
    mapping = spec.fn(config, ctx)
    if config.unreachable == "mean" or (config.unreachable == "auto" and mode == "extend"):
        mapping = mapping.mark_unreachable(ctx)
    mapping.check(ctx)
    method_seconds = time.perf_counter() - method_started
    ctx.__dict__.pop("source_embeddings", None)  # a method's float32 copy of E_s is not needed any more
    plan = build_plan(ctx, mapping)
    provenance = provenance_rows(ctx, plan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables, artifacts = vocab_tables(ctx, plan, layout)
    chat_template_from_source = inherit_chat_template(source_tokenizer, target_tokenizer)

    whole_model = [tensors.loads_model] if tensors.loads_model else []
    model = apply_tables(tensors.model, tables, target_tokenizer) if isinstance(tensors, ModelSource) else None
    calibration = None
    if calibrate_bias:
        if model is None:
            whole_model.append("bias calibration runs the model on target text")
            model = load_transferred_model(tensors, tables, target_tokenizer, whole_model[-1])
        calibration = calibrate_output_bias(model, target_tokenizer, resources.target_corpus, mapping.target_ids,
                                            objective=tensors.kind, seed=seed)
        tables["bias"] = model.get_output_embeddings().bias.detach().clone()
    new_config = output_config(tensors.config, layout.rows, target_tokenizer)
    generation = tensors.generation_config(new_config, target_tokenizer) if isinstance(tensors, CheckpointSource) else None

    counts = mapping.counts()
    initialized = max(len(mapping.target_ids), 1)
    summary = {
        "method": method,
        "options": dataclasses.asdict(config),
        "mode": mode,
        "seed": seed,
        "source": tensors.name,
        "target_tokenizer": target_dir,
        "tokenizer_family": ctx.family,
        "head": tensors.kind,
        "source_vocab_size": ctx.source_vocab_size,
        "target_vocab_size": ctx.target_vocab_size,
        "embedding_rows": layout.as_dict(),
        "dtype": str(tensors.dtype("input")).removeprefix("torch."),
        "device": device,
        "whole_model_loaded": whole_model,
        "initialized_tokens": len(mapping.target_ids),
        "counts": counts,
        "counts_all_tokens": {name: int((plan.kinds == code).sum()) for code, name in enumerate(KIND_NAMES)},
        "coverage": round((counts["copied"] + counts["neighbours"]) / initialized, 6),
        "fallback": mapping.fallback,
        "resources": resources.as_dict(),
        "method_seconds": round(method_seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        **({"chat_template": "copied from the source tokenizer"} if chat_template_from_source else {}),
        **({"hint": HEADLESS_HINT} if tensors.kind is None else {}),
        **({"notes": mapping.notes} if mapping.notes else {}),
        **({"bias_calibration": calibration} if calibration else {}),
    }
    return TransferOutcome(tensors, tables, new_config, generation, target_tokenizer, summary, provenance, artifacts,
                           loaded_model=model)


def initialize_embeddings(source: Any, target_tokenizer: Any, method: str, *, mode: str = "auto",
                          resources: TransferResources | None = None, seed: int = 0, out: str | Path | None = None,
                          source_tokenizer: Any = None, calibrate_bias: bool = False, device: str = "auto",
                          pad_to_multiple_of: int | None = None, copy_untouched: bool = False, overwrite: bool = False,
                          **method_options: Any) -> TransferOutcome:
    """Transfer ``source`` to ``target_tokenizer`` with ``method``; save to ``out`` when given.

    Returns the :class:`TransferOutcome` (``.model`` loads the transferred model when asked for).
    ``out`` gets the checkpoint in the source's dtype and shard layout + the target tokenizer +
    ``provenance.jsonl`` + ``transfer_summary.json``, written atomically (``copy_untouched``: see
    :func:`save_outcome`). Options are the method's config fields.
    """
    inputs = [p for p in (source, target_tokenizer) if isinstance(p, (str, Path))]
    if out is not None:
        check_output(out, inputs=inputs, overwrite=overwrite)
    outcome = transfer(source, target_tokenizer, method, mode=mode, resources=resources, seed=seed,
                       source_tokenizer=source_tokenizer, calibrate_bias=calibrate_bias, device=device,
                       pad_to_multiple_of=pad_to_multiple_of, **method_options)
    if out is not None:
        save_outcome(outcome, out, copy_untouched, overwrite=overwrite, inputs=inputs)
    return outcome


__all__ = ["initialize_embeddings", "transfer", "TransferOutcome", "save_outcome", "load_source", "head_kind",
           "auto_class", "embedding_layout", "EmbeddingLayout", "set_special_ids",
           "PROVENANCE_FILE", "TRANSFER_SUMMARY_FILE", "FACTORIZED_FILE"]
