"""One reader for the JSON files langgraft writes beside its outputs.

``langgraft_extension.json``, ``langgraft_pretrain.json``, ``langgraft_module.json``,
``adapter_config.json``, ``pipeline.json``, a fastText model's ``.bin.json`` and the rest are read
back by later commands. A file that was truncated, edited by hand or replaced by ``{}`` must end in
one line that names the file, what is wrong with it and how to get a good one — never a
``KeyError`` deep in a stage. Every reader of such a file goes through :func:`read_sidecar`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from langgraft.errors import UserError

MAX_SIDECAR_BYTES = 64 << 20  # the largest langgraft writes (provenance aside) is a few MB

_KIND_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true/false"}


def _kind(expected: type | tuple[type, ...]) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(_KIND_NAMES.get(kind, kind.__name__) for kind in kinds)


def _is(value: Any, expected: type | tuple[type, ...]) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:  # JSON true is no count
        return False
    return isinstance(value, kinds) or (float in kinds and isinstance(value, int))


def read_sidecar(path: str | os.PathLike, what: str, fix: str,
                 fields: Mapping[str, type | tuple[type, ...]] | None = None) -> dict[str, Any]:
    """The JSON object in ``path``, with each key of ``fields`` present and of its type.

    ``what`` names the file for the user (``the tokenizer extension record``); ``fix`` says how to
    get a good one (``re-run `langgraft tokenizer extend```). Anything else is one :class:`UserError`.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise UserError(f"{path}: {what} is {path.stat().st_size} bytes, far more than langgraft writes; {fix}")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: {what} is not UTF-8 text; {fix}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror or exc}); {fix}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path}: {what} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: {what} must be a JSON object, got {type(data).__name__}; {fix}")
    for key, expected in (fields or {}).items():
        if key not in data:
            raise UserError(f"{path}: {what} has no {key!r}; {fix}")
        if not _is(data[key], expected):
            raise UserError(f"{path}: {what}: {key!r} must be {_kind(expected)}, got {data[key]!r}; {fix}")
    return data


__all__ = ["read_sidecar", "MAX_SIDECAR_BYTES"]
