"""The same command under torchrun: 2 CPU processes (gloo) match 1 process with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langgraft.adapt.cli import main


def _without_dropout(source: Path, out: Path) -> Path:
    """Dropout draws differ per process; everything else must match exactly."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    for name, value in config.to_dict().items():
        if isinstance(value, float) and ("dropout" in name or "pdrop" in name):
            setattr(config, name, 0.0)
    AutoModelForCausalLM.from_pretrained(source, config=config).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_two_gloo_processes_match_one(tiny_models, target_corpus, tmp_path):
    model = _without_dropout(tiny_models["gpt2"], tmp_path / "model")
    args = ["pretrain", "--model", str(model), "--corpus", str(target_corpus), "--max-steps", "4",
            "--embedding-steps", "1", "--save-steps", "2", "--logging-steps", "1", "--max-seq-length", "32",
            "--gradient-accumulation-steps", "2", "--seed", "3"]
    two = tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", "-m", "langgraft", *args,
                           "--per-device-train-batch-size", "1", "--out", str(two)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = tmp_path / "one"
    assert main([*args, "--per-device-train-batch-size", "2", "--out", str(one)]) == 0

    assert _losses(two) == pytest.approx(_losses(one), rel=1e-5)
    weights_two, weights_one = load_file(two / "model.safetensors"), load_file(one / "model.safetensors")
    assert all(torch.allclose(weights_two[k], weights_one[k], atol=1e-6) for k in weights_one)
