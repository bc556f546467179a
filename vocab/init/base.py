"""The contract every embedding initializer follows, and the shared vectorized helpers.

How a method plugs in (PEFT ``tuners/<method>/`` style)::

    @dataclass
    class FooConfig(MethodConfig):
        k: int = 10                       # options: plain fields, str -> type via config_from_options

        def validate(self, resources: TransferResources) -> None:
            ...                           # optional: raise UserError for missing resources

    @register_method("foo", FooConfig, description="one line for --help and docs")
    def foo(config: FooConfig, ctx: TransferContext) -> TokenMapping:
        ...

A method receives a :class:`TransferContext` (the source's config and vocabulary tensors read on
demand, tokenizers, canonical tokens, exact-match overlap, the ids it must initialize, the source
input-embedding matrix, the device for similarities) and returns a
:class:`TokenMapping` for exactly ``ctx.new_token_ids``: for every target id, source neighbour ids
and weights (row_t = Σ w · row_s). The engine (:mod:`langgraft.vocab.transfer`) applies the same
weights to the input embeddings, to an untied output head and to the output bias, maps special
tokens by role, keeps old rows in extension mode, draws fallback rows, writes provenance, and
saves a stock-loadable checkpoint. Methods never touch the model's weights themselves, and never
see the body.

Contract details:

- ``TokenMapping.source_ids`` is ``(n, k)`` long, ``-1`` = padding; ``weights`` is ``(n, k)``
  float32 (rows should sum to 1); ``kinds`` is ``(n,)`` int8 with codes :data:`COPIED`,
  :data:`NEIGHBOURS`, :data:`FALLBACK` (names in :data:`KIND_NAMES`). A row with no valid
  neighbour must be :data:`FALLBACK`; build mappings with :meth:`TokenMapping.from_neighbours`,
  which derives that for you, and :meth:`TokenMapping.copy_overlap` to copy exact matches.
  The engine, not the method, marks :data:`UNREACHABLE` rows (``MethodConfig.unreachable``).
- ``TokenMapping.fallback`` picks how fallback rows are drawn: ``"random"`` (N(mean, std) per
  dimension of the source matrix, seeded) or ``"mean"`` (the source mean row).
- ``TokenMapping.factorization`` (optional): ``(coordinates (V_s × r), primitives (r × d))`` of a
  low-rank factorization of E_s (OFA). The engine then applies the weights to the coordinates,
  sets input rows = coordinates @ primitives (old rows stay exact in extension mode) and saves
  ``factorized_embeddings.safetensors`` next to the checkpoint. ``notes`` is merged into
  ``transfer_summary.json``.
- Use :func:`topk_similarities` and :func:`softmax_topk_weights` for the top-k rule (blocked
  matmul + ``torch.topk``, memory bounded by ``block_size``, on ``device=ctx.device``); use
  ``ctx.generator()`` for any randomness so the same seed gives bit-identical tensors.
- Read ``ctx.source_embeddings`` only when the rows' values are needed (it reads and converts
  the whole matrix); use ``ctx.source_vocab_size`` for its size. Source rows at or past
  ``source_vocab_size`` are padding and must not be neighbours (:meth:`TokenMapping.check`).
- Raise :class:`langgraft.errors.UserError` for bad input (missing resources, no dictionary pair
  found, ...): the CLI prints one line and exits 2, nothing is written.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch

from langgraft.errors import UserError
from langgraft.options import from_mapping
from langgraft.vocab.canonical import (CanonicalToken, canonical_tokens, decompose, detect_family, exact_matches,
                                       special_ids)
from langgraft.vocab.tokenizers import EXTENSION_FILE, read_extension_info

COPIED, NEIGHBOURS, FALLBACK, UNREACHABLE = 0, 1, 2, 3
FACTORIZED_FILE = "factorized_embeddings.safetensors"  # written beside the checkpoint for a factorized mapping
KIND_NAMES = ("copied", "neighbours", "fallback", "unreachable")
MODES = ("replace", "extend")


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
@dataclass
class TransferResources:
    """Offline resources shared by the methods that need them (CLI options of the same names).

    ``source_embeddings``/``target_embeddings``: fastText ``.bin`` paths (trained from the
    corpora when missing); ``dictionary``: TSV ``source<TAB>target``; ``source_corpus`` /
    ``target_corpus``: text files; ``parallel``: ``(source_file, target_file)`` line-aligned;
    ``helper``: model name/dir already using the target tokenizer (CLP); ``workdir``: where
    derived resources (trained fastText, induced dictionaries) are cached; ``None`` = a temp dir.
    """

    source_embeddings: str | None = None
    target_embeddings: str | None = None
    dictionary: str | None = None
    source_corpus: list[str] = field(default_factory=list)
    target_corpus: list[str] = field(default_factory=list)
    parallel: tuple[str, str] | None = None
    helper: str | None = None
    workdir: str | None = None

    def check_files(self) -> None:
        """UserError for any given path that does not exist (before any heavy work)."""
        paths = [("--source-embeddings", self.source_embeddings), ("--target-embeddings", self.target_embeddings),
                 ("--dictionary", self.dictionary)]
        paths += [("--source-corpus", p) for p in self.source_corpus]
        paths += [("--target-corpus", p) for p in self.target_corpus]
        paths += [("--parallel", p) for p in (self.parallel or ())]
        for option, path in paths:
            if path is not None and not Path(path).exists():
                raise UserError(f"{option} {path}: file not found; check the path")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MethodConfig:
    """Base of every method's config dataclass; fields are the method's options.

    ``unreachable`` (every method): what a new token gets when the target tokenizer never emits it,
    because its own surface tokenizes into other pieces (:attr:`TransferContext.unreachable`).
    Such a token is never an input and never a correct prediction, so its row only takes
    probability mass from the tokens that do occur, and in a tied head a row built from real
    pieces takes as much as those pieces. ``"mean"`` (default) gives it the mean source row, as
    ``mean`` does (the mean head row and bias for an untied head); ``"method"`` keeps the method's
    own row, as the published methods do; ``"auto"`` (default) is ``"mean"`` in extension mode and
    ``"method"`` in replacement mode. ``tokenizer extend`` leaves many such pieces: a new BPE merge
    cannot fire once the source's earlier merges have consumed its parts; a freshly trained
    tokenizer's vocabulary is the trainer's choice, and there the published rule stays the default
    (the anchor parity of ``wechsel`` and ``focus`` holds row for row).
    """

    unreachable: Literal["auto", "mean", "method"] = "auto"

    def validate(self, resources: TransferResources) -> None:
        """Raise UserError when ``resources`` lack what the method needs (called before loading models)."""


@dataclass
class TransferContext:
    """Everything a method may read. Derived views are computed once, on first access.

    ``source`` gives the source's config and its vocabulary tensors, read on demand
    (:mod:`langgraft.vocab.checkpoint`): a method that never touches ``source_embeddings`` never
    reads the embedding matrix, and no method ever sees the body. ``device`` is where the
    similarity step runs (``"cpu"``, ``"cuda"``, ...; already resolved from ``--device``).
    """

    source: Any  # CheckpointSource | ModelSource
    source_tokenizer: Any
    target_tokenizer: Any
    mode: str = "replace"
    seed: int = 0
    resources: TransferResources = field(default_factory=TransferResources)
    original_vocab_size: int | None = None  # extension mode: ids below this keep their rows
    device: str = "cpu"

    @cached_property
    def family(self) -> str:
        """The target tokenizer's family (the source's has the same boundary marker; see :mod:`langgraft.vocab.canonical`)."""
        return detect_family(self.target_tokenizer).name

    @cached_property
    def source_tokens(self) -> list[CanonicalToken]:
        return canonical_tokens(self.source_tokenizer)

    @cached_property
    def target_tokens(self) -> list[CanonicalToken]:
        return canonical_tokens(self.target_tokenizer)

    @cached_property
    def source_vocab_size(self) -> int:
        """Source rows a method may use as neighbours: one per source token; padding rows past the
        tokenizer (Qwen, Gemma) are never neighbours."""
        return min(len(self.source_tokenizer), self.source.shape[0])

    @cached_property
    def source_embeddings(self) -> torch.Tensor:
        """E_s: the source input-embedding rows of the source tokens, float32 (V_s × d), read on first use."""
        return self.source.read("input")[:self.source_vocab_size].float()

    @cached_property
    def target_vocab_size(self) -> int:
        return len(self.target_tokenizer)

    @cached_property
    def overlap(self) -> torch.Tensor:
        """(V_t,) long: source id of the exact canonical match of each target token, else -1."""
        overlap = torch.full((self.target_vocab_size,), -1, dtype=torch.long)
        limit = self.source_vocab_size
        for target_id, source_id in exact_matches(self.target_tokens, self.source_tokens).items():
            if source_id < limit:
                overlap[target_id] = source_id
        return overlap

    @cached_property
    def target_special_ids(self) -> set[int]:
        return special_ids(self.target_tokenizer)

    @cached_property
    def new_token_ids(self) -> torch.Tensor:
        """Sorted target ids a method must initialize (non-special; in extend mode only new ids)."""
        start = self.original_vocab_size if self.mode == "extend" else 0
        specials = self.target_special_ids
        return torch.tensor([i for i in range(start or 0, self.target_vocab_size) if i not in specials],
                            dtype=torch.long)

    @cached_property
    def unreachable(self) -> torch.Tensor:
        """(n,) bool over :attr:`new_token_ids`: the target tokenizer does not emit the token for its own
        surface (at its own word-boundary position), so it emits it nowhere.

        The test is exact for Unigram (a piece that loses the Viterbi path on its own span loses it
        inside any word) and for BPE up to ties (a piece is built only by merges inside its span, in
        the same order as on the span alone); a WordPiece token always matches itself. Byte pieces
        (emitted by byte fallback for any character without a piece) and pieces without a surface
        (a lone ``▁``) are never marked.
        """
        tokens = [self.target_tokens[i] for i in self.new_token_ids.tolist()]
        emitted = decompose(tokens, self.target_tokenizer)
        return torch.tensor([bool(ids) and ids != [token] and not piece.is_byte
                             for ids, token, piece in zip(emitted, self.new_token_ids.tolist(), tokens)],
                            dtype=torch.bool)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from ``seed`` (+ ``offset`` for independent streams)."""
        return torch.Generator().manual_seed(int(self.seed) * 1_000_003 + offset)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
@dataclass
class TokenMapping:
    """For each target id to initialize: source neighbours and weights, and how it was decided."""

    target_ids: torch.Tensor  # (n,) long
    source_ids: torch.Tensor  # (n, k) long, -1 = padding
    weights: torch.Tensor  # (n, k) float32
    kinds: torch.Tensor  # (n,) int8: COPIED / NEIGHBOURS / FALLBACK
    fallback: str = "random"  # "random" | "mean"
    factorization: tuple[torch.Tensor, torch.Tensor] | None = None  # (V_s × r coordinates, r × d primitives)
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fallback_only(cls, target_ids: torch.Tensor, fallback: str = "random") -> "TokenMapping":
        n = len(target_ids)
        return cls(target_ids.long(), torch.full((n, 1), -1, dtype=torch.long), torch.zeros(n, 1),
                   torch.full((n,), FALLBACK, dtype=torch.int8), fallback=fallback)

    @classmethod
    def from_neighbours(cls, target_ids: torch.Tensor, source_ids: torch.Tensor, weights: torch.Tensor,
                        **kwargs: Any) -> "TokenMapping":
        """Rows with at least one valid neighbour of positive total weight are NEIGHBOURS, others FALLBACK.

        Padding (-1) and zero-weight entries are dropped from the provenance.
        """
        source_ids = source_ids.long()
        weights = torch.where(source_ids >= 0, weights.float(), torch.zeros((), dtype=torch.float32))
        source_ids = torch.where(weights != 0, source_ids, -1)  # zero-weight neighbours are not neighbours
        valid = (weights.sum(dim=1) > 0) & torch.isfinite(weights).all(dim=1)
        kinds = torch.where(valid, NEIGHBOURS, FALLBACK).to(torch.int8)
        source_ids = torch.where(valid[:, None], source_ids, -1)
        weights = torch.where(valid[:, None], weights, 0.0)
        return cls(target_ids.long(), source_ids, weights, kinds, **kwargs)

    def copy_overlap(self, ctx: TransferContext) -> "TokenMapping":
        """Rows whose target token has an exact canonical source match become COPIED (weight 1)."""
        matched = ctx.overlap[self.target_ids]
        copied = matched >= 0
        source_ids = self.source_ids.clone()
        weights = self.weights.clone()
        source_ids[copied] = -1
        weights[copied] = 0.0
        source_ids[copied, 0] = matched[copied]
        weights[copied, 0] = 1.0
        kinds = torch.where(copied, COPIED, self.kinds.long()).to(torch.int8)
        return dataclasses.replace(self, source_ids=source_ids, weights=weights, kinds=kinds)

    def mark_unreachable(self, ctx: TransferContext) -> "TokenMapping":
        """Rows of tokens the target tokenizer never emits (:attr:`TransferContext.unreachable`) become
        :data:`UNREACHABLE`: the engine gives them the mean source row."""
        unreachable = ctx.unreachable
        if not unreachable.any():
            return self
        source_ids = torch.where(unreachable[:, None], -1, self.source_ids)
        weights = torch.where(unreachable[:, None], 0.0, self.weights)
        kinds = torch.where(unreachable, UNREACHABLE, self.kinds.long()).to(torch.int8)
        return dataclasses.replace(self, source_ids=source_ids, weights=weights, kinds=kinds,
                                   notes={**self.notes, "unreachable_tokens": int(unreachable.sum())})

    def counts(self) -> dict[str, int]:
        return {name: int((self.kinds == code).sum()) for code, name in enumerate(KIND_NAMES)}

    def check(self, ctx: TransferContext) -> None:
        """Programming-error checks: shapes, id ranges, finite weights, fallback rows empty."""
        n = len(self.target_ids)
        if not torch.equal(self.target_ids, ctx.new_token_ids):
            raise ValueError("TokenMapping.target_ids must equal ctx.new_token_ids")
        if self.source_ids.shape != self.weights.shape or self.source_ids.shape[0] != n or self.kinds.shape != (n,):
            raise ValueError("TokenMapping shapes disagree")
        if (self.source_ids >= ctx.source_vocab_size).any() or (self.source_ids < -1).any():
            raise ValueError("TokenMapping.source_ids out of range")
        if not torch.isfinite(self.weights).all():
            raise ValueError("TokenMapping.weights contain NaN/inf")
        if self.fallback not in ("random", "mean"):
            raise ValueError(f"unknown fallback {self.fallback!r}")
        if self.factorization is not None:
            coordinates, primitives = self.factorization
            if coordinates.shape[0] != ctx.source_vocab_size or \
                    primitives.shape != (coordinates.shape[1], ctx.source.shape[1]):
                raise ValueError("TokenMapping.factorization must be (V_s × r, r × d)")


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodSpec:
    name: str
    config_class: type
    fn: Callable[[Any, TransferContext], TokenMapping]
    description: str = ""


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(name: str, config_class: type | None = None, *, description: str = "") -> Callable:
    """Decorator registering ``fn(config, ctx) -> TokenMapping`` under ``name``.

    ``config_class`` defaults to the annotation of ``fn``'s first parameter. A name registered
    twice is a ``ValueError`` (a programming error: two methods would shadow each other).
    """

    def decorate(fn: Callable) -> Callable:
        if name in _REGISTRY:
            taken = _REGISTRY[name].fn
            raise ValueError(f"init method {name!r} is registered twice: by {taken.__module__}.{taken.__qualname__} "
                             f"and by {fn.__module__}.{fn.__qualname__}; give one of them another name")
        cls = config_class
        if cls is None:
            hints = typing.get_type_hints(fn)
            cls = hints[next(iter(hints))]
        doc = description or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[name] = MethodSpec(name, cls, fn, doc)
        return fn

    return decorate


def list_methods() -> list[str]:
    """Names of the registered methods (the package :mod:`langgraft.vocab.init` imports the built-in ones)."""
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    if name not in _REGISTRY:
        raise UserError(f"unknown method {name!r}; choose one of: {', '.join(list_methods())}")
    return _REGISTRY[name]


def config_from_options(name: str, options: dict[str, Any] | None = None) -> MethodConfig:
    """Build ``name``'s config from ``key -> value`` (YAML values or ``--option KEY=VALUE`` pairs)."""
    spec = get_method(name)
    if options is not None and not isinstance(options, dict):
        raise UserError(f"options of method {name!r}: expected a mapping of option: value, got {options!r}")
    return from_mapping(spec.config_class, {key.replace("-", "_"): value for key, value in (options or {}).items()},
                        f"method {name!r} option")


# --------------------------------------------------------------------------------------------
# Shared vectorized helpers
# --------------------------------------------------------------------------------------------
def _normalize_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def resolve_device(name: str | None = "auto") -> str:
    """``--device``: ``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; an unusable device is a UserError."""
    name = (name or "auto").strip()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise UserError(f"--device {name}: no such device is usable here; use --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return str(device)


def topk_similarities(queries: torch.Tensor, keys: torch.Tensor, k: int, block_size: int = 4096,
                      cosine: bool = True, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (cosine) similarities of every query row to all key rows.

    Blocked over queries: peak extra memory is ``block_size × len(keys)`` floats, on ``device``
    (the keys live there once; each block of queries is moved there and its top-k back). Zero
    rows get similarity 0 (never NaN). Returns CPU ``(values, indices)``, both
    ``(len(queries), min(k, len(keys)))``, sorted descending; ties broken by ``torch.topk``
    (deterministically on CPU; on a GPU, equal similarities may be ordered differently).
    """
    device = torch.device(device)
    queries = queries.float()
    keys = keys.float().to(device)
    if cosine:
        keys = _normalize_rows(keys)
    k = min(k, keys.shape[0])
    values = torch.empty(queries.shape[0], k)
    indices = torch.empty(queries.shape[0], k, dtype=torch.long)
    keys_t = keys.T.contiguous()
    # one reused block buffer: a fresh block per step costs page faults comparable to the matmul
    buffer = torch.empty(min(block_size, queries.shape[0]), keys.shape[0], device=device)
    block_values = torch.empty(buffer.shape[0], k, device=device)
    block_indices = torch.empty(buffer.shape[0], k, dtype=torch.long, device=device)
    for start in range(0, queries.shape[0], block_size):
        chunk = queries[start:start + block_size].to(device)
        if cosine:
            chunk = _normalize_rows(chunk)
        rows = chunk.shape[0]
        block = torch.mm(chunk, keys_t, out=buffer[:rows])
        torch.topk(block, k, dim=1, out=(block_values[:rows], block_indices[:rows]))
        values[start:start + rows] = block_values[:rows]
        indices[start:start + rows] = block_indices[:rows]
    return values, indices


def softmax_topk_weights(sim_values: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """WECHSEL/OFA weights: ``softmax(sim / tau)`` over each row's top-k similarities (float32)."""
    return torch.softmax(sim_values.float() / tau, dim=1)


def read_extension_size(tokenizer_dir: str | Path) -> int | None:
    """Original vocabulary size recorded by ``langgraft tokenizer extend``, or None."""
    info = read_extension_info(tokenizer_dir)
    return None if info is None else info["original_vocab_size"]


__all__: Sequence[str] = (
    "COPIED", "NEIGHBOURS", "FALLBACK", "UNREACHABLE", "KIND_NAMES", "MODES", "EXTENSION_FILE", "FACTORIZED_FILE",
    "TransferResources", "MethodConfig", "TransferContext", "TokenMapping", "MethodSpec",
    "register_method", "get_method", "list_methods", "config_from_options",
    "topk_similarities", "softmax_topk_weights", "read_extension_size", "resolve_device",
)
