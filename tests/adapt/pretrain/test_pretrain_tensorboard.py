"""TensorBoard logs of ``langgraft pretrain``: written when tensorboard is installed, optional otherwise."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tiny import target_sentences

from langgraft.adapt.cli import main

FAST = ["--max-seq-length", "32", "--per-device-train-batch-size", "2", "--logging-steps", "1", "--max-steps", "3",
        "--embedding-steps", "1", "--save-steps", "10", "--eval-steps", "2"]


def _scalars(log_dir: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
@pytest.mark.parametrize("report_to", ["auto", "tensorboard"])
def test_run_writes_one_tensorboard_log_at_run_level_steps(tiny_models, target_corpus, tmp_path, report_to):
    dev = tmp_path / "dev.txt"
    dev.write_text("\n".join(target_sentences(8, seed=5)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["pretrain", "--model", str(tiny_models["gpt2"]), "--corpus", str(target_corpus), "--out", str(out),
                 "--eval-corpus", str(dev), "--report-to", report_to, *FAST]) == 0
    scalars = _scalars(out / "runs")
    assert scalars["embeddings/loss"] == [1] and scalars["full/loss"] == [2, 3]
    assert scalars["embeddings/eval_bpc"] == [0, 1] and scalars["full/eval_bpc"] == [2, 3]
    assert not list((out / "checkpoints").rglob("events.out.tfevents*"))  # no second, per-phase copy from Trainer


@pytest.mark.slow
def test_without_tensorboard_auto_runs_and_tensorboard_is_one_line(tiny_models, target_corpus, tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "run"
    assert main(["pretrain", "--model", str(tiny_models["gpt2"]), "--corpus", str(target_corpus), "--out", str(out),
                 *FAST]) == 0
    assert (out / "metrics.jsonl").is_file() and not (out / "runs").exists()
    capsys.readouterr()
    assert main(["pretrain", "--model", str(tiny_models["gpt2"]), "--corpus", str(target_corpus),
                 "--out", str(tmp_path / "required"), "--report-to", "tensorboard", *FAST]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("langgraft: error:")]
    assert len(err) == 1 and "pip install tensorboard" in err[0]
    assert not (tmp_path / "required").exists()
