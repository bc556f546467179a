"""LoRA stacks of several modules (one task head in PEFT's modules_to_save): reverting any one of
them, in any order, gives back exactly the model without it."""
from __future__ import annotations

import pytest
import torch
from conftest import TASK_LABELS

from langgraft.adapters import compose, revert
from langgraft.adapters.tasks import load_task_model

TEXTS = ["the lord said unto the people", "water and bread"]


def _base(tiny_models):
    model, _ = load_task_model(tiny_models["bert"], "seq-cls", list(TASK_LABELS))  # seeded head: same on every load
    return model.eval()


def _logits(model, tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    with torch.no_grad():
        return model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits


@pytest.mark.parametrize("removed", ["task", "lang-a"])
def test_lora_revert_one_of_three_then_all(removed, lora_parts, tiny_models):
    """Three LoRA adapters active (one with a head in modules_to_save): revert one, then the rest."""
    base = _base(tiny_models)
    base_logits = _logits(base, tiny_models)
    model = compose(base, list(lora_parts.values()))
    all_three = _logits(model, tiny_models)
    remaining = [path for name, path in lora_parts.items() if name != removed]
    expected = _logits(compose(_base(tiny_models), remaining), tiny_models)
    assert not torch.allclose(all_three, expected, atol=1e-6), f"{removed} changed nothing"

    model = revert(model, lora_parts[removed])
    torch.testing.assert_close(_logits(model, tiny_models), expected, atol=1e-5, rtol=0)
    for path in remaining:
        model = revert(model, path)
    assert torch.equal(_logits(model, tiny_models), base_logits)
    assert not any("lora_" in name or "modules_to_save" in name for name, _ in model.named_parameters())


def test_lora_task_first_then_language_reverts_to_the_base(lora_parts, tiny_models):
    """A language module composed after the task module (the adapters are reloaded, headless first) reverts exactly."""
    base = _base(tiny_models)
    base_logits = _logits(base, tiny_models)
    model = compose(compose(base, [lora_parts["task"]]), [lora_parts["lang-a"]])
    expected = _logits(compose(_base(tiny_models), [lora_parts["lang-a"], lora_parts["task"]]), tiny_models)
    torch.testing.assert_close(_logits(model, tiny_models), expected, atol=1e-5, rtol=0)
    model = revert(revert(model, lora_parts["task"]), lora_parts["lang-a"])
    assert torch.equal(_logits(model, tiny_models), base_logits)
