"""Reports: Markdown + JSON hold the input numbers, PNG plots are valid images, inputs of every kind load."""
from __future__ import annotations

import json

import pytest

from langgraft.adapt.cli import main
from langgraft.errors import UserError
from langgraft.eval.report import load_runs, read_metrics_log, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(name: str, f1: float, bpc: float) -> dict:
    return {"name": name, "model": f"/models/{name}", "results": [
        {"name": "genre", "task": "seq-cls", "metrics": {"accuracy": f1 + 0.1, "macro_f1": f1, "examples": 120}},
        {"name": "bpc:dev.txt", "task": "bpc", "metrics": {"bpc": bpc, "loss": 3.25, "objective": "mlm"}},
    ]}


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000, path


def test_report_tables_json_and_plots(tmp_path):
    log = tmp_path / "pretrain" / "metrics.jsonl"
    log.parent.mkdir()
    log.write_text("".join(json.dumps({"step": s, "loss": 6.0 - s / 100, "eval_bpc": 3.0 - s / 1000}) + "\n"
                           for s in range(0, 200, 50)) + '{"step": 250, "lo', encoding="utf-8")
    runs = [_run("source", 0.3125, 4.5), {**_run("focus", 0.5625, 2.0625), "metrics_log": str(log),
                                          "comparisons": {"step-0 bpc by init": {"random": 7.5, "focus": 3.25}}}]
    out = tmp_path / "report"
    md_path = write_report(runs, out)
    markdown = md_path.read_text(encoding="utf-8")
    for number in ("0.3125", "0.5625", "4.5000", "2.0625", "7.5000", "3.2500", "| 120 |"):
        assert number in markdown
    assert "## genre" in markdown and "![genre](genre.png)" in markdown
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    rows = {(r["setup"], r["task"], r["metric"]): r["value"] for r in saved["rows"]}
    assert rows[("focus", "genre", "macro_f1")] == 0.5625
    assert rows[("source", "bpc:dev.txt", "bpc")] == 4.5
    assert ("source", "bpc:dev.txt", "objective") not in rows  # only numbers are rows
    assert saved["comparisons"] == {"step-0 bpc by init": {"random": 7.5, "focus": 3.25}}
    for png in ("genre.png", "bpc_dev_txt.png", "compare_step_0_bpc_by_init.png", "loss_curves.png"):
        _assert_png(out / png)
    assert len(saved["runs"][1]["curves"]["focus"]) == 4  # the half-written last log line is skipped
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.slow
def test_report_inputs_files_rows_and_run_folders(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(_run("adapted", 0.25, 2.5)), encoding="utf-8")
    evaluation = {"rows": [{"setup": "source", "task": "retrieval", "metric": "top10", "value": 0.125},
                           {"setup": "adapted", "task": "retrieval", "metric": "top10", "value": 0.875}]}
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation), encoding="utf-8")
    run_dir = tmp_path / "run"
    (run_dir / "pretrain").mkdir(parents=True)
    (run_dir / "pretrain" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n',
                                                        encoding="utf-8")
    (run_dir / "eval.json").write_text(json.dumps(_run("run-eval", 0.75, 1.75)), encoding="utf-8")
    runs = load_runs([tmp_path / "a.json", tmp_path / "evaluation.json", run_dir])
    assert [r["name"] for r in runs] == ["adapted", "source", "adapted", "run-eval", "run"]

    out = tmp_path / "out"
    assert main(["eval", "report", str(tmp_path / "a.json"), str(tmp_path / "evaluation.json"), str(run_dir),
                 "--out", str(out)]) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "0.8750" in markdown and "0.7500" in markdown and "## Training curves" in markdown
    _assert_png(out / "retrieval.png")
    _assert_png(out / "loss_curves.png")

    # regenerating from the previous report.json gives the same rows
    again = tmp_path / "again"
    write_report([out / "report.json"], again)
    first = json.loads((out / "report.json").read_text(encoding="utf-8"))["rows"]
    assert json.loads((again / "report.json").read_text(encoding="utf-8"))["rows"] == first


def test_report_bad_inputs(tmp_path):
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="not a JSON results file"):
        write_report([tmp_path / "bad.json"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no evaluation results"):
        write_report([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(UserError, match="no numbers"):
        write_report([{"name": "x", "results": []}], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_read_metrics_log_keeps_numeric_fields(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 0, "loss": 1.0, "phase": "mlm"}\n\n{"no_step": 1}\n{"step": 5, "eval_bpc": 2.5}\n',
                   encoding="utf-8")
    assert read_metrics_log(log) == [{"step": 0.0, "loss": 1.0}, {"step": 5.0, "eval_bpc": 2.5}]


def test_intervals_and_seed_sd_in_tables_rows_and_error_bars(tmp_path):
    with_spread = {"name": "adapted", "results": [
        {"name": "genre", "task": "seq-cls", "metrics": {"accuracy": 0.61, "examples": 120},
         "intervals": {"accuracy": [0.52, 0.70]}},
        {"name": "pos", "task": "token-cls", "metrics": {"accuracy": 0.8}, "sd": {"accuracy": 0.03},
         "seeds": [{"seed": 0}, {"seed": 1}, {"seed": 2}]}]}
    bare = {"name": "adapted", "results": [{"name": "genre", "task": "seq-cls",
                                            "metrics": {"accuracy": 0.61, "examples": 120}}]}
    write_report([with_spread], tmp_path / "r")
    text = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "0.6100 [0.5200, 0.7000]" in text and "0.8000 ± 0.0300 (n=3)" in text
    rows = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))["rows"]
    assert {"setup": "adapted", "task": "genre", "metric": "accuracy", "value": 0.61, "low": 0.52,
            "high": 0.70} in rows
    assert {"setup": "adapted", "task": "pos", "metric": "accuracy", "value": 0.8, "sd": 0.03, "seeds": 3} in rows
    # the pipeline's long rows carry the spread back into a report
    (tmp_path / "evaluation.json").write_text(json.dumps({"rows": rows}), encoding="utf-8")
    write_report([tmp_path / "evaluation.json"], tmp_path / "again")
    assert (tmp_path / "again" / "report.md").read_text(encoding="utf-8") == text
    # error bars change the drawing
    write_report([bare], tmp_path / "bare")
    assert (tmp_path / "r" / "genre.png").read_bytes() != (tmp_path / "bare" / "genre.png").read_bytes()
