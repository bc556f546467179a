"""The pipeline end to end on a tiny model: every real stage, skip on re-run, resume after a crash."""
from __future__ import annotations

import json
import time

import pytest
from pipeline_tiny import tiny_pipeline

from langgraft import Pipeline, UserError
from langgraft.adapt.pipeline.publish import publish

pytestmark = pytest.mark.slow  # every test here runs a whole pipeline


@pytest.fixture(scope="module")
def finished(tiny_models, source_corpus, target_corpus, tmp_path_factory):
    """One complete tiny run: (config, pipeline, outputs)."""
    out = tmp_path_factory.mktemp("pipeline")
    config = tiny_pipeline(tiny_models["bert"], source_corpus, target_corpus, out)
    pipeline = Pipeline.from_dict(config, base_dir=out)
    return config, pipeline, pipeline.run()


@pytest.mark.slow
def test_every_stage_runs_and_the_report_compares_setups(finished):
    config, pipeline, outputs = finished
    assert list(outputs) == [s.name for s in pipeline.stages]
    ledger = json.loads((pipeline.run_dir / "stages.json").read_text())
    assert {entry["status"] for entry in ledger["stages"].values()} == {"done"}
    comparison = json.loads((outputs["init"] / "comparison.json").read_text())
    assert [c["method"] for c in comparison["candidates"]] == ["random", "mean", "fvt"]
    assert comparison["chosen"] == min(comparison["candidates"], key=lambda c: c["bpc"])["method"]
    rows = json.loads((outputs["evaluate"] / "evaluation.json").read_text())["rows"]
    bpc = {r["setup"]: r["value"] for r in rows if r["task"] == "bpc" and r["metric"] == "bpc"}
    assert set(bpc) >= {"source", "adapted"} and all(0 < v < 20 for v in bpc.values())
    report = (pipeline.run_dir / "report" / "report.md").read_text()
    assert "bpc" in report and "step-0 bpc by init method" in report
    assert (pipeline.publish_dir / "manifest.json").is_file()


def test_rerun_skips_every_finished_stage(finished):
    config, pipeline, outputs = finished
    started = time.time()
    again = Pipeline.from_dict(config, base_dir=pipeline.base_dir).run()
    assert again == outputs
    ledger = json.loads((pipeline.run_dir / "stages.json").read_text())
    assert all(entry["skipped"] for entry in ledger["stages"].values())
    assert time.time() - started < 10


def test_changed_config_reruns_only_the_stages_it_reaches(finished):
    config, pipeline, outputs = finished
    changed = json.loads(json.dumps(config))
    changed["evaluation"]["max_documents"] = 20
    rerun = Pipeline.from_dict(changed, base_dir=pipeline.base_dir, overrides={"publish.out": None})
    keys = rerun.keys()
    assert all(keys[s] == pipeline.keys()[s] for s in ("corpus", "tokenizer", "init"))
    assert keys["evaluate"] != pipeline.keys()["evaluate"] and keys["report"] != pipeline.keys()["report"]
    with pytest.raises(UserError, match="publish.out .* already exists"):
        Pipeline.from_dict(changed, base_dir=pipeline.base_dir).run()  # publish never overwrites


def test_a_crashed_run_resumes_at_the_failed_stage(tiny_models, source_corpus, target_corpus, tmp_path, monkeypatch):
    from langgraft.adapt.pipeline import stages

    config = tiny_pipeline(tiny_models["bert"], source_corpus, target_corpus, tmp_path, pretrain=None,
                           publish={"out": None})
    real = stages.initialize_embeddings
    calls = []

    def crash_on_second_candidate(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "initialize_embeddings", crash_on_second_candidate)
    pipeline = Pipeline.from_dict(config, base_dir=tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.run()
    ledger = json.loads(pipeline.ledger_path.read_text())["stages"]
    assert ledger["corpus"]["status"] == "done" and ledger["init"]["status"] == "failed"
    assert "simulated crash" in ledger["init"]["error"] and "evaluate" not in ledger
    assert not pipeline.stage_dir("init", pipeline.keys()["init"]).exists()  # no half-written output
    with pytest.raises(UserError, match=r"unfinished stages \(init, evaluate, report\)"):
        publish(pipeline.run_dir, tmp_path / "hub")
    assert not (tmp_path / "hub").exists()

    outputs = Pipeline.from_dict(config, base_dir=tmp_path).run()
    ledger = json.loads(pipeline.ledger_path.read_text())["stages"]
    assert ledger["corpus"]["skipped"] and ledger["tokenizer"]["skipped"] and not ledger["init"]["skipped"]
    assert calls == ["random", "mean", "mean", "fvt"]  # the finished candidate was not redone
    assert (outputs["init"] / "model" / "config.json").is_file() and ledger["report"]["status"] == "done"


def test_a_run_folder_in_use_is_refused_and_a_stale_lock_is_cleared(finished):
    import os

    config, pipeline, outputs = finished
    lock = pipeline.run_dir / ".lock"
    lock.write_text(str(os.getpid()))  # a live process holds it
    with pytest.raises(UserError, match="being run by another process"):
        Pipeline.from_dict(config, base_dir=pipeline.base_dir).run()
    lock.write_text("999999999")  # a process that no longer exists
    assert Pipeline.from_dict(config, base_dir=pipeline.base_dir).run() == outputs
    assert not lock.exists()


@pytest.mark.slow
def test_cli_run_prints_the_report_and_skips_finished_stages(finished, tmp_path):
    import subprocess
    import sys

    import yaml

    config, pipeline, outputs = finished
    path = tmp_path / "xx.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "langgraft", "run", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"report: {pipeline.run_dir / 'report' / 'report.md'}" in done.stdout
    assert done.stderr.count("up to date") == len(pipeline.stages) + 1  # every stage and the publish folder


def test_headless_source_body_steps_and_bias_calibration(tiny_models, source_corpus, target_corpus, tmp_path):
    """head.body_steps trains the recovered source on source text (held-out bpc recorded);
    init.calibrate_bias shifts the new rows' bias on the target train split."""
    from transformers import AutoModel, AutoTokenizer

    headless = tmp_path / "headless"
    AutoModel.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    config = tiny_pipeline(headless, source_corpus, target_corpus, tmp_path,
                           head={"max_steps": 4, "batch_size": 8, "body_steps": 6, "eval_documents": 20},
                           init={"method": "fvt", "calibrate_bias": True}, pretrain=None, evaluation=None,
                           publish=None)
    outputs = Pipeline.from_dict(config).run()
    head = json.loads((outputs["head"] / "model" / "head_recovery.json").read_text())
    assert head["body"]["steps"] == 6 and "eval_bpc_after" in head["body"]
    assert (outputs["head"] / "eval-dev.txt").read_text().count("\n") == 20
    summary = json.loads((outputs["init"] / "model" / "transfer_summary.json").read_text())
    kl = summary["bias_calibration"]["kl_bits_per_round"]
    assert kl[-1] < kl[0]


def test_unfinished_folders_of_an_earlier_configuration_are_named_and_kept(finished, capsys):
    config, pipeline, outputs = finished
    stale = pipeline.run_dir / "stages" / "pretrain-0123456789ab.partial"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "weights").write_bytes(b"x" * 2_000_000)
    capsys.readouterr()
    assert Pipeline.from_dict(config, base_dir=pipeline.base_dir).run() == outputs
    err = capsys.readouterr().err
    assert "1 unfinished stage folder(s) of an earlier configuration (2.0 MB)" in err and stale.name in err
    assert stale.is_dir()  # switching back to that configuration resumes it
    stale.joinpath("model", "weights").unlink()
    stale.joinpath("model").rmdir()
    stale.rmdir()
