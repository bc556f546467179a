"""Continued pretraining on tiny models: both objectives, phases, loss, errors, stock outputs."""
from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import source_sentences

from langgraft.adapt.cli import main
from langgraft.training import is_sealed
from langgraft.adapt.pretrain.data import PackedLMCollator, PackedLMStream, position_ids_from_starts
from langgraft.lm import LM_ROWS_KEY, SelectedRowsHead, selected_rows_loss
from langgraft.adapt.pretrain.run import PretrainOptions, embedding_parameters, pretrain
from langgraft.models import load_language_model
from langgraft.models import load_tokenizer

FAST = ["--max-seq-length", "32", "--per-device-train-batch-size", "2", "--logging-steps", "1"]



def _error_line(err: str) -> str:
    """The one error line (tqdm may leave a progress bar on stderr too)."""
    lines = [line for line in err.splitlines() if line.startswith("langgraft: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("family", ["bert", "xlmr", "gpt2", "llama"])
def test_selected_rows_loss_equals_the_models_own_loss(tiny_models, target_corpus, family):
    model, objective = load_language_model(tiny_models[family])
    model.eval()
    tokenizer = load_tokenizer(tiny_models[family])
    stream = iter(PackedLMStream(tokenizer, [target_corpus], objective, 32, seed=0))
    batch = PackedLMCollator(tokenizer, objective, position_ids=False)([next(stream) for _ in range(3)])
    labels = batch.pop("labels")
    rows = batch.pop(LM_ROWS_KEY)
    reference = model(**batch, labels=labels).loss  # HF's own loss over the full vocabulary projection
    with SelectedRowsHead(model):
        outputs = model(**batch, **{LM_ROWS_KEY: rows})
    assert outputs.logits.shape == (int(rows.sum()), model.config.vocab_size)  # head ran on scored rows only
    assert selected_rows_loss(objective)(outputs, labels).item() == pytest.approx(reference.item(), rel=1e-5)


def test_packing_positions_restart_per_document(tiny_models, target_corpus):
    tokenizer = load_tokenizer(tiny_models["llama"])
    blocks = list(zip(range(4), PackedLMStream(tokenizer, [target_corpus], "clm", 32)))
    batch = PackedLMCollator(tokenizer, "clm")([block for _, block in blocks])
    assert batch["input_ids"].shape == (4, 32) and "attention_mask" not in batch  # full blocks, no padding
    starts = batch["position_ids"] == 0
    assert starts[:, 0].all() and starts[:, 1:].any()  # a block start, and documents starting inside blocks
    assert (batch["input_ids"][:, 1:][starts[:, 1:]] == tokenizer.bos_token_id).all()
    assert (batch["labels"][starts] == -100).all() and (batch["labels"][~starts] != -100).all()
    assert position_ids_from_starts(torch.tensor([[True, False, False, True, False]])).tolist() == [[0, 1, 2, 0, 1]]


def test_replay_ratio_and_determinism(tiny_models, target_corpus, source_corpus):
    tokenizer = load_tokenizer(tiny_models["bert"])
    stream = PackedLMStream(tokenizer, [target_corpus], "mlm", 32, seed=1, replay_corpus=source_corpus,
                            replay_ratio=0.25)
    documents = stream.documents()
    source = set(source_sentences(600, seed=10))
    drawn = [next(documents) for _ in range(2000)]
    assert abs(sum(d in source for d in drawn) / len(drawn) - 0.25) < 0.04
    first = [b["input_ids"] for _, b in zip(range(5), stream)]
    later = PackedLMStream(tokenizer, [target_corpus], "mlm", 32, seed=1, replay_corpus=source_corpus,
                           replay_ratio=0.25, start_block=3)
    assert all((a == b["input_ids"]).all() for a, b in zip(first[3:], later))


@pytest.fixture(scope="module")
def two_phase_runs(tiny_models, target_corpus, target_eval_corpus, tmp_path_factory) -> dict[str, Path]:
    """family -> out of a 5-step run: 2 embedding steps, then 3 full-model steps."""
    runs = {}
    for family in ("bert", "xlmr", "gpt2", "llama"):
        out = tmp_path_factory.mktemp("runs") / family
        assert main(["pretrain", "--model", str(tiny_models[family]), "--corpus", str(target_corpus),
                     "--out", str(out), "--eval-corpus", str(target_eval_corpus), "--max-steps", "5",
                     "--embedding-steps", "2", "--save-steps", "3", "--eval-steps", "2", *FAST]) == 0
        runs[family] = out
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "xlmr", "gpt2", "llama"])
def test_two_phase_run_logs_metrics_and_freezes_the_body_in_phase_1(tiny_models, two_phase_runs, family):
    out = two_phase_runs[family]
    records = _records(out)
    assert [r["step"] for r in records if "eval_bpc" in r] == [0, 2, 4, 5]
    assert [r["phase"] for r in records if "loss" in r] == ["embeddings"] * 2 + ["full"] * 3
    assert (out / "loss_curve.png").stat().st_size > 0
    before, _ = load_language_model(tiny_models[family])
    after_phase1, _ = load_language_model(out / "checkpoints" / "embeddings" / "final")
    after_phase2, _ = load_language_model(out)
    trainable = {name for name, p in after_phase1.named_parameters()
                 if any(p is q for q in embedding_parameters(after_phase1))}
    old, final = dict(before.named_parameters()), dict(after_phase2.named_parameters())
    for name, parameter in after_phase1.named_parameters():
        assert torch.equal(parameter, old[name]) != (name in trainable), name  # phase 1: embeddings only
    body = [n for n in final if n not in trainable and "norm" not in n.lower() and n.endswith("weight")]
    assert any(not torch.equal(final[n], old[n]) for n in body)  # phase 2: the body trains


@pytest.mark.slow
def test_final_models_load_with_plain_transformers(two_phase_runs, tmp_path):
    script = ("import sys, transformers as t\n"
              "for path, objective in zip(sys.argv[1::2], sys.argv[2::2]):\n"
              "    auto = t.AutoModelForMaskedLM if objective == 'mlm' else t.AutoModelForCausalLM\n"
              "    auto.from_pretrained(path); t.AutoTokenizer.from_pretrained(path)\n"
              "assert 'langgraft' not in sys.modules\nprint('ok')")
    argv = [x for family, out in two_phase_runs.items() for x in (str(out), "mlm" if family in ("bert", "xlmr") else "clm")]
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_module_phase_trains_only_the_module(tiny_models, target_corpus, tmp_path):
    from peft import LoraConfig, get_peft_model

    def lora_phase(model, fit):
        wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"]))
        stats = fit(wrapped, 0, [], "module")
        assert set(stats) == {"train_seconds", "train_loss"}
        return wrapped

    out = tmp_path / "module"
    config = PretrainOptions(model=str(tiny_models["bert"]), corpus=[str(target_corpus)], out=str(out), max_steps=4,
                            embedding_steps=2, learning_rate=1e-2, per_device_train_batch_size=2, max_seq_length=32,
                            save_steps=10)
    result = pretrain(config, language_module=lora_phase)
    lora_b = [p for n, p in result.module.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # LoRA B starts at zero: it trained
    final = load_file(out / "model.safetensors")
    phase1 = load_file(out / "checkpoints" / "embeddings" / "final" / "model.safetensors")
    assert final.keys() == phase1.keys() and all(torch.equal(final[k], phase1[k]) for k in final)


def _headless(tiny_models, tmp_path) -> Path:
    from transformers import BertModel

    path = tmp_path / "headless"
    BertModel.from_pretrained(tiny_models["bert"]).save_pretrained(path)
    load_tokenizer(tiny_models["bert"]).save_pretrained(path)
    return path


def test_bad_input_is_one_line_and_exit_2(tiny_models, target_corpus, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("only a few words\n", encoding="utf-8")
    common = ["--max-steps", "2", "--save-steps", "1", *FAST]
    cases = [
        (["--model", str(_headless(tiny_models, tmp_path)), "--corpus", str(target_corpus)], "head recover"),
        (["--model", str(tiny_models["gpt2"]), "--corpus", str(short)], "fewer than one sequence"),
        (["--model", str(tiny_models["gpt2"]), "--corpus", str(tmp_path / "missing.txt")], "not found"),
    ]
    for number, (extra, message) in enumerate(cases):
        out = tmp_path / f"bad{number}"
        assert main(["pretrain", *extra, "--out", str(out), *common]) == 2
        assert message in _error_line(capsys.readouterr().err)
        assert not any(out.glob("checkpoints/*/checkpoint-*"))

    out = tmp_path / "run"
    assert main(["pretrain", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus), "--out", str(out),
                 *common]) == 0
    capsys.readouterr()
    assert main(["pretrain", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus), "--out", str(out),
                 *common]) == 2
    assert "--resume" in _error_line(capsys.readouterr().err)
    assert main(["pretrain", "--model", str(tiny_models["xlmr"]), "--corpus", str(target_corpus), "--out", str(out),
                 "--resume", *common]) == 2
    assert "another model" in _error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_full_disk_leaves_no_broken_checkpoint_and_resumes(tiny_models, target_corpus, tmp_path, monkeypatch, capsys):
    real_save = torch.save

    def save_until_disk_full(obj, path, *args, **kwargs):
        if "checkpoint-4" in str(path) and str(path).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_disk_full)
    out = tmp_path / "full"
    argv = ["pretrain", "--model", str(tiny_models["gpt2"]), "--corpus", str(target_corpus), "--out", str(out),
            "--max-steps", "6", "--save-steps", "2", *FAST]
    assert main(argv) == 2
    err = _error_line(capsys.readouterr().err)
    assert "disk full" in err and "--resume" in err
    folders = sorted((out / "checkpoints" / "full").glob("checkpoint-*"))
    assert [f.name for f in folders] == ["checkpoint-2"] and is_sealed(folders[0])
    monkeypatch.setattr(torch, "save", real_save)
    assert main([*argv, "--resume"]) == 0
    assert [r["step"] for r in _records(out)] == [1, 2, 3, 4, 5, 6]
