"""Language and task modules (lora, sft, madx): train, save, load, compose, revert, errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from langgraft.adapt.pretrain.language_modules import train_language_module
from langgraft.adapters import TrainOptions, compose, load_composed, load_module, revert, \
    train_task_module
from langgraft.adapters.metadata import METADATA_FILE
from langgraft.errors import UserError

OPTIONS = TrainOptions(max_steps=3, per_device_train_batch_size=8, max_seq_length=32, save_steps=1000, learning_rate=5e-3,
                       logging_steps=1000)


def _logits(model, tokenizer, texts=("the lord said unto the people", "water and bread")):
    with torch.no_grad():
        return model(**tokenizer(list(texts), return_tensors="pt", padding=True)).logits


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lora", "sft", "madx"])
def test_compose_and_revert_exact(kind, trained_modules, tiny_models):
    base, tokenizer = load_composed(tiny_models["bert"], [trained_modules[f"{kind}-task"]])
    only_task = _logits(base, tokenizer)
    model = compose(base, [trained_modules[f"{kind}-lang"]])
    both = _logits(model, tokenizer)
    assert not torch.allclose(both, only_task, atol=1e-6), "the language module changed nothing"
    model = revert(model, trained_modules[f"{kind}-lang"])
    torch.testing.assert_close(_logits(model, tokenizer), only_task, atol=1e-5, rtol=0)


def test_sft_file_format_and_exact_reversion(trained_modules, tiny_models):
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    sparse = load_file(str(trained_modules["sft-lang"] / "sft.safetensors"))
    indices = [v for k, v in sparse.items() if k.startswith("indices/")]
    assert all(t.dtype == torch.int64 for t in indices)
    assert sum(t.numel() for t in indices) == 2000
    meta = json.loads((trained_modules["sft-lang"] / METADATA_FILE).read_text())
    assert meta["size"] == {"k": 2000} and meta["kind"] == "sft" and meta["language"] == "tg"
    assert meta["touches_embeddings"] is True  # embeddings are maskable for language modules

    model = AutoModelForMaskedLM.from_pretrained(tiny_models["bert"])
    before = _state(model)
    model = compose(model, [trained_modules["sft-lang"]])
    changed = sum(int((before[k] != v).sum()) for k, v in model.named_parameters())  # tied weights once
    assert 0 < changed <= 2000
    model = revert(model, trained_modules["sft-lang"])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_lora_loads_with_vanilla_peft(trained_modules, tiny_models):
    model, tokenizer = load_composed(tiny_models["bert"], [trained_modules["lora-lang"], trained_modules["lora-task"]])
    expected = _logits(model, tokenizer).tolist()
    script = f"""
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from peft import PeftModel
base = AutoModelForSequenceClassification.from_pretrained({str(tiny_models['bert'])!r}, num_labels=2)
model = PeftModel.from_pretrained(base, {str(trained_modules['lora-lang'])!r}, adapter_name="lang")
model.load_adapter({str(trained_modules['lora-task'])!r}, adapter_name="task")
model.base_model.set_adapter(["lang", "task"])
model.eval()
tok = AutoTokenizer.from_pretrained({str(tiny_models['bert'])!r})
with torch.no_grad():
    out = model(**tok(["the lord said unto the people", "water and bread"], return_tensors="pt", padding=True)).logits
assert "langgraft" not in sys.modules
print(json.dumps(out.tolist()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    torch.testing.assert_close(torch.tensor(json.loads(done.stdout.strip().splitlines()[-1])),
                               torch.tensor(expected), atol=1e-5, rtol=0)


def test_madx_clm_language_module_with_invertible_adapter(tiny_models, target_corpus, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = train_language_module("madx", tiny_models["gpt2"], [target_corpus], language="tg", out=tmp_path / "m",
                                options=OPTIONS)
    assert json.loads((out / METADATA_FILE).read_text())["size"] == {"reduction_factor": 2, "invertible": True}
    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    ids = tokenizer(["ndaku mulira"], return_tensors="pt")
    with torch.no_grad():
        before = model(**ids).logits
        model = compose(model, [out])
        during = model(**ids).logits
        model = revert(model, out)
        after = model(**ids).logits
    assert not torch.allclose(before, during, atol=1e-6)
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert not any("madx" in name for name in model.state_dict())


def test_invertible_coupling_inverts():
    """inverse(forward(x)) == x up to rounding: an additive coupling recomputes F and G on (nearly) the same inputs.

    Computed in float64 with seeded weights. Rounding bound (eps = float64 epsilon): x2' = (x2 + G(y1)) - G(y1)
    is off by at most 2 eps |y2| (G sees the same y1 both times); x1' = y1 - F(x2') by 2 eps |y1|, plus F's
    Lipschitz constant (its layers' spectral norms multiplied; ReLU is 1-Lipschitz) times the error of x2',
    plus F's own rounding at two different inputs, 2 eps |F(x2)| per layer (two layers).
    """
    from langgraft.adapters.madx import _torch_modules

    _, coupling_class = _torch_modules()
    torch.manual_seed(0)
    coupling = coupling_class(33, 2, "relu").double()
    for parameter in coupling.parameters():
        torch.nn.init.normal_(parameter)
    x = torch.randn(4, 5, 33, dtype=torch.float64)
    coupling.requires_grad_(False)
    y = coupling(x)
    eps = torch.finfo(torch.float64).eps
    first, _, last = coupling.f
    lipschitz_f = torch.linalg.matrix_norm(first.weight, 2) * torch.linalg.matrix_norm(last.weight, 2)
    y1, y2 = y[..., :coupling.split].abs().max(), y[..., coupling.split:].abs().max()
    f_scale = coupling.f(x[..., coupling.split:]).abs().max()
    error_x2 = 2 * eps * y2
    tolerance = float(2 * eps * y1 + lipschitz_f * error_x2 + 2 * 2 * eps * f_scale)
    error = (coupling.inverse(y) - x).abs().max().item()
    assert error <= tolerance, (error, tolerance)


@pytest.mark.slow
def test_token_classification_task_module(tiny_models, labelled, tmp_path):
    out = train_task_module("lora", tiny_models["bert"], labelled["iob"], task="token-cls", out=tmp_path / "ner",
                            config={"rank": 2}, options=OPTIONS)
    meta = load_module(out).metadata
    assert meta.labels == ["B-K", "O"] and meta.task == "token-cls" and meta.has_head
    model, tokenizer = load_composed(tiny_models["bert"], [out])
    assert _logits(model, tokenizer).shape[-1] == 2


@pytest.mark.slow
def test_a_lora_task_module_on_a_roberta_classifier_loads_back(tiny_models, labelled, tmp_path):
    """RoBERTa's head (classifier.dense, classifier.out_proj) sits inside ``classifier``, which PEFT's
    SEQ_CLS task type saves itself: listing both made an adapter that neither langgraft nor PEFT could load."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = train_task_module("lora", tiny_models["xlmr"], labelled["seq"], task="seq-cls", out=tmp_path / "task",
                                config={"rank": 2}, options=OPTIONS)
        assert json.loads((out / "adapter_config.json").read_text())["modules_to_save"] == ["classifier", "score"]
        model, tokenizer = load_composed(tiny_models["xlmr"], [out])
    deprecations = [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not deprecations  # PEFT's read of transformers' is_gradient_checkpointing is filtered where we call it
    assert _logits(model, tokenizer).shape[-1] == 2


@pytest.mark.slow
def test_sft_on_clm_is_deterministic_and_k_too_large(tiny_models, target_corpus, tmp_path):
    from safetensors.torch import load_file

    runs = [train_language_module("sft", tiny_models["gpt2"], [target_corpus], language="tg", out=tmp_path / f"r{i}",
                                  config={"k": 300}, options=OPTIONS) for i in range(2)]
    first, second = (load_file(str(run / "sft.safetensors")) for run in runs)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert any(v.abs().sum() > 0 for k, v in first.items() if k.startswith("values/"))
    with pytest.raises(UserError, match="maskable parameters"):
        train_language_module("sft", tiny_models["gpt2"], [target_corpus], language="tg", out=tmp_path / "big",
                              config={"k": 10**9}, options=OPTIONS)
    assert not (tmp_path / "big").exists()


def _cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """Run ``langgraft module ...`` in-process (the same code path as the console script)."""
    from langgraft.adapt.cli import main

    capsys.readouterr()
    code = main(["module", *args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_cli_errors_leave_base_untouched(trained_modules, tiny_models, tmp_path, capsys):
    # Module for another base model.
    done = _cli(capsys, "compose", "--model", str(tiny_models["gpt2"]), "--module", str(trained_modules["sft-lang"]),
                "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "different base architecture" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    # Corrupted sparse file: an index out of range.
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(trained_modules["sft-lang"], broken)
    tensors = load_file(str(broken / "sft.safetensors"))
    key = next(k for k in tensors if k.startswith("indices/"))
    tensors[key][0] = 10**9
    save_file(tensors, str(broken / "sft.safetensors"))
    done = _cli(capsys, "compose", "--model", str(tiny_models["bert"]), "--module", str(broken), "--out", str(tmp_path / "y"))
    assert done.returncode == 2 and "index out of range" in done.stderr and not (tmp_path / "y").exists()
    # A task module without its head.
    headless = tmp_path / "headless"
    shutil.copytree(trained_modules["madx-task"], headless)
    (headless / "head.safetensors").unlink()
    with pytest.raises(UserError, match="head"):
        load_composed(tiny_models["bert"], [headless])
    # Overlapping LoRA targets whose updates do not add (DoRA) next to an applied LoRA module.
    dora = tmp_path / "dora"
    shutil.copytree(trained_modules["lora-task"], dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    composed, _ = load_composed(tiny_models["bert"], [trained_modules["lora-lang"]])
    with pytest.raises(UserError, match="DoRA"):
        compose(composed, [dora])
    # Other weights of the same architecture.
    from transformers import AutoModelForMaskedLM

    other = AutoModelForMaskedLM.from_pretrained(tiny_models["bert"])
    with torch.no_grad():
        other.bert.encoder.layer[0].output.dense.weight.add_(1.0)
    before = _state(other)
    with pytest.raises(UserError, match="other base weights"):
        compose(other, [trained_modules["sft-lang"]])
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())


@pytest.mark.slow
def test_cli_train_info_compose_stock_checkpoint(tiny_models, labelled, tmp_path, capsys):
    done = _cli(capsys, "train-task", "--kind", "sft", "--model", str(tiny_models["bert"]), "--train", str(labelled["seq"]),
                "--task", "seq-cls", "--out", str(tmp_path / "task"), "--steps", "2", "--batch-size", "8",
                "--max-length", "32", "--k", "500")
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(_cli(capsys, "info", str(tmp_path / "task")).stdout)
    assert info["labels"] == ["holy", "plain"] and info["size"] == {"k": 500} and info["touches_embeddings"] is False
    done = _cli(capsys, "compose", "--model", str(tiny_models["bert"]), "--module", str(tmp_path / "task"),
                "--out", str(tmp_path / "merged"))
    assert done.returncode == 0, done.stderr[-2000:]
    script = ("import sys; from transformers import AutoModelForSequenceClassification as A; "
              f"m = A.from_pretrained({str(tmp_path / 'merged')!r}); "
              "assert 'langgraft' not in sys.modules; print(m.config.id2label[0], m.num_labels)")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert loaded.stdout.split() == ["holy", "2"], loaded.stderr[-2000:]
    done = _cli(capsys, "train-language", "--kind", "lora", "--k", "5", "--model", str(tiny_models["bert"]), "--corpus",
                str(labelled["seq"]), "--language", "en", "--out", str(tmp_path / "bad"))
    assert done.returncode == 2 and "does not apply" in done.stderr


@pytest.mark.slow
def test_interrupted_training_resumes(tiny_models, target_corpus, tmp_path):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    options = TrainOptions(max_steps=5, per_device_train_batch_size=4, max_seq_length=32, save_steps=1, learning_rate=5e-3)
    whole = train_language_module("madx", tiny_models["gpt2"], [target_corpus], language="tg", out=tmp_path / "whole",
                                  options=options)
    with pytest.raises(KeyboardInterrupt):
        train_language_module("madx", tiny_models["gpt2"], [target_corpus], language="tg", out=tmp_path / "cut",
                              options=options, callbacks=[Interrupt()])
    assert not (tmp_path / "cut").exists()
    assert any((tmp_path / ".cut.work" / "checkpoints" / "module" / "train").glob("checkpoint-*"))
    resumed = train_language_module("madx", tiny_models["gpt2"], [target_corpus], language="tg", out=tmp_path / "cut",
                                    options=options)
    expected, found = load_file(str(whole / "madx.safetensors")), load_file(str(resumed / "madx.safetensors"))
    assert all(torch.equal(expected[k], found[k]) for k in expected)
    assert not (tmp_path / ".cut.work").exists()


@pytest.mark.slow
def test_language_module_carries_its_vocabulary(tiny_models, trained_modules, target_corpus, bert_with_target_words, tmp_path):
    """English body + target embeddings + target module + English task module, from the English checkpoint."""
    language = train_language_module("sft", bert_with_target_words, [target_corpus], language="tg",
                                     out=tmp_path / "lang", config={"k": 500}, options=OPTIONS, carry_vocabulary=True)
    assert load_module(language).metadata.has_vocabulary
    model, composed_tokenizer = load_composed(tiny_models["bert"], [language, trained_modules["sft-task"]])
    assert len(composed_tokenizer) == model.get_input_embeddings().num_embeddings
    assert {"ndaku", "mulira", "chizani"} <= composed_tokenizer.get_vocab().keys()
    with torch.no_grad():
        assert model(**composed_tokenizer(["ndaku mulira"], return_tensors="pt")).logits.shape == (1, 2)
    model = revert(model, language)
    assert model.get_input_embeddings().num_embeddings == model.config.vocab_size < len(composed_tokenizer)
