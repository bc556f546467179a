"""Head recovery: a headless encoder gets a trained MLM head with its body untouched."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from langgraft.adapt.cli import main
from langgraft.adapt.pretrain.head import HEAD_SUMMARY_FILE


@pytest.mark.slow
def test_recover_head_improves_mlm_loss_and_keeps_body(tiny_models, source_corpus, tmp_path, capsys):
    headless = tmp_path / "headless"
    AutoModel.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    out = tmp_path / "recovered"
    assert main(["head", "recover", "--model", str(headless), "--corpus", str(source_corpus), "--out", str(out),
                 "--max-steps", "25", "--batch-size", "16", "--learning-rate", "3e-3"]) == 0
    summary = json.loads((out / HEAD_SUMMARY_FILE).read_text())
    assert summary["held_out_mlm_loss_after"] < summary["held_out_mlm_loss_before"]
    assert all(not name.startswith("bert.") for name in summary["trainable_parameters"])

    recovered, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    body = AutoModel.from_pretrained(headless)
    for name, tensor in body.state_dict().items():
        if not name.startswith("pooler"):
            assert torch.equal(recovered.bert.state_dict()[name], tensor), name
    head = recovered.get_output_embeddings()
    assert head.weight.data_ptr() == recovered.get_input_embeddings().weight.data_ptr()  # tied as configured


def test_recover_head_bad_input(tiny_models, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["head", "recover", "--model", str(tiny_models["bert"]), "--corpus", str(empty),
                 "--out", str(out)]) == 2
    assert main(["head", "recover", "--model", str(tiny_models["gpt2"]), "--corpus", str(empty),
                 "--out", str(out)]) == 2
    assert not out.exists()


def test_interrupted_recovery_resumes(tiny_models, source_corpus, tmp_path):
    from transformers import TrainerCallback

    from langgraft.adapt.pretrain.head import checkpoint_dir, recover_head

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 7:
                raise KeyboardInterrupt

    out = tmp_path / "mlm"
    options = dict(max_steps=10, batch_size=8, save_steps=5)
    try:
        recover_head(tiny_models["bert"], [source_corpus], out, callbacks=[Interrupt()], **options)
    except KeyboardInterrupt:
        pass
    assert not out.exists() and (checkpoint_dir(out) / "checkpoint-5").is_dir()
    summary = recover_head(tiny_models["bert"], [source_corpus], out, **options)
    assert summary["resumed_from"].endswith("checkpoint-5")
    assert out.is_dir() and not checkpoint_dir(out).exists()


@pytest.mark.slow
def test_body_steps_train_the_whole_model_after_the_head(tiny_models, source_corpus, tmp_path, capsys):
    """``--body-steps``: after the head phase the whole model trains on the source text (held-out bpc falls)."""
    headless = tmp_path / "headless"
    AutoModel.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    held_out = tmp_path / "dev.txt"
    held_out.write_text("\n".join(source_corpus.read_text().splitlines()[:40]) + "\n")
    out = tmp_path / "refreshed"
    assert main(["head", "recover", "--model", str(headless), "--corpus", str(source_corpus), "--out", str(out),
                 "--max-steps", "10", "--batch-size", "16", "--learning-rate", "3e-3", "--max-length", "32",
                 "--body-steps", "30", "--body-learning-rate", "3e-3", "--eval-corpus", str(held_out),
                 "--save-steps", "15"]) == 0
    assert "body trained 30 steps" in capsys.readouterr().out
    body = json.loads((out / HEAD_SUMMARY_FILE).read_text())["body"]
    assert body["steps"] == 30 and body["eval_bpc_after"] < body["eval_bpc_before"], body
    refreshed = AutoModelForMaskedLM.from_pretrained(out)  # a stock checkpoint, body changed
    original = AutoModel.from_pretrained(headless)
    name = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(refreshed.bert.state_dict()[name], original.state_dict()[name])
    assert not list(tmp_path.glob(".refreshed.head-checkpoints"))  # checkpoints removed once out is written


def test_body_steps_bad_input(tiny_models, source_corpus, tmp_path):
    out = tmp_path / "out"
    assert main(["head", "recover", "--model", str(tiny_models["bert"]), "--corpus", str(source_corpus),
                 "--out", str(out), "--body-steps", "-1"]) == 2
    assert main(["head", "recover", "--model", str(tiny_models["bert"]), "--corpus", str(source_corpus),
                 "--out", str(out), "--body-steps", "5", "--eval-corpus", str(tmp_path / "missing.txt")]) == 2
    assert not out.exists()
