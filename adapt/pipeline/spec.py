"""What a pipeline stage is: its spec (function, config, inputs) and the context it runs in.

A stage's key is the sha256 of its name, its config (exactly what it reads; options declared with
``result=False``, such as logging intervals, left out), the keys of the stages it reads and the
content hashes of the files it reads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from langgraft.digest import sha256_path
from langgraft.errors import UserError

if TYPE_CHECKING:
    from langgraft.adapt.pipeline.runner import Pipeline


def fingerprint(reference: str) -> str:
    """Hash of what a reference names: file/folder content, installed package version, or the name."""
    if Path(reference).exists():
        return sha256_path(reference)
    if reference.startswith("package:"):
        try:
            return reference + "==" + version(reference.split(":", 1)[1])
        except PackageNotFoundError:
            return reference + " (not installed)"
    return "name:" + reference


# Field metadata: the field keys a stage only when set (not None or empty), so adding it kept the
# keys of the runs that do not use it.
KEY_WHEN_SET = {"key_when_set": True}


def plain(value: Any, results_only: bool = False) -> Any:
    """JSON-able copy of a config value (dataclasses, nested lists/dicts, paths).

    ``results_only`` (a stage's key): leave out dataclass fields declared ``result=False`` (they
    change no result) and unset fields declared :data:`KEY_WHEN_SET`.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name), results_only) for f in dataclasses.fields(value)
                if not results_only or (f.metadata.get("result", True)
                                        and not (f.metadata.get("key_when_set") and getattr(value, f.name) in
                                                 (None, [], {})))}
    if isinstance(value, dict):
        return {str(k): plain(v, results_only) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, results_only) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class StageSpec:
    """One planned stage: the function, the config that keys it, what it reads."""

    name: str
    run: Callable[["StageContext"], dict | None]
    config: Any
    needs: tuple[str, ...] = ()
    external: tuple[str, ...] = ()  # files/folders/"package:NAME" whose content keys the stage

    def key(self, upstream: dict[str, str]) -> str:
        payload = {
            "stage": self.name,
            "config": plain(self.config, results_only=True),
            "inputs": {name: upstream[name] for name in self.needs},
            "external": {ref: fingerprint(ref) for ref in self.external},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageContext:
    """What a stage function receives: its config, its work folder, its upstream outputs."""

    pipeline: "Pipeline"
    name: str
    config: Any
    work_dir: Path
    inputs: dict[str, Path]

    def input(self, stage: str) -> Path:
        if stage not in self.inputs:
            raise UserError(f"stage {self.name!r} needs the output of stage {stage!r}, which this pipeline does not produce")
        return self.inputs[stage]

    def log(self, message: str) -> None:
        print(f"[{self.pipeline.config.language}:{self.name}] {message}", file=sys.stderr, flush=True)
