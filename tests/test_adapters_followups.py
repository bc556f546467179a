"""Module kinds' declared ``combine``, the package's public API, composed modules' ``parts``, LoRA revert of 3+ adapters."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from tiny import write_labelled_tsv

from langgraft.adapt.language_modules import train_language_module
from langgraft.adapters import TrainOptions, compose, load_module, revert, train_task_module
from langgraft.adapters.metadata import METADATA_FILE
from langgraft.adapters.tasks import load_task_model
from langgraft.errors import UserError

OPTIONS = TrainOptions(max_steps=2, per_device_train_batch_size=8, max_length=32, save_steps=1000, learning_rate=5e-3,
                       logging_steps=1000)
TEXTS = ["the lord said unto the people", "water and bread"]
LABELS = ["holy", "plain"]


@pytest.fixture(scope="module")
def lora_parts(tiny_models, target_corpus, tmp_path_factory) -> dict[str, Path]:
    """Two bert LoRA language modules (different seeds and ranks) and a LoRA task module with its head."""
    root = tmp_path_factory.mktemp("lora_parts")
    train = root / "train.tsv"
    write_labelled_tsv(train, 32, labels=tuple(LABELS))
    parts = {}
    for name, rank, seed in (("lang-a", 4, 0), ("lang-b", 2, 1)):
        parts[name] = train_language_module("lora", tiny_models["bert"], [target_corpus], language=name[-1],
                                            out=root / name, config={"rank": rank},
                                            options=dataclasses.replace(OPTIONS, seed=seed))
    parts["task"] = train_task_module("lora", tiny_models["bert"], train, task="seq-cls", out=root / "task",
                                      config={"rank": 4}, options=OPTIONS, labels=LABELS)
    return parts


def _base(tiny_models):
    model, _ = load_task_model(tiny_models["bert"], "seq-cls", LABELS)  # seeded head: the same on every load
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


def test_composed_module_lists_its_parts(lora_parts, tiny_models, tmp_path, capsys):
    from langgraft.adapt.cli import main
    from langgraft.adapters import export_module, load_composed, write_composition

    out = write_composition(tiny_models["bert"], list(lora_parts.values()), tmp_path / "combined", merge=False)
    parts = load_module(out).metadata.parts
    assert [(p["name"], p["role"], p["size"]["rank"]) for p in parts] == \
        [("lang-a", "language", 4), ("lang-b", "language", 2), ("task", "task", 4)]
    assert "composed_from" not in load_module(out).metadata.training
    capsys.readouterr()
    assert main(["module", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [p["content_digest"] for p in info["parts"]] == [p["content_digest"] for p in parts]
    assert len({p["content_digest"] for p in parts}) == 3

    model, tokenizer = load_composed(tiny_models["bert"], list(lora_parts.values()))
    again = export_module(model, tokenizer, tmp_path / "again")  # the same module from the API directly
    assert [p["name"] for p in load_module(again).metadata.parts] == ["lang-a", "lang-b", "task"]
    assert json.loads((again / "adapter_config.json").read_text())["r"] == 10
    assert load_module(lora_parts["task"]).metadata.parts == []  # a trained module has no parts


def test_metadata_without_parts_still_loads_and_bad_parts_are_refused(lora_parts, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(lora_parts["lang-a"], old)
    data = json.loads((old / METADATA_FILE).read_text())
    assert data.pop("parts") == []
    (old / METADATA_FILE).write_text(json.dumps(data))  # written before the field existed
    assert load_module(old).metadata.parts == []

    data["parts"] = "lang-a"
    (old / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError, match="corrupted module metadata"):
        load_module(old)


def test_kinds_declare_combine_and_the_default_refuses():
    from langgraft.adapters import MODULE_KINDS, ModuleKind

    assert all(kind.combine is not ModuleKind.combine for kind in MODULE_KINDS.values())

    class Plain(ModuleKind):
        name = "plain"
        train = save = apply = revert = None  # type: ignore[assignment]

    with pytest.raises(UserError, match="plain modules cannot be combined") as raised:
        Plain().combine(None, [], Path("unused"))
    assert "\n" not in str(raised.value)


def test_a_kind_name_registered_twice_is_refused():
    from langgraft.adapters import MODULE_KINDS, register_kind
    from langgraft.adapters.lora import LoraKind

    before = dict(MODULE_KINDS)

    class AnotherLora(LoraKind):
        """A second kind under a taken name."""

    with pytest.raises(ValueError, match="'lora' is registered twice"):
        register_kind(AnotherLora)
    assert MODULE_KINDS == before


def test_lora_task_first_then_language_reverts_to_the_base(lora_parts, tiny_models):
    """A language module composed after the task module (the adapters are reloaded, headless first) reverts exactly."""
    base = _base(tiny_models)
    base_logits = _logits(base, tiny_models)
    model = compose(compose(base, [lora_parts["task"]]), [lora_parts["lang-a"]])
    expected = _logits(compose(_base(tiny_models), [lora_parts["lang-a"], lora_parts["task"]]), tiny_models)
    torch.testing.assert_close(_logits(model, tiny_models), expected, atol=1e-5, rtol=0)
    model = revert(revert(model, lora_parts["task"]), lora_parts["lang-a"])
    assert torch.equal(_logits(model, tiny_models), base_logits)
