"""Compare runs: a Markdown table per task, the same numbers as JSON, and PNG plots.

Inputs (mixed freely, see :func:`load_runs`): run dicts from :func:`langgraft.eval.evaluate`,
JSON files holding one run, a list of runs, ``{"runs": [...]}`` (a previous report) or
``{"rows": [{"setup", "task", "metric", "value"}, ...]}`` (the pipeline's ``evaluation.json``),
``metrics.jsonl`` training logs, and run directories (every such file found inside).

Outputs in ``out_dir``, each file written atomically: ``report.md``, ``report.json`` (``rows`` in
the long format above plus the normalised ``runs``), ``loss_curves.png`` when training logs are
given, one grouped bar chart per task (``<task>.png``) and one per named comparison
(e.g. step-0 bpc per initialisation method).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from langgraft.atomic import atomic_dir, atomic_file
from langgraft.errors import UserError
from langgraft.outputs import check_output
from langgraft.training import METRICS_FILE

# token-level numbers depend on the tokenizer: tabulated, never drawn side by side as a comparison
NOT_PLOTTED = {"loss", "nll_bits"}
CURVE_KEYS = ("loss", "eval_loss")  # plus every logged key containing "bpc"
REPORT_JSON = "report.json"


# ----------------------------------------------------------------------------- loading
def read_metrics_log(path: str | Path) -> list[dict[str, float]]:
    """Numeric records with a ``step`` from a ``metrics.jsonl`` training log.

    Unparseable lines (e.g. the half-written last line of an interrupted run) are skipped.
    """
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
                records.append({k: float(v) for k, v in record.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return records


def _runs_from_rows(rows: Iterable[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not {"setup", "task", "metric", "value"} <= set(row):
            raise UserError(f"{source}: a row lacks setup/task/metric/value: {row}")
        run = runs.setdefault(str(row["setup"]), {"name": str(row["setup"]), "results": []})
        result = next((r for r in run["results"] if r["name"] == row["task"]), None)
        if result is None:
            result = {"name": str(row["task"]), "task": str(row["task"]), "metrics": {}}
            run["results"].append(result)
        result["metrics"][str(row["metric"])] = row["value"]
    return list(runs.values())


def _normalise(run: dict[str, Any], source: str) -> dict[str, Any]:
    if "name" not in run:
        raise UserError(f"{source}: a run needs a 'name'")
    curves = run.get("curves") or {}
    log = run.get("metrics_log")
    if isinstance(log, (str, Path)):
        curves = {**curves, run["name"]: read_metrics_log(log)}
    elif isinstance(log, list):
        curves = {**curves, run["name"]: log}
    return {"name": str(run["name"]), "results": list(run.get("results", [])), "curves": curves,
            "comparisons": dict(run.get("comparisons", {}))}


def _from_json(data: Any, source: str) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return [run for item in data for run in _from_json(item, source)]
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a run object, a list of runs, or {{'rows': [...]}}")
    if "runs" in data:
        return _from_json(data["runs"], source)
    if "rows" in data and "results" not in data:
        runs = _runs_from_rows(data["rows"], source)
        if runs and data.get("comparisons"):
            runs[0]["comparisons"] = data["comparisons"]
        return [_normalise(run, source) for run in runs]
    return [_normalise(data, source)]


def _from_directory(path: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for file in sorted(path.rglob("*.json")):
        if file.name == REPORT_JSON:  # an earlier report of the same runs
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        if isinstance(data, dict) and {"results", "rows", "runs"} & set(data):
            runs.extend(_from_json(data, str(file)))
    curves = {(str(log.parent.relative_to(path)) if log.parent != path else path.name): read_metrics_log(log)
              for log in sorted(path.rglob(METRICS_FILE))}
    if curves:
        runs.append({"name": path.name, "results": [], "curves": curves, "comparisons": {}})
    if not runs:
        raise UserError(f"{path} holds no evaluation results (*.json with 'results' or 'rows') and no "
                        f"{METRICS_FILE}; give result files written by `langgraft eval --out`")
    return runs


def load_runs(items: Sequence[dict[str, Any] | str | Path]) -> list[dict[str, Any]]:
    """Normalise every input to ``{"name", "results", "curves", "comparisons"}`` runs."""
    runs: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            runs.extend(_from_json(item, "run"))
            continue
        path = Path(item)
        if path.is_dir():
            runs.extend(_from_directory(path))
        elif not path.is_file():
            raise UserError(f"report input {path} not found; give result JSON files, metrics.jsonl logs or run folders")
        elif path.suffix == ".jsonl":
            runs.append({"name": path.parent.name or path.stem, "results": [],
                         "curves": {path.parent.name or path.stem: read_metrics_log(path)}, "comparisons": {}})
        else:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise UserError(f"{path} is not a JSON results file ({exc}); give files written by "
                                "`langgraft eval --out`") from None
            runs.extend(_from_json(data, str(path)))
    if not runs:
        raise UserError("nothing to report: give at least one result file, run folder or run dict")
    return runs


# ----------------------------------------------------------------------------- tables
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def to_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long format: one ``{"setup", "task", "metric", "value"}`` per number."""
    return [{"setup": run["name"], "task": result["name"], "metric": metric, "value": value}
            for run in runs for result in run["results"]
            for metric, value in result.get("metrics", {}).items() if _is_number(value)]


def _task_tables(runs: Sequence[dict[str, Any]]) -> dict[str, tuple[list[str], dict[str, dict[str, Any]]]]:
    """task name -> (metric names in first-seen order, {run name: {metric: value}})."""
    tables: dict[str, tuple[list[str], dict[str, dict[str, Any]]]] = {}
    for row in to_rows(runs):
        metrics, cells = tables.setdefault(row["task"], ([], {}))
        if row["metric"] not in metrics:
            metrics.append(row["metric"])
        cells.setdefault(row["setup"], {})[row["metric"]] = row["value"]
    return tables


def _format(value: Any) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "plot"


# ----------------------------------------------------------------------------- plots
def _save_png(figure: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.tight_layout()
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)


def _bar_chart(path: Path, title: str, groups: list[str], series: dict[str, list[float | None]], ylabel: str) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per series (run)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.0, 1.2 * len(groups) * max(1, len(series)) ** 0.5 + 2), 3.6))
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        positions = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = axes.bar(positions, heights, width, label=label)
        axes.bar_label(bars, labels=[_format(v) if v is not None else "" for v in values], fontsize=7)
    axes.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 3 else 0)
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    if len(series) > 1:
        axes.legend(fontsize=8)
    _save_png(figure, path)


def _curve_plot(path: Path, curves: dict[str, list[dict[str, float]]]) -> bool:
    """Plot every curve key the logs hold; False (nothing written) when they hold none."""
    from matplotlib.figure import Figure

    keys = [k for k in CURVE_KEYS if any(k in r for log in curves.values() for r in log)]
    keys += sorted({k for log in curves.values() for r in log for k in r if "bpc" in k} - set(keys))
    if not keys:  # logs without a plotted key (a run shorter than its logging interval): no figure
        return False
    figure = Figure(figsize=(5 * len(keys), 3.6))
    for index, key in enumerate(keys, start=1):
        axes = figure.add_subplot(1, len(keys), index)
        for label, log in curves.items():
            points = [(r["step"], r[key]) for r in log if key in r]
            if points:
                axes.plot(*zip(*points), marker="." if len(points) < 30 else None, label=label)
        axes.set_xlabel("step")
        axes.set_title(key + (" (per token: compare within a tokenizer)" if "loss" in key else ""), fontsize=9)
        axes.legend(fontsize=7)
    _save_png(figure, path)
    return True


# ----------------------------------------------------------------------------- report
def write_report(runs: Sequence[dict[str, Any] | str | Path], out_dir: str | Path,
                 title: str = "langgraft evaluation report", overwrite: bool = False) -> Path:
    """Write ``report.md``, ``report.json`` and PNG plots comparing ``runs`` into ``out_dir``; returns report.md.

    The folder appears whole or not at all; an existing ``out_dir`` is replaced only with ``overwrite``.
    """
    inputs = [run for run in runs if isinstance(run, (str, Path))]
    check_output(out_dir, inputs=inputs, overwrite=overwrite)
    runs = load_runs(runs)
    with atomic_dir(out_dir, overwrite=overwrite, inputs=inputs) as tmp:
        _write_report_files(runs, tmp, title)
    return Path(out_dir) / "report.md"


def _write_report_files(runs: list[dict[str, Any]], out_dir: Path, title: str) -> None:
    lines = [f"# {title}", ""]
    names = [run["name"] for run in runs]

    for task, (metrics, cells) in _task_tables(runs).items():
        setups = [n for n in dict.fromkeys(names) if n in cells]
        lines += [f"## {task}", ""]
        body = [[s] + [_format(cells[s].get(m)) for m in metrics] for s in setups]
        lines += _markdown_table(["setup"] + metrics, body)
        plotted = [m for m in metrics
                   if m not in NOT_PLOTTED and any(isinstance(cells[s].get(m), float) for s in setups)]
        if plotted:
            png = f"{_slug(task)}.png"
            _bar_chart(out_dir / png, task, plotted, {s: [cells[s].get(m) for m in plotted] for s in setups}, "score")
            lines += ["", f"![{task}]({png})"]
        lines.append("")

    comparisons: dict[str, dict[str, float]] = {}
    for run in runs:
        for name, values in run["comparisons"].items():
            comparisons.setdefault(name, {}).update({str(k): v for k, v in values.items() if _is_number(v)})
    for name, values in comparisons.items():
        png = f"compare_{_slug(name)}.png"
        lines += [f"## {name}", ""]
        lines += _markdown_table(["method", "value"], [[k, _format(v)] for k, v in values.items()])
        _bar_chart(out_dir / png, name, [""], {k: [float(v)] for k, v in values.items()}, name)
        lines += ["", f"![{name}]({png})", ""]

    curves = {label if len(runs) == 1 or label == run["name"] else f"{run['name']}/{label}": log
              for run in runs for label, log in run["curves"].items() if log}
    if curves and _curve_plot(out_dir / "loss_curves.png", curves):
        lines += ["## Training curves", "", "![training curves](loss_curves.png)", ""]

    if len(lines) == 2:
        raise UserError("the report inputs hold no numbers (no metrics, comparisons or training logs)")
    with atomic_file(out_dir / REPORT_JSON) as handle:
        json.dump({"rows": to_rows(runs), "comparisons": comparisons, "runs": runs}, handle, indent=2)
        handle.write("\n")
    with atomic_file(out_dir / "report.md") as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
