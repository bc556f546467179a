"""OFA (Liu et al., 2024): factorized embeddings, new tokens placed by neighbours.

1. SVD of the source embeddings E_s = U S Vᵀ; primitives P = S_r V_rᵀ (r × d), source
   coordinates U_r (V_s × r). Rank r is capped by the numerical rank of E_s.
2. A new token's coordinates: copied for exact overlaps, else the WECHSEL rule (top-k softmax,
   k=10, τ=0.1) over aligned static vectors (fastText + Procrustes, the resources WECHSEL uses).
   Without static-vector resources the FVT decomposition gives the neighbours instead.
3. Input rows = coordinates @ P. The engine saves ``factorized_embeddings.safetensors``
   (``coordinates`` V_t × r, ``primitives`` r × d) for rank-r training/storage; the checkpoint
   itself holds the multiplied-out rows so stock transformers loads it. An untied head gets the
   same neighbour weights over its own full-rank rows.

:class:`FactorizedEmbedding` is the trainable rank-r form (``from_file``/``save``);
:func:`export_factorized` (CLI ``langgraft ofa export``) multiplies trained factors back into a
stock checkpoint.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from langgraft.atomic import atomic_dir, atomic_file
from langgraft.outputs import check_output
from langgraft.errors import UserError
from langgraft.models import load_tokenizer
from langgraft.vocab.checkpoint import CheckpointSource, open_source
from langgraft.vocab.init.base import (FACTORIZED_FILE, MethodConfig, TokenMapping, TransferContext,
                                       TransferResources, register_method)
from langgraft.vocab.init.fvt import fvt_pieces, piece_table
from langgraft.vocab.init.wechsel import WechselConfig, aligned_token_vectors, neighbour_mapping


@dataclass
class OFAConfig(MethodConfig):
    """``rank``: factorization rank r (0 = full rank d); ``k``/``temperature``: neighbour rule;
    ``dim``/``epochs``/``min_count``: fastText training when vectors come from corpora."""

    rank: int = 100
    k: int = 10
    temperature: float = 0.1
    dim: int = 100
    epochs: int = 10
    min_count: int = 3
    block_size: int = 4096

    def validate(self, resources: TransferResources) -> None:
        if self.rank < 0:
            raise UserError(f"--rank {self.rank}: must be positive (0 = full rank)")


def has_static_vectors(resources: TransferResources) -> bool:
    """True when both languages' vectors and a dictionary (or parallel text) are available."""
    sides = all(getattr(resources, f"{s}_embeddings") or getattr(resources, f"{s}_corpus") for s in ("source", "target"))
    return bool(sides and (resources.dictionary or resources.parallel))


def factorize(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(coordinates U_r, primitives S_r V_rᵀ)`` with coordinates @ primitives ≈ matrix (exact at full rank).

    Through the d × d Gram matrix (its SVD in float64: singular values sorted, and faster than
    ``eigh`` on real embedding matrices) instead of a full SVD of the V × d matrix.
    """
    matrix = matrix.float()
    _, eigenvalues, right_t = torch.linalg.svd((matrix.T @ matrix).double())
    singular = eigenvalues.clamp_min(0.0).sqrt()
    right = right_t.T
    keep = int((singular > singular[0] * 1e-4).sum()) if singular[0] > 0 else 1
    rank = min(rank or keep, keep)
    singular, right = singular[:rank], right[:, :rank]
    coordinates = matrix @ (right / singular).float()
    return coordinates.contiguous(), (singular[:, None] * right.T).float().contiguous()


@register_method("ofa", OFAConfig, description="rank-r factorized embeddings, new coordinates from neighbours (OFA)")
def ofa(config: OFAConfig, ctx: TransferContext) -> TokenMapping:
    if has_static_vectors(ctx.resources):
        vectors = WechselConfig(k=config.k, temperature=config.temperature, dim=config.dim, epochs=config.epochs,
                                min_count=config.min_count, block_size=config.block_size)
        source, target, notes = aligned_token_vectors(ctx, vectors)
        mapping = neighbour_mapping(ctx.new_token_ids, target, source, config.k, config.temperature, config.block_size,
                                    ctx.device)
        mapping.notes.update(notes, neighbours="aligned static vectors")
    else:
        ids, weights = piece_table(fvt_pieces(ctx))
        mapping = TokenMapping.from_neighbours(ctx.new_token_ids, ids, weights)
        mapping.notes["neighbours"] = "fvt decomposition (no static-vector resources given)"
    mapping.factorization = factorize(ctx.source_embeddings, config.rank)
    mapping.notes["rank"] = mapping.factorization[0].shape[1]
    return mapping.copy_overlap(ctx)


class FactorizedEmbedding(nn.Module):
    """Rank-r input embedding: ``coordinates[ids] @ primitives`` (V·r + r·d parameters instead of V·d)."""

    def __init__(self, coordinates: torch.Tensor, primitives: torch.Tensor):
        super().__init__()
        self.coordinates = nn.Embedding.from_pretrained(coordinates.clone(), freeze=False)
        self.primitives = nn.Linear(primitives.shape[0], primitives.shape[1], bias=False)
        with torch.no_grad():
            self.primitives.weight.copy_(primitives.T)

    @classmethod
    def from_file(cls, path: str | Path) -> "FactorizedEmbedding":
        """Read ``coordinates`` (V × r) and ``primitives`` (r × d); a malformed file is a :class:`UserError`."""
        # deferred: keeps safetensors off `import langgraft.vocab.init.ofa`
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: factorized embeddings file not found; pass --factorized FILE (the "
                            f"{FACTORIZED_FILE} of `langgraft init --method ofa`, or trained factors)")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"{path}: not a readable safetensors file ({exc})") from exc
        coordinates, primitives = tensors.get("coordinates"), tensors.get("primitives")
        if coordinates is None or primitives is None:
            raise UserError(f"{path}: needs tensors 'coordinates' (V × r) and 'primitives' (r × d), "
                            f"found {sorted(tensors)}")
        if coordinates.dim() != 2 or primitives.dim() != 2 or coordinates.shape[1] != primitives.shape[0]:
            raise UserError(f"{path}: rank mismatch, coordinates {tuple(coordinates.shape)} and primitives "
                            f"{tuple(primitives.shape)} must be V × r and r × d with the same r")
        return cls(coordinates.float(), primitives.float())

    def save(self, path: str | Path) -> Path:
        """Write the (trained) factors in the layout :meth:`from_file` and :func:`export_factorized` read."""
        # deferred: keeps safetensors off `import langgraft.vocab.init.ofa`
        from safetensors.torch import save

        tensors = {"coordinates": self.coordinates.weight.detach().contiguous(),
                   "primitives": self.primitives.weight.detach().T.contiguous()}
        with atomic_file(path, "wb") as handle:
            handle.write(save(tensors))
        return Path(path)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.primitives(self.coordinates(input_ids))

    def full_matrix(self) -> torch.Tensor:
        """The multiplied-out V × d table."""
        return self.primitives(self.coordinates.weight)


def export_factorized(model_dir: str | Path, out: str | Path, factorized: str | Path | None = None,
                      overwrite: bool = False) -> Path:
    """Write a stock checkpoint whose input embeddings are ``coordinates @ primitives`` of ``factorized``
    (default: the file beside ``model_dir``).

    Every other tensor (byte for byte, in ``model_dir``'s shard layout and dtype), the config and the
    tokenizer come from ``model_dir``; a tied head follows the new input rows, an untied head keeps
    its own rows. Nothing is written unless the factors fit the model.
    """
    factorized = Path(factorized or Path(model_dir) / FACTORIZED_FILE)
    check_output(out, inputs=[model_dir, factorized], overwrite=overwrite)
    source = open_source(model_dir)  # a missing or broken model fails before any factor is read
    table = FactorizedEmbedding.from_file(factorized)
    with torch.no_grad():
        full = table.full_matrix()
    if tuple(full.shape) != tuple(source.shape):  # checked on the stored shape, before any weight is read
        raise UserError(f"{factorized}: factors give {tuple(full.shape)} (rows, dims) but {model_dir}'s input "
                        f"embeddings are {tuple(source.shape)}; use the factors written or trained for this model")
    tokenizer = load_tokenizer(model_dir)
    with atomic_dir(out, overwrite=overwrite, inputs=[model_dir, factorized]) as tmp:
        if isinstance(source, CheckpointSource):
            source.checkpoint.write(tmp, {key: full.to(source.dtype("input")) for key in source.vocab.input})
            for name in ("config.json", "generation_config.json"):
                if (source.checkpoint.path / name).is_file():
                    shutil.copyfile(source.checkpoint.path / name, tmp / name)
        else:
            with torch.no_grad():
                source.model.get_input_embeddings().weight.copy_(full)
            source.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out)
