"""Orthogonal Procrustes: rotate one static embedding space onto another with a dictionary.

Given dictionary pairs (s, t) whose words both have vectors, find the orthogonal W minimizing
‖X_t W − X_s‖ (X_t target vectors, X_s source vectors): W = U Vᵀ from the SVD of X_tᵀ X_s.
Target vectors are then compared to source vectors as ``x_t @ W``. Each pair is tried as given,
lowercased and title-cased (WECHSEL's rule); every combination found in both vocabularies counts.
``exact_case=True`` is the package's reading of that rule: the three forms are looked up exactly
as written and not deduplicated (a lowercase word is its own lowercase form, so a pair of two
lowercase words counts 2 × 2 = 4 times); otherwise each distinct form counts once, after the
model's casing rule.

Spaces of different dimension cannot be rotated onto each other: that is a :class:`UserError`
(retrain one side with the other's ``--dim``), never a silent truncation of one side.
"""
from __future__ import annotations

from typing import Any, Sequence

from langgraft.errors import UserError


def dictionary_vector_pairs(pairs: Sequence[tuple[str, str]], source: Any, target: Any,
                            exact_case: bool = False) -> tuple[Any, Any, int]:
    """Stacked (source vectors, target vectors) of all pair variants known on both sides.

    ``source``/``target`` are :class:`~langgraft.vocab.resources.fasttext.WordVectors`; returns the
    two float32 matrices and the number of dictionary pairs that contributed. ``exact_case``: the
    package's rule (see the module docstring).
    """
    src_words: list[str] = []
    tgt_words: list[str] = []
    used = 0
    for s, t in pairs:
        if exact_case:
            s_known = [w for w in (s, s.lower(), s.title()) if w in source.vocabulary]
            t_known = [w for w in (t, t.lower(), t.title()) if w in target.vocabulary]
        else:
            s_forms = list(dict.fromkeys((s, s.lower(), s.title())))
            t_forms = list(dict.fromkeys((t, t.lower(), t.title())))
            s_known = [w for w, i in zip(s_forms, source.word_ids(s_forms)) if i >= 0]
            t_known = [w for w, i in zip(t_forms, target.word_ids(t_forms)) if i >= 0]
            # casing variants collapse onto one vocabulary entry when the model is lowercased
            s_known = list(dict.fromkeys(source._case(w) for w in s_known))
            t_known = list(dict.fromkeys(target._case(w) for w in t_known))
        if s_known and t_known:
            used += 1
            for sw in s_known:
                for tw in t_known:
                    src_words.append(sw)
                    tgt_words.append(tw)
    if used == 0:
        raise UserError(
            f"no dictionary pair has both words in the embedding vocabularies ({len(pairs)} pairs tried "
            f"as given, lower- and title-case); use a dictionary for these languages or embeddings "
            "trained on text that contains its words"
        )
    return source.vectors(src_words, lowercase=False), target.vectors(tgt_words, lowercase=False), used


def fit_procrustes(source_vectors: Any, target_vectors: Any) -> Any:
    """Orthogonal W (d × d, float32) with ``target_vectors @ W ≈ source_vectors``."""
    # deferred: keeps torch off `import langgraft.vocab.resources.procrustes`
    import torch

    if source_vectors.shape[1] != target_vectors.shape[1]:
        raise UserError(
            f"embedding dimensions differ: source {source_vectors.shape[1]}, target {target_vectors.shape[1]}; "
            "Procrustes needs equal dimensions, train both fastText models with the same --dim"
        )
    if source_vectors.shape[0] != target_vectors.shape[0] or source_vectors.shape[0] == 0:
        raise UserError("Procrustes needs the same, non-zero number of source and target vectors")
    cross = target_vectors.double().T @ source_vectors.double()
    u, _, vh = torch.linalg.svd(cross)
    return (u @ vh).float()


def align_spaces(pairs: Sequence[tuple[str, str]], source: Any, target: Any,
                 exact_case: bool = False) -> tuple[Any, int]:
    """Rotation mapping ``target`` vectors into ``source``'s space, and the pairs it used
    (``exact_case``: the package's form rule, see the module docstring)."""
    if source.dim != target.dim:
        raise UserError(
            f"fastText dimensions differ: source {source.dim}, target {target.dim}; "
            "train both with the same --dim (Procrustes needs equal dimensions)"
        )
    src, tgt, used = dictionary_vector_pairs(pairs, source, target, exact_case)
    return fit_procrustes(src, tgt), used
