"""Compare runs: a Markdown table per task, the same numbers as JSON, and PNG plots.

Inputs (mixed freely, see :func:`load_runs`): run dicts from :func:`langgraft.eval.evaluate`,
JSON files holding one run, a list of runs, ``{"runs": [...]}`` (a previous report) or
``{"rows": [{"setup", "task", "metric", "value"}, ...]}`` (the pipeline's ``evaluation.json``),
``metrics.jsonl`` training logs, and run directories (every such file found inside).

A row may carry ``low``/``high`` (the bootstrap 95% interval of its value) and ``sd`` / ``seeds``
(standard deviation over training seeds, the value being their mean); tables print them as
``0.6100 [0.5700, 0.6500]`` or ``0.6100 ± 0.0200 (n=3)`` and bar charts draw them as error bars
(the interval; the sd where there are seeds).

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
from langgraft.eval.benchmarks import BENCHMARKS
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
        metric = str(row["metric"])
        result["metrics"][metric] = row["value"]
        if _is_number(row.get("low")) and _is_number(row.get("high")):
            result.setdefault("intervals", {})[metric] = [row["low"], row["high"]]
        if _is_number(row.get("sd")):
            result.setdefault("sd", {})[metric] = row["sd"]
            if isinstance(row.get("seeds"), int):
                result["seeds"] = [{}] * row["seeds"]
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
    """Long format: one ``{"setup", "task", "metric", "value"}`` per number, plus ``low``/``high`` (95%
    interval) and ``sd``/``seeds`` (over training seeds) where the result has them."""
    return [{"setup": run["name"], "task": result["name"], "metric": metric, "value": value,
             **_spread(result, metric)}
            for run in runs for result in run["results"]
            for metric, value in result.get("metrics", {}).items() if _is_number(value)]


def _spread(result: dict[str, Any], metric: str) -> dict[str, Any]:
    """``{"sd", "seeds"}`` over training seeds, else ``{"low", "high"}`` of the bootstrap interval, else ``{}``."""
    sd = (result.get("sd") or {}).get(metric)
    if _is_number(sd):
        return {"sd": sd, "seeds": len(result.get("seeds") or ())}
    interval = (result.get("intervals") or {}).get(metric)
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(map(_is_number, interval)):
        return {"low": interval[0], "high": interval[1]}
    return {}


def _task_tables(runs: Sequence[dict[str, Any]]) -> dict[str, tuple[list[str], dict[str, dict[str, Any]]]]:
    """task name -> (metric names in first-seen order, {run name: {metric: row}})."""
    tables: dict[str, tuple[list[str], dict[str, dict[str, Any]]]] = {}
    for row in to_rows(runs):
        metrics, cells = tables.setdefault(row["task"], ([], {}))
        if row["metric"] not in metrics:
            metrics.append(row["metric"])
        cells.setdefault(row["setup"], {})[row["metric"]] = row
    return tables


def _format(value: Any) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _format_row(row: dict[str, Any] | None) -> str:
    """A table cell: the value with its sd over seeds or its 95% interval."""
    if row is None:
        return "–"
    if "sd" in row:
        return f"{_format(row['value'])} ± {row['sd']:.4f} (n={row['seeds']})"
    if "low" in row:
        return f"{_format(row['value'])} [{row['low']:.4f}, {row['high']:.4f}]"
    return _format(row["value"])


def _error(row: dict[str, Any] | None) -> tuple[float, float]:
    """(below, above) error-bar lengths: the sd over seeds, else the interval's distance from the value."""
    if row is None:
        return 0.0, 0.0
    if "sd" in row:
        return row["sd"], row["sd"]
    if "low" in row:
        return max(0.0, row["value"] - row["low"]), max(0.0, row["high"] - row["value"])
    return 0.0, 0.0


def _markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "plot"


# ----------------------------------------------------------------------------- plots
def _save_png(figure: Any, path: Path) -> None:
    # deferred: keeps matplotlib off `import langgraft.eval.report`
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.tight_layout()
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)


def _bar_chart(path: Path, title: str, groups: list[str], series: dict[str, list[float | None]], ylabel: str,
               errors: dict[str, list[tuple[float, float]]] | None = None) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per series (run); ``errors``: (below, above) bars."""
    # deferred: keeps matplotlib off `import langgraft.eval.report`
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.0, 1.2 * len(groups) * max(1, len(series)) ** 0.5 + 2), 3.6))
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        positions = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in values]
        spread = (errors or {}).get(label)
        yerr = [[e[0] for e in spread], [e[1] for e in spread]] if spread and any(any(e) for e in spread) else None
        bars = axes.bar(positions, heights, width, label=label, yerr=yerr, capsize=3 if yerr else 0)
        axes.bar_label(bars, labels=[_format(v) if v is not None else "" for v in values], fontsize=7)
    axes.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 3 else 0)
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    if len(series) > 1:
        axes.legend(fontsize=8)
    _save_png(figure, path)


def _curve_plot(path: Path, curves: dict[str, list[dict[str, float]]]) -> bool:
    """Plot every curve key the logs hold; False (nothing written) when they hold none."""
    # deferred: keeps matplotlib off `import langgraft.eval.report`
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


def _benchmark_table(runs: list[dict[str, Any]], names: list[str]) -> list[str]:
    """The table a paper prints: one row per setup, each named benchmark's headline metric per column."""
    tables = {task: table for task, table in _task_tables(runs).items() if task in BENCHMARKS}
    if not tables:
        return []
    header = ["setup"] + [f"{task} ({BENCHMARKS[task].metric})" for task in tables]
    setups = [n for n in dict.fromkeys(names) if any(n in cells for _, cells in tables.values())]
    body = [[s] + [_format_row(cells.get(s, {}).get(BENCHMARKS[task].metric)) for task, (_, cells) in tables.items()]
            for s in setups]
    return ["## Benchmarks", ""] + _markdown_table(header, body) + [""]


def _write_report_files(runs: list[dict[str, Any]], out_dir: Path, title: str) -> None:
    lines = [f"# {title}", ""]
    names = [run["name"] for run in runs]
    lines += _benchmark_table(runs, names)

    for task, (metrics, cells) in _task_tables(runs).items():
        setups = [n for n in dict.fromkeys(names) if n in cells]
        lines += [f"## {task}", ""]
        body = [[s] + [_format_row(cells[s].get(m)) for m in metrics] for s in setups]
        lines += _markdown_table(["setup"] + metrics, body)
        plotted = [m for m in metrics if m not in NOT_PLOTTED
                   and any(isinstance(cells[s].get(m, {}).get("value"), float) for s in setups)]
        if plotted:
            png = f"{_slug(task)}.png"
            values = {s: [cells[s][m]["value"] if m in cells[s] else None for m in plotted] for s in setups}
            errors = {s: [_error(cells[s].get(m)) for m in plotted] for s in setups}
            _bar_chart(out_dir / png, task, plotted, values, "score", errors)
            lines += ["", f"![{task}]({png})"]
        if any("low" in row or "sd" in row for row in (r for c in cells.values() for r in c.values())):
            lines += ["", "[low, high]: bootstrap 95% interval over the test examples; ± sd (n=…): over training seeds."]
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
