"""One YAML per language -> every stage in order, each stage's output content-addressed.

A stage's key (:mod:`langgraft.adapt.pipeline.spec`) is the sha256 of its name, the config it reads, the
keys of the stages it reads and the content hashes of the files it reads. Its output goes to
``<run>/stages/<stage>-<key[:12]>/``, written under a ``.partial`` name and renamed when the stage
finishes, so a re-run skips finished stages and a crashed run resumes at the failed stage
(training stages also resume from their own checkpoints inside the ``.partial`` folder).
``<run>/stages.json`` is the ledger: per stage its key, folder, status, wall time and result.

    >>> from langgraft import Pipeline
    >>> Pipeline.from_yaml("nya.yaml").run()            # every stage
    >>> Pipeline.from_yaml("nya.yaml").run_stage("init")  # one stage; earlier outputs must exist
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Iterator

from langgraft.adapt.pipeline.config import PipelineConfig, apply_overrides, is_plain_name, resolve_path
from langgraft.adapt.pipeline.publish import publish_run, push_folder
from langgraft.adapt.pipeline.spec import StageContext, StageSpec, plain
from langgraft.adapt.pipeline.stages import plan
from langgraft.atomic import atomic_dir, atomic_file, match_umask
from langgraft.errors import UserError
from langgraft.options import from_mapping, load_yaml
from langgraft.sidecars import read_sidecar

LEDGER = "stages.json"
STAGE_RECORD = "stage.json"


def _yaml_scalar(value: Any) -> str:
    """YAML values JSON cannot copy (dates): kept as their text, for the validation to report."""
    return str(value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (wall time misleads on a shared machine)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Pipeline:
    """The stages of one language's adaptation, planned from a validated :class:`PipelineConfig`."""

    def __init__(self, config: PipelineConfig, base_dir: str | Path = ".") -> None:
        self.base_dir = Path(base_dir)
        beside = Path(resolve_path(self.base_dir, config.source_model))
        if not Path(config.source_model).expanduser().is_absolute() and beside.is_dir():
            config = dataclasses.replace(config, source_model=str(beside))  # a local folder, relative to the YAML
        self.config = config
        self.name = config.name or f"{Path(config.source_model).name}-{config.language}"
        if not is_plain_name(self.name):
            where = "name" if config.name else "the run name made of source_model and language"
            raise UserError(f"{where}: {self.name!r} must be one plain folder name (letters, digits, '.', '_', '-'; "
                            "no '/', not '..'): the run lives in <output>/<name>")
        self.run_dir = (Path(resolve_path(self.base_dir, config.output)) / self.name).resolve()
        self.stages: list[StageSpec] = plan(self)
        self._check_references()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, base_dir: str | Path = ".", overrides: dict[str, Any] | None = None,
                  where: str = "") -> "Pipeline":
        data = apply_overrides(json.loads(json.dumps(data if data is not None else {}, default=_yaml_scalar)),
                               overrides)
        return cls(from_mapping(PipelineConfig, data, where), base_dir)

    @classmethod
    def all_from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> list["Pipeline"]:
        """Every language in a YAML file: one mapping, or a list of mappings (a run per language)."""
        path = Path(path)
        if path.is_dir():
            raise UserError(f"pipeline file {path} is a folder; give the YAML file itself")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"pipeline file {path} not found") from None
        except OSError as exc:
            raise UserError(f"pipeline file {path} cannot be read ({exc.strerror})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"pipeline file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        data = load_yaml(text, f"pipeline file {path}")
        items = data if isinstance(data, list) else [data]
        pipelines = []
        for index, item in enumerate(items):
            where = f"[{index}]" if isinstance(data, list) else ""
            try:
                pipelines.append(cls.from_dict(item, path.parent, overrides, where))
            except UserError as exc:
                raise UserError(f"{path}: {exc}") from None
        return pipelines

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Pipeline":
        pipelines = cls.all_from_yaml(path, overrides)
        if len(pipelines) != 1:
            raise UserError(f"{path} holds {len(pipelines)} languages; use Pipeline.all_from_yaml or `langgraft run`")
        return pipelines[0]

    def _check_references(self) -> None:
        seen: set[str] = set()
        for spec in self.stages:
            for need in spec.needs:
                if need not in seen:
                    raise UserError(f"stage {spec.name!r} refers to {need!r}, which no earlier stage produces; "
                                    f"earlier stages: {', '.join(sorted(seen)) or 'none'}")
            seen.add(spec.name)

    # ---- ledger ---------------------------------------------------------------------------
    @property
    def ledger_path(self) -> Path:
        return self.run_dir / LEDGER

    def ledger(self) -> dict:
        if not self.ledger_path.exists():
            return {"pipeline": self.name, "language": self.config.language, "stages": {}}
        fix = f"restore it, or move {self.run_dir} aside and start the run afresh"
        ledger = read_sidecar(self.ledger_path, "the run's stage ledger", fix, {"stages": dict})
        bad = next((name for name, entry in ledger["stages"].items() if not isinstance(entry, dict)), None)
        if bad is not None:
            raise UserError(f"{self.ledger_path}: the run's stage ledger: the entry of stage {bad!r} must be an "
                            f"object; {fix}")
        return ledger

    def _record(self, stage: str, **entry: Any) -> None:
        ledger = self.ledger()
        ledger["stages"][stage] = {**ledger["stages"].get(stage, {}), **entry}
        with atomic_file(self.ledger_path) as handle:
            json.dump(ledger, handle, indent=2, default=str)

    # ---- running --------------------------------------------------------------------------
    def spec(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise UserError(f"no stage {name!r} in pipeline {self.name}; stages: {', '.join(s.name for s in self.stages)}")

    def keys(self) -> dict[str, str]:
        """Content key of every planned stage, in order."""
        keys: dict[str, str] = {}
        for spec in self.stages:
            keys[spec.name] = spec.key(keys)
        return keys

    def stage_dir(self, name: str, key: str) -> Path:
        return self.run_dir / "stages" / f"{name}-{key[:12]}"

    def output(self, name: str) -> Path:
        """The finished output folder of stage ``name`` (a clear error when it has not run)."""
        path = self.stage_dir(name, self.keys()[self.spec(name).name])
        if not path.is_dir():
            raise UserError(f"stage {name!r} of {self.name} has no finished output for this configuration; "
                            f"run `langgraft run` (or Pipeline.run()) first")
        return path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One process per run folder: a second ``langgraft run`` on it is refused, not interleaved."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = self.run_dir / ".lock"
        owner = lock.read_text(encoding="utf-8").strip() if lock.is_file() else ""
        if owner.isdigit() and not _alive(int(owner)):
            lock.unlink(missing_ok=True)  # left behind by a killed run
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise UserError(f"{self.run_dir} is being run by another process (pid {owner or '?'}); wait for it "
                            f"or delete {lock} if that process is gone") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)

    def run(self, stop_after: str | None = None) -> dict[str, Path]:
        """Run every stage in order (finished ones are skipped); return stage -> output folder."""
        with self._locked():
            return self._run(stop_after)

    def _run(self, stop_after: str | None) -> dict[str, Path]:
        keys = self.keys()
        self._check_run_folder(keys)
        self._name_stale_partials(keys)
        with atomic_file(self.run_dir / "pipeline.json") as handle:
            json.dump({"name": self.name, "config": plain(self.config), "stages": keys}, handle, indent=2)
        outputs: dict[str, Path] = {}
        for spec in self.stages:
            outputs[spec.name] = self._execute(spec, keys[spec.name], outputs)
            if spec.name == stop_after:
                return outputs
        if "report" in outputs:
            with atomic_dir(self.run_dir / "report", overwrite=True) as tmp:  # a stable path to the latest report
                shutil.copytree(outputs["report"] / "report", tmp, dirs_exist_ok=True)
        if self.publish_dir is not None:
            self._publish(keys)
        return outputs

    def _check_run_folder(self, keys: dict[str, str]) -> None:
        """Refuse, before anything is written, a run folder whose ledger or stage folders are not what a run leaves.

        A finished stage folder always holds its ``stage.json`` (written before the rename): one without
        it was made or emptied by hand, and the stages after it would read nothing from it."""
        stages = self.run_dir / "stages"
        if stages.exists() and not stages.is_dir():
            raise UserError(f"{stages} is not a folder; move it aside (the run keeps its stage outputs there)")
        self.ledger()
        for name, key in keys.items():
            final = self.stage_dir(name, key)
            partial = final.with_name(final.name + ".partial")
            if final.exists() and not (final / STAGE_RECORD).is_file():
                raise UserError(f"{final} is not a finished {name} stage (no {STAGE_RECORD} in it); delete it and "
                                "run again to redo the stage")
            if partial.exists() and not partial.is_dir():
                raise UserError(f"{partial} is not a folder; delete it and run again to redo the {name} stage")

    def _name_stale_partials(self, keys: dict[str, str]) -> list[Path]:
        """Name the ``.partial`` folders no stage of this plan resumes (an earlier config's crashed stages).

        They are kept (switching back to that config resumes them) but their size is said, so they
        do not fill the disk unseen."""
        current = {self.stage_dir(name, key).name + ".partial" for name, key in keys.items()}
        stale = sorted(p for p in (self.run_dir / "stages").glob("*.partial") if p.is_dir() and p.name not in current)
        if stale:
            size = sum(f.stat().st_size for p in stale for f in p.rglob("*") if f.is_file())
            print(f"[{self.config.language}] {len(stale)} unfinished stage folder(s) of an earlier configuration "
                  f"({size / 1e6:.1f} MB), not part of this plan: {', '.join(p.name for p in stale)}; delete them "
                  f"from {self.run_dir / 'stages'} unless you will switch back to that configuration",
                  file=sys.stderr, flush=True)
        return stale

    @property
    def publish_dir(self) -> Path | None:
        out = self.config.publish.out
        return Path(resolve_path(self.base_dir, out)).resolve() if out else None

    def _publish(self, keys: dict[str, str]) -> None:
        """Publish the finished run; an existing folder from these very stages is up to date."""
        folder = self.publish_dir
        previous = folder / "pipeline.json"
        if previous.is_file() and read_sidecar(previous, "the published run record",
                                               "publish again with --overwrite").get("stages") == keys:
            print(f"[{self.config.language}:publish] up to date ({folder})", file=sys.stderr, flush=True)
        else:
            publish_run(self.run_dir, folder, self.config.publish.repo, flag="publish.out")
            print(f"[{self.config.language}:publish] -> {folder}", file=sys.stderr, flush=True)
        if self.config.publish.repo:
            push_folder(folder, self.config.publish.repo)

    def run_stage(self, name: str) -> Path:
        """Run one stage alone; the stages it reads must have finished already."""
        spec = self.spec(name)
        keys = self.keys()
        inputs = {}
        for need in spec.needs:
            path = self.stage_dir(need, keys[need])
            if not path.is_dir():
                raise UserError(f"stage {name!r} needs the output of stage {need!r}, which has not run for this "
                                f"configuration; run the pipeline up to it first (Pipeline.run(stop_after={need!r}))")
            inputs[need] = path
        with self._locked():
            self._check_run_folder(keys)
            return self._execute(spec, keys[name], inputs)

    def _execute(self, spec: StageSpec, key: str, available: dict[str, Path]) -> Path:
        final = self.stage_dir(spec.name, key)
        if final.is_dir():
            self._record(spec.name, key=key, dir=str(final), status="done", skipped=True)
            print(f"[{self.config.language}:{spec.name}] up to date ({final})", file=sys.stderr, flush=True)
            return final
        partial = final.with_name(final.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        ctx = StageContext(self, spec.name, spec.config, partial, {n: available[n] for n in spec.needs})
        started, cpu_started = time.time(), _cpu_seconds()
        self._record(spec.name, key=key, dir=str(final), status="running", skipped=False,
                     started=time.strftime("%Y-%m-%dT%H:%M:%S"), error=None)
        ctx.log("running" + (" (resuming)" if any(partial.iterdir()) else ""))
        try:
            result = spec.run(ctx) or {}
        except BaseException as exc:
            self._record(spec.name, status="failed", seconds=round(time.time() - started, 2),
                         error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                         traceback="".join(traceback.format_exception(exc))[-4000:])
            raise
        seconds, cpu_seconds = round(time.time() - started, 2), round(_cpu_seconds() - cpu_started, 2)
        record = {"stage": spec.name, "key": key, "seconds": seconds, "cpu_seconds": cpu_seconds, "result": result,
                  "inputs": {n: str(p) for n, p in ctx.inputs.items()},
                  "config": plain(spec.config)}
        with atomic_file(partial / STAGE_RECORD) as handle:
            json.dump(record, handle, indent=2, default=str)
        match_umask(partial)
        os.replace(partial, final)
        self._record(spec.name, status="done", seconds=seconds, cpu_seconds=cpu_seconds, result=result)
        ctx.log(f"done in {seconds:.1f}s -> {final}")
        return final


def run_pipelines(paths: Iterable[str | Path], overrides: dict[str, Any] | None = None) -> list["Pipeline"]:
    """``langgraft run a.yaml b.yaml``: validate every file first, then one run per language."""
    pipelines = [p for path in paths for p in Pipeline.all_from_yaml(path, overrides)]
    names = [p.run_dir for p in pipelines]
    if len(set(names)) != len(names):
        raise UserError("two pipelines write to the same run directory; give each a distinct `name`")
    for pipeline in pipelines:
        pipeline.run()
    return pipelines

