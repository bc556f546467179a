"""Word alignment of parallel text with eflomal: induced dictionaries and token alignment tables.

Both sides are split into words by :func:`langgraft.vocab.resources.text.split_words` (lowercased,
punctuation split off), aligned in both directions by eflomal and symmetrized
(``intersection``: links both directions agree on; ``grow-diag``: the intersection grown with
neighbouring links of the union, Koehn et al. 2003). From the links:

- :func:`induce_dictionary`: word pairs seen aligned at least ``min_count`` times whose
  probability is at least ``min_probability`` in both directions (p(t|s) and p(s|t)); these go
  to Procrustes, which needs precision more than recall.
- :func:`token_alignment_counts`: each link between word ``s`` and word ``t`` adds ``1/|pieces(s)|``
  to every (target piece of ``t``, source piece of ``s``) pair; pieces come from each model's own
  tokenizer on the running sentence (offset mapping), so word-initial vs continuation pieces are
  exactly what the models see. Trans-tokenization turns these counts into p(s|t).

eflomal seeds its sampler from ``/dev/urandom`` and has no seed option, so two alignments of the
same text can differ in a few rare links; build the dictionary or table once (``langgraft
resources``) and pass the file to make every later step bit-reproducible.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from langgraft.atomic import atomic_file
from langgraft.corpora.readers import iter_lines
from langgraft.errors import UserError
from langgraft.options import Validated, option
from langgraft.vocab.resources.text import WORD_PATTERN

Link = tuple[int, int]
TABLE_HEADER = "# langgraft token alignment table"


def _require_eflomal() -> Any:
    try:  # deferred: eflomal is optional (only word alignment needs it) and stays off `langgraft --help`
        import eflomal
    except ImportError as exc:
        raise UserError(
            "word alignment needs the eflomal package, which is not installed; "
            "install it with: pip install eflomal  (or pip install 'langgraft[demo]')"
        ) from exc
    return eflomal


@dataclass
class WordAlignment:
    """Words (lowercased), their character spans in the original lines, and symmetrized links."""

    source_words: list[list[str]]
    target_words: list[list[str]]
    source_spans: list[list[tuple[int, int]]]
    target_spans: list[list[tuple[int, int]]]
    links: list[list[Link]]

    def pair_counts(self) -> Counter:
        """How often each (source word, target word) pair is linked over the whole text."""
        counts: Counter = Counter()
        for src, tgt, links in zip(self.source_words, self.target_words, self.links):
            counts.update((src[i], tgt[j]) for i, j in links)
        return counts


def _words_and_spans(line: str, lowercase: bool) -> tuple[list[str], list[tuple[int, int]]]:
    matches = list(WORD_PATTERN.finditer(line))
    words = [m.group().lower() if lowercase else m.group() for m in matches]
    return words, [m.span() for m in matches]


def _read_links(path: Path, n: int) -> list[set[Link]]:
    lines = [line for _, line in iter_lines(path)]
    lines += [""] * (n - len(lines))
    return [{tuple(map(int, pair.split("-"))) for pair in line.split()} for line in lines[:n]]


def symmetrize(forward: set[Link], reverse: set[Link], method: str = "grow-diag") -> list[Link]:
    """Combine two directional alignments (``intersection`` or ``grow-diag``), sorted."""
    alignment = forward & reverse
    if method == "intersection":
        return sorted(alignment)
    if method != "grow-diag":
        raise UserError(f"unknown symmetrization {method!r}; use intersection or grow-diag")
    union = forward | reverse
    neighbours = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    src_aligned = {i for i, _ in alignment}
    tgt_aligned = {j for _, j in alignment}
    added = True
    while added:
        added = False
        for i, j in sorted(alignment):
            for di, dj in neighbours:
                cand = (i + di, j + dj)
                new_word = cand[0] not in src_aligned or cand[1] not in tgt_aligned
                if cand in union and cand not in alignment and new_word:
                    alignment.add(cand)
                    src_aligned.add(cand[0])
                    tgt_aligned.add(cand[1])
                    added = True
    return sorted(alignment)


def align_words(source_lines: Sequence[str], target_lines: Sequence[str], *, lowercase: bool = True,
                symmetrization: str = "grow-diag", n_samplers: int = 3) -> WordAlignment:
    """Align line-parallel text word by word with eflomal (both directions, symmetrized)."""
    if len(source_lines) != len(target_lines):
        raise UserError(f"parallel text is not aligned: {len(source_lines)} source vs {len(target_lines)} target lines")
    eflomal = _require_eflomal()
    src = [_words_and_spans(line, lowercase) for line in source_lines]
    tgt = [_words_and_spans(line, lowercase) for line in target_lines]
    keep = [k for k in range(len(src)) if src[k][0] and tgt[k][0]]
    if not keep:
        raise UserError("parallel text has no line pair with words on both sides; nothing to align")
    src, tgt = [src[k] for k in keep], [tgt[k] for k in keep]
    with tempfile.TemporaryDirectory(prefix="langgraft-eflomal-") as tmp:
        fwd, rev = Path(tmp) / "fwd", Path(tmp) / "rev"
        aligner = eflomal.Aligner(n_samplers=n_samplers)
        aligner.align([" ".join(w) + "\n" for w, _ in src], [" ".join(w) + "\n" for w, _ in tgt],
                      links_filename_fwd=str(fwd), links_filename_rev=str(rev), quiet=True)
        forward, reverse = _read_links(fwd, len(src)), _read_links(rev, len(src))
    links = [symmetrize(f, r, symmetrization) for f, r in zip(forward, reverse)]
    return WordAlignment([w for w, _ in src], [w for w, _ in tgt], [s for _, s in src], [s for _, s in tgt], links)


@dataclass
class DictionaryOptions(Validated):
    """Which aligned word pairs become dictionary entries (``resources dictionary --parallel``)."""

    min_count: int = option(3, help="minimum aligned count of a pair", ge=1)
    min_probability: float = option(0.1, help="minimum p(t|s) and p(s|t) of a pair", ge=0, le=1)


def induce_dictionary(alignment: WordAlignment, options: DictionaryOptions | None = None, *,
                      skip_identical_punctuation: bool = True, **fields: Any) -> list[tuple[str, str]]:
    """Word pairs aligned ``>= min_count`` times with p(t|s) and p(s|t) ``>= min_probability``.

    ``options`` or its fields as keywords. Sorted by decreasing count (ties by the words).
    Punctuation-only pairs are dropped: they carry no lexical signal for Procrustes.
    """
    options = dataclasses.replace(options or DictionaryOptions(), **fields)
    min_count, min_probability = options.min_count, options.min_probability
    counts = alignment.pair_counts()
    source_totals: Counter = Counter()
    target_totals: Counter = Counter()
    for (s, t), c in counts.items():
        source_totals[s] += c
        target_totals[t] += c
    pairs = []
    for (s, t), c in counts.items():
        if c < min_count or c / source_totals[s] < min_probability or c / target_totals[t] < min_probability:
            continue
        if skip_identical_punctuation and not (any(ch.isalnum() for ch in s) and any(ch.isalnum() for ch in t)):
            continue
        pairs.append((c, s, t))
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [(s, t) for _, s, t in pairs]


def _token_words(tokenizer: Any, lines: Sequence[str], spans: list[list[tuple[int, int]]]) -> list[list[list[int]]]:
    """For each line and word, the ids of the tokens whose characters fall in that word."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"token alignment needs a fast (Rust) tokenizer; {type(tokenizer).__name__} has no offsets")
    encoded = tokenizer(list(lines), add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for ids, offsets, word_spans in zip(encoded["input_ids"], encoded["offset_mapping"], spans):
        per_word: list[list[int]] = [[] for _ in word_spans]
        w = 0
        for token_id, (start, end) in zip(ids, offsets):
            if end <= start:
                continue
            while w < len(word_spans) and word_spans[w][1] <= start:
                w += 1
            if w < len(word_spans) and word_spans[w][0] < end:
                per_word[w].append(token_id)
        out.append(per_word)
    return out


def token_alignment_counts(alignment: WordAlignment, source_lines: Sequence[str], target_lines: Sequence[str],
                           source_tokenizer: Any, target_tokenizer: Any) -> "Any":
    """Dense-free (target id, source id) -> count table as a torch sparse COO tensor (V_t × V_s).

    ``source_lines``/``target_lines`` must be the non-empty line pairs the alignment was made
    from (as :func:`langgraft.vocab.resources.text.parallel_sentences` returns them).
    """
    # deferred: keeps torch off `langgraft --help`
    import torch

    if len(source_lines) != len(alignment.links):
        raise UserError("token alignment: the lines differ from the ones that were aligned")
    src_pieces = _token_words(source_tokenizer, source_lines, alignment.source_spans)
    tgt_pieces = _token_words(target_tokenizer, target_lines, alignment.target_spans)
    counts: dict[tuple[int, int], float] = {}
    for links, src_words, tgt_words in zip(alignment.links, src_pieces, tgt_pieces):
        for i, j in links:
            sources = src_words[i]
            if not sources:
                continue
            share = 1.0 / len(sources)
            for t in tgt_words[j]:
                for s in sources:
                    counts[(t, s)] = counts.get((t, s), 0.0) + share
    keys = sorted(counts)
    index = torch.tensor(keys, dtype=torch.long).reshape(-1, 2).T
    values = torch.tensor([counts[k] for k in keys], dtype=torch.float64)
    return torch.sparse_coo_tensor(index, values, (len(target_tokenizer), len(source_tokenizer)),
                                   check_invariants=False).coalesce()


def write_token_table(counts: Any, path: str | os.PathLike, source_tokenizer: Any, target_tokenizer: Any) -> int:
    """TSV ``target_id<TAB>source_id<TAB>count<TAB>target_token<TAB>source_token``, atomically."""
    index, values = counts.indices(), counts.values()
    target_tokens = target_tokenizer.convert_ids_to_tokens(index[0].tolist())
    source_tokens = source_tokenizer.convert_ids_to_tokens(index[1].tolist())
    with atomic_file(path) as handle:
        handle.write(f"{TABLE_HEADER}\ttarget_vocab={counts.shape[0]}\tsource_vocab={counts.shape[1]}\n")
        for (t, s), c, t_tok, s_tok in zip(index.T.tolist(), values.tolist(), target_tokens, source_tokens):
            handle.write(f"{t}\t{s}\t{c:.6g}\t{_printable(t_tok)}\t{_printable(s_tok)}\n")
    return len(values)


def _printable(token: str) -> str:
    return token.replace("\t", "\\t").replace("\n", "\\n")


def read_token_table(path: str | os.PathLike, target_vocab: int, source_vocab: int) -> "Any":
    """Read :func:`write_token_table` output back; ids must fit the given vocabulary sizes."""
    # deferred: keeps torch off `langgraft --help`
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"alignment table {path} does not exist; build one with `langgraft resources align`")
    rows, values = [], []
    lines = iter_lines(path)
    _, header = next(lines, (0, ""))
    if not header.startswith(TABLE_HEADER):
        raise UserError(f"{path} is not a langgraft token alignment table (missing header line)")
    sizes = dict(field.split("=") for field in header.split("\t")[1:])
    if int(sizes["target_vocab"]) != target_vocab or int(sizes["source_vocab"]) != source_vocab:
        raise UserError(
            f"alignment table {path} was built for vocabularies {sizes['target_vocab']}/{sizes['source_vocab']} "
            f"(target/source), not {target_vocab}/{source_vocab}; rebuild it for these tokenizers"
        )
    for _, line in lines:
        t, s, c = line.split("\t")[:3]
        rows.append((int(t), int(s)))
        values.append(float(c))
    index = torch.tensor(rows, dtype=torch.long).reshape(-1, 2).T
    return torch.sparse_coo_tensor(index, torch.tensor(values, dtype=torch.float64),
                                   (target_vocab, source_vocab), check_invariants=False).coalesce()
