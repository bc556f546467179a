"""The field's own harnesses on langgraft models: lm-evaluation-harness (decoders) and MTEB (encoders).

``langgraft eval --harness lm-eval --tasks TASK ...`` loads the model with its language modules
merged in (a plain transformers ``*ForCausalLM``, what a user would publish) and hands it to
lm-eval's ``HFLM``; ``--include-path DIR`` adds task YAML files of your own (local data through
``dataset_path: json`` + ``dataset_kwargs.data_files``). ``--harness mteb --tasks TASK ...`` wraps
the encoder (mean-pooled hidden states of ``--layer``, the same embeddings as langgraft's
retrieval) as an MTEB encoder and runs MTEB task names, or ``[NAME=]bitext-mining:SRC,TGT`` built
from two aligned local files.

Both harnesses are optional (``pip install 'langgraft[bench]'``). Their scores become result
entries of the same run dict as langgraft's own tasks (``task`` = the harness), with a bootstrap
95% interval wherever the harness's score is the mean of per-example values it reports
(lm-eval's per-sample metrics, MTEB bitext-mining accuracy): checked by recomputing the score
from those values, so an interval is never attached to a score it does not describe.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from langgraft.adapters.base import load_module, seed_set_members
from langgraft.adapters.compose import load_composed, merge_composed
from langgraft.errors import UserError
from langgraft.eval.harness import ModelSource
from langgraft.eval.intervals import mean_interval
from langgraft.models import model_objective
from langgraft.options import Validated, option

BENCH_EXTRA = "pip install 'langgraft[bench]'"


@dataclass
class HarnessOptions(Validated):
    """Options of ``langgraft eval --harness`` (and :func:`run_harness` keywords)."""

    include_path: str | None = option(None, help="folder of extra lm-eval task YAML files (tasks on local data)")
    num_fewshot: int | None = option(None, help="lm-eval: in-context examples per prompt (default: the task's)", ge=0)
    limit: int | None = option(None, help="lm-eval: at most this many examples per task", ge=1)


def require(module: str, harness: str) -> Any:
    """Import an optional harness package, or one clear line saying how to install it."""
    if importlib.util.find_spec(module) is None:
        raise UserError(f"--harness {harness} needs the {module} package, which is not installed; {BENCH_EXTRA}")
    return importlib.import_module(module)


def _matching_interval(values: Sequence[float], score: float, resamples: int, seed: int) -> list[float] | None:
    """The mean's bootstrap interval, only when ``score`` is that mean (the harness aggregated by mean)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2 or not math.isclose(float(values.mean()), score, rel_tol=1e-9, abs_tol=1e-12):
        return None
    return mean_interval(values, resamples, seed)


# ----------------------------------------------------------------------------- lm-evaluation-harness
def merged_decoder(model: str | Path, modules: Sequence[str | Path]) -> tuple[Any, Any]:
    """The causal LM with the language modules folded in (a stock transformers model) and its tokenizer."""
    language = language_modules(modules)
    network, tokenizer = load_composed(model, language)
    network = merge_composed(network)
    if model_objective(network) != "clm":
        raise UserError(f"--harness lm-eval scores decoders (causal LMs); {model} is a masked LM: "
                        "use --harness mteb or langgraft's own tasks (--task)")
    return network, tokenizer


def lm_eval_metrics(task_results: dict[str, Any], samples: list[dict[str, Any]], resamples: int,
                    seed: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """lm-eval's ``"acc,none"``-style keys as ``acc`` (``acc_<filter>`` for other filters), with intervals.

    lm-eval's own ``*_stderr`` is left out: the bootstrap interval replaces it.
    """
    metrics: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    for key, value in task_results.items():
        metric, comma, filter_name = key.partition(",")
        if not comma or metric.endswith("_stderr") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = metric if filter_name == "none" else f"{metric}_{filter_name}"
        metrics[name] = float(value)
        values = [s[metric] for s in samples if s.get("filter") == filter_name
                  and isinstance(s.get(metric), (int, float)) and not isinstance(s.get(metric), bool)]
        interval = _matching_interval(values, float(value), resamples, seed)
        if interval is not None:
            intervals[name] = interval
    return metrics, intervals


def run_lm_eval(model: str | Path, modules: Sequence[str | Path], tasks: Sequence[str], options: HarnessOptions,
                batch_size: int, layer: int | None, bootstrap: int, bootstrap_seed: int) -> list[dict[str, Any]]:
    """lm-evaluation-harness on the merged decoder; one result entry per lm-eval task (groups included)."""
    lm_eval = require("lm_eval", "lm-eval")
    from lm_eval.models.huggingface import HFLM  # the optional extra, checked by require() above
    from lm_eval.tasks import TaskManager

    if options.include_path is not None and not Path(options.include_path).is_dir():
        raise UserError(f"--include-path {options.include_path} is not a folder of lm-eval task YAML files")
    manager = TaskManager(include_path=options.include_path, include_defaults=options.include_path is None)
    if options.include_path is not None and not set(tasks) <= set(manager.all_tasks):
        manager = TaskManager(include_path=options.include_path, include_defaults=True)  # also lm-eval's own tasks
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise UserError(f"lm-eval has no task {', '.join(map(repr, unknown))}; list them with `lm-eval ls tasks`, "
                        "or give a folder of task YAML files with --include-path")
    network, tokenizer = merged_decoder(model, modules)
    output = lm_eval.simple_evaluate(model=HFLM(pretrained=network, tokenizer=tokenizer, batch_size=batch_size),
                                     tasks=list(tasks), task_manager=manager, num_fewshot=options.num_fewshot,
                                     limit=options.limit, log_samples=True)
    results = []
    for task, task_results in output["results"].items():
        metrics, intervals = lm_eval_metrics(task_results, output.get("samples", {}).get(task, []),
                                             bootstrap, bootstrap_seed)
        examples = output.get("n-samples", {}).get(task, {}).get("effective")
        if isinstance(examples, int):
            metrics["examples"] = examples
        entry = {"name": f"lm-eval:{task}", "task": "lm-eval", "files": [], "metrics": metrics}
        results.append({**entry, "intervals": intervals} if intervals else entry)
    return results


# ----------------------------------------------------------------------------- MTEB
def run_mteb(model: str | Path, modules: Sequence[str | Path], tasks: Sequence[str], options: HarnessOptions,
             batch_size: int, layer: int | None, bootstrap: int, bootstrap_seed: int) -> list[dict[str, Any]]:
    """MTEB on the encoder (+ language modules); one result entry per (task, subset, split)."""
    mteb = require("mteb", "mteb")
    from langgraft.eval import mteb_local  # imports mteb: only when this optional harness runs

    task_objects = [mteb_local.local_task(t) if ":" in t else _named_mteb_task(mteb, t) for t in tasks]
    source = ModelSource(model, language_modules(modules))
    encoder = mteb_local.PooledEncoder(source.encoder(), source.tokenizer, layer=layer, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="langgraft-mteb-") as predictions:
        output = mteb.evaluate(encoder, task_objects, cache=None, overwrite_strategy="always",
                               prediction_folder=predictions, show_progress_bar=False,
                               encode_kwargs={"batch_size": batch_size})
        results = []
        for task_result in output.task_results:
            predicted = mteb_local.bitext_correct(Path(predictions), task_result.task_name)
            for split, entries in task_result.scores.items():
                for entry in entries:
                    results.append(_mteb_entry(task_result.task_name, split, entry, len(task_result.scores) > 1,
                                               predicted.get((entry.get("hf_subset"), split)), bootstrap,
                                               bootstrap_seed))
    return results


def language_modules(modules: Sequence[str | Path]) -> list[str | Path]:
    """The language modules among ``modules``: harness tasks bring their own scoring, never a task module's head.

    Seed sets (``train-task --seeds``) hold task modules only and are skipped like them.
    """

    return [m for m in modules if seed_set_members(m) is None and load_module(m).metadata.role == "language"]


def _named_mteb_task(mteb: Any, name: str) -> Any:
    try:
        return mteb.get_task(name)
    except (KeyError, ValueError) as exc:
        raise UserError(f"MTEB has no task {name!r} ({str(exc).splitlines()[0][:200]}); give an MTEB task name "
                        "or bitext-mining:SRC_FILE,TGT_FILE") from None


def _mteb_entry(task: str, split: str, entry: dict[str, Any], several_splits: bool, correct: np.ndarray | None,
                resamples: int, seed: int) -> dict[str, Any]:
    subset = entry.get("hf_subset", "default")
    name = f"mteb:{task}" + (f"/{subset}" if subset != "default" else "") + (f"/{split}" if several_splits else "")
    metrics = {k: float(v) for k, v in entry.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "main_score"}
    result = {"name": name, "task": "mteb", "files": [], "metrics": metrics}
    interval = None if correct is None or "accuracy" not in metrics else \
        _matching_interval(correct, metrics["accuracy"], resamples, seed)
    return {**result, "intervals": {"accuracy": interval}} if interval is not None else result


HARNESSES: dict[str, Callable[..., list[dict[str, Any]]]] = {"lm-eval": run_lm_eval, "mteb": run_mteb}


def run_harness(harness: str, model: str | Path, tasks: Sequence[str], *, modules: Sequence[str | Path] = (),
                options: HarnessOptions | None = None, batch_size: int = 32, layer: int | None = None,
                bootstrap: int = 1000, bootstrap_seed: int = 0) -> list[dict[str, Any]]:
    """Run ``tasks`` of ``harness`` (lm-eval or mteb) on ``model`` + language ``modules``: result entries."""
    if harness not in HARNESSES:
        raise UserError(f"--harness {harness!r} is not one of {', '.join(HARNESSES)}")
    if not tasks:
        raise UserError(f"--harness {harness} needs --tasks NAME ...")
    return HARNESSES[harness](model, modules, list(tasks), options or HarnessOptions(), batch_size, layer,
                              bootstrap, bootstrap_seed)

