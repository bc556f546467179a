"""Stage 2' of ``langgraft pretrain``: a language module on the frozen base (``--language-module``)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from langgraft.adapt.cli import main
from langgraft.adapt.pretrain.run import PretrainOptions, embedding_parameters
from langgraft.adapters import compose, load_module, revert
from langgraft.adapt.pretrain.language_modules import pretrain_language_module
from langgraft.models import load_language_model

FAST = ["--max-seq-length", "32", "--per-device-train-batch-size", "2", "--logging-steps", "1"]



def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("langgraft: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.mark.slow
def test_embeddings_phase_then_lora_module(tiny_models, target_corpus, target_eval_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus), "--out", str(out),
                 "--eval-corpus", str(target_eval_corpus), "--max-steps", "5", "--embedding-steps", "2", "--save-steps", "2",
                 "--eval-steps", "2", "--learning-rate", "1e-2", "--language-module", "lora",
                 "--module-option", "language=tg", "--module-option", "rank=2", *FAST]) == 0
    assert "language module -> " in capsys.readouterr().out
    module = load_module(out / "module")
    metadata = module.metadata
    assert (metadata.kind, metadata.language, metadata.size) == ("lora", "tg", {"rank": 2, "alpha": 16})
    assert metadata.training["embedding_steps"] == 2 and metadata.training["learning_rate"] == 1e-2
    assert (out / "module" / "adapter_config.json").is_file()  # a stock PEFT adapter directory
    records = _records(out)
    assert [r["phase"] for r in records if "loss" in r] == ["embeddings"] * 2 + ["module/train"] * 3
    assert [r["step"] for r in records if "eval_bpc" in r] == [0, 2, 4, 5]  # start, every 2 steps, phase ends

    # out/ holds the base after phase 1: embeddings trained, body exactly the original's.
    original, _ = load_language_model(tiny_models["bert"])
    base, _ = load_language_model(out)
    embeddings = {n for n, p in base.named_parameters() if any(p is q for q in embedding_parameters(base))}
    before, after = dict(original.named_parameters()), dict(base.named_parameters())
    assert all(torch.equal(after[n], before[n]) != (n in embeddings) for n in after), "phase 1 trains embeddings only"
    # The module composes onto that base (same body and embeddings) and reverts exactly.
    ids = {"input_ids": torch.tensor([[2, 10, 11, 12, 3]])}
    with torch.no_grad():
        plain = base(**ids).logits
        composed = compose(base, [out / "module"])
        assert not torch.allclose(composed(**ids).logits, plain)
        torch.testing.assert_close(revert(composed, out / "module")(**ids).logits, plain, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_sft_module_resumes_after_an_interrupt_in_phase_2(tiny_models, target_corpus, tmp_path):
    """Two phases of 3 steps each; killed in phase 2, ``--resume`` gives the uninterrupted run's module and log."""

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if args.output_dir.endswith("phase2") and state.global_step == 2:
                raise KeyboardInterrupt

    argv = ["pretrain", "--model", str(tiny_models["gpt2"]), "--corpus", str(target_corpus), "--max-steps", "3",
            "--save-steps", "1", "--language-module", "sft", "--module-option", "language=tg",
            "--module-option", "k=300", *FAST]
    reference = tmp_path / "reference"
    assert main([*argv, "--out", str(reference)]) == 0
    assert not (reference / "model.safetensors").exists()  # no embeddings phase: the base is --model, not copied

    killed = tmp_path / "killed"
    run = PretrainOptions(model=str(tiny_models["gpt2"]), corpus=[str(target_corpus)], out=str(killed), max_steps=3,
                         save_steps=1, max_seq_length=32, per_device_train_batch_size=2, logging_steps=1)
    with pytest.raises(KeyboardInterrupt):
        pretrain_language_module("sft", run, language="tg", out=killed / "module", config={"k": 300},
                                 callbacks=[Interrupt()])
    assert not (killed / "module").exists()
    assert main([*argv, "--out", str(killed), "--resume"]) == 0

    expected, found = (load_file(out / "module" / "sft.safetensors") for out in (reference, killed))
    assert expected.keys() == found.keys() and all(torch.equal(expected[k], found[k]) for k in expected)
    losses = [[(r["step"], r["phase"], r["loss"]) for r in _records(out) if "loss" in r] for out in (reference, killed)]
    assert losses[0] == losses[1]
    assert [(step, phase) for step, phase, _ in losses[0]] == [(1, "module/phase1"), (2, "module/phase1"),
                                                             (3, "module/phase1"), (4, "module/phase2"),
                                                             (5, "module/phase2"), (6, "module/phase2")]


def test_module_options_are_checked_before_anything_runs(tiny_models, target_corpus, tmp_path, capsys):
    common = ["pretrain", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus), "--max-steps", "2",
              *FAST]
    cases = [
        (["--language-module", "lora", "--module-option", "language=tg", "--module-option", "rnk=4"],
         "unknown --module-option 'rnk'"),
        (["--language-module", "lora", "--module-option", "language=tg", "--module-option", "k=5"],
         "does not apply to --language-module lora"),
        (["--language-module", "madx", "--module-option", "language=tg", "--module-option", "reduction-factor=two"],
         "expected integer"),
        (["--language-module", "sft", "--module-option", "k=5"], "language=CODE"),
        (["--module-option", "rank=4"], "needs --language-module"),
    ]
    for number, (extra, message) in enumerate(cases):
        out = tmp_path / f"bad{number}"
        assert main([*common, "--out", str(out), *extra]) == 2
        assert message in _error_line(capsys.readouterr().err)
        assert not out.exists()

    # Resuming with another module kind is refused: its checkpoints would not fit.
    out = tmp_path / "lora"
    assert main([*common, "--out", str(out), "--language-module", "lora", "--module-option", "language=tg"]) == 0
    capsys.readouterr()
    assert main([*common, "--out", str(out), "--resume", "--language-module", "madx",
                 "--module-option", "language=tg"]) == 2
    assert "language_module" in _error_line(capsys.readouterr().err)


def test_module_train_language_runs_through_continued_pretraining(tiny_models, target_corpus, target_eval_corpus, tmp_path,
                                                                  capsys):
    """``module train-language`` gets the run's held-out bpc log; metadata keeps the ``TrainOptions`` fields."""
    from langgraft.adapters import TrainOptions

    out = tmp_path / "ny-madx"
    assert main(["module", "train-language", "--kind", "madx", "--model", str(tiny_models["bert"]), "--corpus",
                 str(target_corpus), "--eval-corpus", str(target_eval_corpus), "--language", "tg", "--out", str(out),
                 "--steps", "2", "--batch-size", "2", "--max-length", "512"]) == 0  # capped at the model's 128 positions
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"language module written to {out}"
    records = _records(out)
    assert [r["step"] for r in records if "eval_bpc" in r] == [0, 2] and records[-1]["phase"] == "module/train"
    assert (out / "loss_curve.png").is_file() and (out / "madx.safetensors").is_file()
    training = load_module(out).metadata.training
    assert set(training) == {f.name for f in dataclasses.fields(TrainOptions)} | {"train_seconds", "train_loss"}
    assert not (tmp_path / ".ny-madx.work").exists()
