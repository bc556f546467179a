"""Kill a real ``langgraft pretrain`` process with SIGKILL and resume it: same weights, same losses."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import target_sentences

from langgraft.training import is_sealed
from langgraft.adapt.cli import main


def _losses(out: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_models, target_corpus, tmp_path):
    # Held-out evaluation after every step slows the run down (without changing training), so
    # the kill reliably lands mid-run.
    slow_eval = tmp_path / "dev.txt"
    slow_eval.write_text("\n".join(target_sentences(80, seed=7)) + "\n", encoding="utf-8")
    args = ["pretrain", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus),
            "--eval-corpus", str(slow_eval), "--eval-steps", "1", "--max-steps", "10", "--embedding-steps", "2",
            "--save-steps", "2", "--logging-steps", "1", "--max-seq-length", "32", "--per-device-train-batch-size", "2"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "langgraft", *args, "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # same threads as here
    deadline = time.time() + 240
    phase2 = killed / "checkpoints" / "full"
    while not any(is_sealed(f) for f in phase2.glob("checkpoint-*")):
        assert process.poll() is None and time.time() < deadline, "run ended before a phase-2 checkpoint"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists()  # it really stopped before the end

    assert main([*args, "--out", str(killed), "--resume"]) == 0
    reference = tmp_path / "reference"
    assert main([*args, "--out", str(reference)]) == 0

    resumed_weights, reference_weights = load_file(killed / "model.safetensors"), load_file(reference / "model.safetensors")
    assert resumed_weights.keys() == reference_weights.keys()
    assert all(torch.equal(resumed_weights[k], reference_weights[k]) for k in reference_weights)
    assert _losses(killed) == _losses(reference) and [s for s, _ in _losses(killed)] == list(range(1, 11))
