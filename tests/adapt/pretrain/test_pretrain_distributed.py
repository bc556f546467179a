"""The same command under torchrun: 2 CPU processes (gloo) match 1 process with the same global batch.

Data parallel (DDP) and fully sharded (``--fsdp``: FSDP2 through Accelerate, parameters, gradients
and optimizer state split over the processes) both run on CPU with gloo.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langgraft.adapt.cli import main


def _without_dropout(source: Path, out: Path) -> Path:
    """Dropout draws differ per process, so it is off; float64 weights (see :func:`order_tolerance`)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    for name, value in config.to_dict().items():
        if isinstance(value, float) and ("dropout" in name or "pdrop" in name):
            setattr(config, name, 0.0)
    AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch.float64).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def free_port() -> int:
    """A port nobody listens on now (the OS picks it), so parallel runs on one machine do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


STEPS, SEQUENCE, GLOBAL_BATCH = 4, 32, 4
LEARNING_RATES = [1e-3] + [5e-5] * (STEPS - 1)  # the embeddings step, then the full-model steps (defaults)
EPS = torch.finfo(torch.float64).eps
TERMS = GLOBAL_BATCH * SEQUENCE  # a gradient sums one term per scored token of the global batch


def order_tolerance(reference: torch.Tensor) -> float:
    """How far two float64 runs may drift when they sum the same terms in another order.

    The two processes sum half the tokens each and then all-reduce (DDP) or reduce-scatter (FSDP), and the
    loss is taken in chunks of tokens; reordering a sum of n terms
    moves it by up to n * eps of its scale. Each optimizer step can carry that relative error into
    the weight, whose scale is the larger of its value and what AdamW (updates of about the
    learning rate per step) can have moved it by: steps * n * eps * (max |w| + sum of learning rates).
    The model is float64 so that this rounding noise (about 1e-15) sits far below any real mismatch
    between the runs (a wrong batch or averaging moves weights by about the learning rate).
    """
    return STEPS * TERMS * EPS * (reference.abs().max().item() + sum(LEARNING_RATES))


@pytest.fixture(scope="module")
def one_process(tiny_models, target_corpus, tmp_path_factory) -> tuple[list[str], Path]:
    """The float64, dropout-free tiny GPT-2 and the arguments of a run; the run in one process (the reference)."""
    root = tmp_path_factory.mktemp("distributed")
    model = _without_dropout(tiny_models["gpt2"], root / "model")
    args = ["pretrain", "--model", str(model), "--corpus", str(target_corpus), "--max-steps", str(STEPS),
            "--embedding-steps", "1", "--save-steps", "2", "--logging-steps", "1", "--max-seq-length", str(SEQUENCE),
            "--gradient-accumulation-steps", "2", "--seed", "3", "--loss-chunk-tokens", "8"]  # chunks: 8 tokens
    assert main([*args, "--per-device-train-batch-size", "2", "--out", str(root / "one")]) == 0
    return args, root / "one"


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [[], ["--fsdp"]], ids=["ddp", "fsdp"])
def test_two_gloo_processes_match_one(one_process, parallel, tmp_path):
    args, one = one_process
    two = tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), "-m", "langgraft", *args, *parallel,
                           "--per-device-train-batch-size", "1", "--out", str(two)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # the loss itself is reduced in float32 (langgraft's cross-entropy works on float32 logits): n terms, n * eps32
    assert _losses(two) == pytest.approx(_losses(one), rel=TERMS * torch.finfo(torch.float32).eps)
    weights_two, weights_one = load_file(two / "model.safetensors"), load_file(one / "model.safetensors")
    assert weights_two.keys() == weights_one.keys()
    for name, reference in weights_one.items():
        torch.testing.assert_close(weights_two[name], reference, rtol=0, atol=order_tolerance(reference),
                                   msg=lambda m, name=name: f"{name}: {m}")
