"""`langgraft module compose --no-merge`: the composition written as ONE module of the parts' kind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from langgraft.adapt.pretrain.language_modules import train_language_module
from langgraft.adapters import TrainOptions, compose, load_composed, revert
from langgraft.adapters.compose import write_composition
from langgraft.adapters.metadata import METADATA_FILE
from langgraft.adapters.sft import sum_sparse

OPTIONS = TrainOptions(max_steps=3, per_device_train_batch_size=8, max_seq_length=32, save_steps=1000, learning_rate=5e-3,
                       logging_steps=1000)
TEXTS = ["the lord said unto the people", "water and bread"]


def _logits(model, tokenizer):
    with torch.no_grad():
        return model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits


def _stacked_logits(tiny_models, parts, kind):
    model, tokenizer = load_composed(tiny_models["bert"], [parts[f"{kind}-lang"], parts[f"{kind}-task"]])
    return _logits(model, tokenizer)


def _cli(capsys, *args: str) -> tuple[int, str]:
    from langgraft.adapt.cli import main

    capsys.readouterr()
    code = main(["module", "compose", *args])
    return code, capsys.readouterr().err


def _metadata(directory: Path) -> dict:
    return json.loads((directory / METADATA_FILE).read_text())


@pytest.mark.slow
def test_lora_composed_module_loads_with_vanilla_peft(trained_modules, tiny_models, tmp_path):
    out = write_composition(tiny_models["bert"], [trained_modules["lora-lang"], trained_modules["lora-task"]], tmp_path / "c", merge=False)
    config = json.loads((out / "adapter_config.json").read_text())
    task_config = json.loads((trained_modules["lora-task"] / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 8)  # ranks 4 + 4, scalings folded into the weights
    assert config["modules_to_save"] == task_config["modules_to_save"]
    assert config["target_modules"] == task_config["target_modules"] and config["task_type"] == "SEQ_CLS"
    meta = _metadata(out)
    assert (meta["kind"], meta["role"], meta["size"], meta["has_head"], meta["language"]) == \
        ("lora", "task", {"rank": 8, "alpha": 8}, True, "tg")
    recorded = meta["parts"]
    assert [(p["name"], p["kind"], p["role"]) for p in recorded] == \
        [("lora-lang", "lora", "language"), ("lora-task", "lora", "task")]
    assert all(p["base_fingerprint"] == meta["base_fingerprint"] and len(p["content_digest"]) == 16 for p in recorded)

    script = f"""
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from peft import PeftModel
base, tok = {str(tiny_models['bert'])!r}, AutoTokenizer.from_pretrained({str(tiny_models['bert'])!r})
inputs = tok({TEXTS!r}, return_tensors="pt", padding=True)
stacked = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, num_labels=2),
                                    {str(trained_modules['lora-lang'])!r}, adapter_name="lang")
stacked.load_adapter({str(trained_modules['lora-task'])!r}, adapter_name="task")
stacked.base_model.set_adapter(["lang", "task"])
combined = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, num_labels=2),
                                     {str(out)!r})
with torch.no_grad():
    logits = [m.eval()(**inputs).logits.tolist() for m in (stacked, combined)]
assert "langgraft" not in sys.modules
print(json.dumps(logits))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    stacked, combined = (torch.tensor(t) for t in json.loads(done.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(combined, stacked, atol=1e-5, rtol=0)
    langgraft_stacked = _stacked_logits(tiny_models, trained_modules, "lora")
    torch.testing.assert_close(combined, langgraft_stacked, atol=1e-5, rtol=0)
    task_only, tokenizer = load_composed(tiny_models["bert"], [trained_modules["lora-task"]])
    assert not torch.allclose(_logits(task_only, tokenizer), langgraft_stacked, atol=1e-6), "language module inert"
    model, tokenizer = load_composed(tiny_models["bert"], [out])  # and as a langgraft module
    torch.testing.assert_close(_logits(model, tokenizer), langgraft_stacked, atol=1e-5, rtol=0)


def test_lora_union_of_targets_pads_zero_ranks(trained_modules, tiny_models, tmp_path):
    """A language adapter on the query layers only + a task adapter on every layer: one adapter, same function."""
    from safetensors.torch import load_file, save_file

    narrow = tmp_path / "query-only"
    shutil.copytree(trained_modules["lora-lang"], narrow)
    config = json.loads((narrow / "adapter_config.json").read_text())
    config["target_modules"] = r"^(.*\.)?encoder\.layer\.\d+\.attention\.self\.query$"
    (narrow / "adapter_config.json").write_text(json.dumps(config))
    weights = load_file(str(narrow / "adapter_model.safetensors"))
    save_file({k: v for k, v in weights.items() if ".query." in k}, str(narrow / "adapter_model.safetensors"))

    model, tokenizer = load_composed(tiny_models["bert"], [narrow, trained_modules["lora-task"]])
    expected = _logits(model, tokenizer)
    out = write_composition(tiny_models["bert"], [narrow, trained_modules["lora-task"]], tmp_path / "c", merge=False)
    combined = load_file(str(out / "adapter_model.safetensors"))
    key = next(k for k in combined if k.endswith("attention.self.key.lora_A.weight"))
    assert combined[key].shape[0] == 8 and torch.count_nonzero(combined[key][4:]) == 0  # zero block for "query only"
    model, tokenizer = load_composed(tiny_models["bert"], [out])
    torch.testing.assert_close(_logits(model, tokenizer), expected, atol=1e-5, rtol=0)


def test_sum_sparse_adds_where_indices_overlap():
    first = {"w": (torch.tensor([0, 2, 5]), torch.tensor([1.0, 2.0, 3.0]), [2, 3])}
    second = {"w": (torch.tensor([3, 2]), torch.tensor([10.0, 20.0]), [2, 3]),
              "b": (torch.tensor([1]), torch.tensor([7.0]), [4])}
    total = sum_sparse([first, second])
    assert total["w"][0].tolist() == [0, 2, 3, 5] and total["w"][1].tolist() == [1.0, 22.0, 10.0, 3.0]
    assert total["b"][0].tolist() == [1] and total["b"][1].tolist() == [7.0] and total["w"][2] == [2, 3]


def test_sft_composed_module_is_the_sum_and_reverts(trained_modules, tiny_models, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    out = write_composition(tiny_models["bert"], [trained_modules["sft-lang"], trained_modules["sft-task"]], tmp_path / "c", merge=False)
    with safe_open(str(out / "sft.safetensors"), framework="pt") as handle:
        assert handle.metadata()["format"] == "langgraft-sft"
    files = [load_file(str(path / "sft.safetensors")) for path in (trained_modules["sft-lang"], trained_modules["sft-task"], out)]

    def dense(tensors):
        result = {}
        for key, indices in tensors.items():
            if key.startswith("indices/"):
                name = key[len("indices/"):]
                flat = torch.zeros(int(torch.prod(tensors[f"shape/{name}"])))
                flat[indices] = tensors[f"values/{name}"]
                result[name] = flat
        return result

    lang, task, combined = (dense(f) for f in files)
    assert all(v.dtype == torch.int64 for k, v in files[2].items() if not k.startswith("values/"))
    assert set(combined) == set(lang) | set(task)
    for name, flat in combined.items():
        torch.testing.assert_close(flat, lang.get(name, 0 * flat) + task.get(name, 0 * flat), atol=1e-7, rtol=0)
    k = sum(v.numel() for key, v in files[2].items() if key.startswith("indices/"))
    meta = _metadata(out)
    assert meta["size"] == {"k": k} and meta["touches_embeddings"] and (out / "head.safetensors").is_file()
    assert [p["name"] for p in meta["parts"]] == ["sft-lang", "sft-task"]

    expected = _stacked_logits(tiny_models, trained_modules, "sft")
    model, tokenizer = load_composed(tiny_models["bert"], [out])
    torch.testing.assert_close(_logits(model, tokenizer), expected, atol=1e-5, rtol=0)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=2)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    base = revert(compose(base, [out]), out)
    for key, value in base.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=1e-6, rtol=0)


def test_madx_composed_module_is_one_stack(trained_modules, tiny_models, tmp_path):
    from safetensors.torch import load_file

    out = write_composition(tiny_models["bert"], [trained_modules["madx-lang"], trained_modules["madx-task"]], tmp_path / "c", merge=False)
    meta = _metadata(out)
    assert [entry["role"] for entry in meta["config"]["stack"]] == ["language", "task"]
    assert meta["size"] == {"stack": [{"reduction_factor": 2, "invertible": True},
                                      {"reduction_factor": 16, "invertible": False}]}
    weights = load_file(str(out / "madx.safetensors"))
    lang, task = (load_file(str(trained_modules[f"madx-{r}"] / "madx.safetensors")) for r in ("lang", "task"))
    assert set(weights) == {f"stack.0.{k}" for k in lang} | {f"stack.1.{k}" for k in task}
    assert all(torch.equal(weights[f"stack.0.{k}"], v) for k, v in lang.items())

    expected = _stacked_logits(tiny_models, trained_modules, "madx")
    model, tokenizer = load_composed(tiny_models["bert"], [out])
    torch.testing.assert_close(_logits(model, tokenizer), expected, atol=1e-6, rtol=0)
    task_only, _ = load_composed(tiny_models["bert"], [trained_modules["madx-task"]])
    model = revert(model, out)
    model = compose(model, [trained_modules["madx-task"]])  # the base with its random head restored, then the task alone
    torch.testing.assert_close(_logits(model, tokenizer), _logits(task_only, tokenizer), atol=1e-6, rtol=0)
    again = write_composition(tiny_models["bert"], [out], tmp_path / "again", merge=False)  # a stack re-exported
    assert _metadata(again)["config"]["stack"] == meta["config"]["stack"]


def test_cli_merge_flags_and_bad_input(trained_modules, tiny_models, target_corpus, tmp_path, capsys):
    bert = str(tiny_models["bert"])
    code, err = _cli(capsys, "--base", bert, "--modules", str(trained_modules["sft-lang"]), str(trained_modules["sft-task"]),
                     "--out", str(tmp_path / "module"), "--no-merge")
    assert code == 0, err
    assert (tmp_path / "module" / "sft.safetensors").is_file() and not (tmp_path / "module" / "config.json").exists()
    for flags in ((), ("--merge",)):  # merging stays the default (the pre-existing behaviour)
        code, err = _cli(capsys, "--model", bert, "--module", str(trained_modules["sft-lang"]), "--module",
                         str(trained_modules["sft-task"]), "--out", str(tmp_path / f"merged{len(flags)}"), *flags)
        assert code == 0 and (tmp_path / f"merged{len(flags)}" / "config.json").is_file(), err

    def refused(*args: str, says: str) -> None:
        out = tmp_path / "refused"
        code, err = _cli(capsys, "--base", bert, "--out", str(out), *args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()

    refused("--modules", str(trained_modules["lora-lang"]), str(trained_modules["sft-task"]), "--no-merge", says="different kinds")
    refused("--modules", str(trained_modules["madx-lang"]), str(trained_modules["madx-task"]), says="--no-merge")  # madx cannot merge
    other = train_language_module("lora", tiny_models["gpt2"], [target_corpus], language="tg", out=tmp_path / "gpt2",
                                  config={"rank": 4}, options=OPTIONS)
    refused("--modules", str(other), str(trained_modules["lora-task"]), "--no-merge", says="different base architecture")

    from safetensors.torch import load_file, save_file

    misshapen = tmp_path / "misshapen"  # same metadata, but one adapter matrix for another layer width
    shutil.copytree(trained_modules["lora-lang"], misshapen)
    weights = load_file(str(misshapen / "adapter_model.safetensors"))
    key = next(k for k in weights if k.endswith("query.lora_A.weight"))
    weights[key] = weights[key][:, :-1].contiguous()
    save_file(weights, str(misshapen / "adapter_model.safetensors"))
    refused("--modules", str(misshapen), str(trained_modules["lora-task"]), "--no-merge", says="trained on another base")


@pytest.mark.slow
def test_composed_module_keeps_a_carried_vocabulary(trained_modules, tiny_models, target_corpus, bert_with_target_words,
                                                     tmp_path):
    """English checkpoint + (target vocabulary, target sft module, English task) written as one module."""
    language = train_language_module("sft", bert_with_target_words, [target_corpus], language="tg",
                                     out=tmp_path / "lang", config={"k": 500}, options=OPTIONS, carry_vocabulary=True)
    model, composed_tokenizer = load_composed(tiny_models["bert"], [language, trained_modules["sft-task"]])
    expected = _logits(model, composed_tokenizer)
    out = write_composition(tiny_models["bert"], [language, trained_modules["sft-task"]], tmp_path / "c", merge=False)
    assert _metadata(out)["has_vocabulary"] and (out / "vocabulary" / "embeddings.safetensors").is_file()
    model, composed_tokenizer = load_composed(tiny_models["bert"], [out])
    assert len(composed_tokenizer) == model.get_input_embeddings().num_embeddings
    assert {"ndaku", "mulira", "chizani"} <= composed_tokenizer.get_vocab().keys()
    torch.testing.assert_close(_logits(model, composed_tokenizer), expected, atol=1e-5, rtol=0)
