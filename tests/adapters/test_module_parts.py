"""A composed module records its parts (names, roles, sizes, content digests); metadata written
before parts existed still loads, and a corrupted parts field is refused in one line."""
from __future__ import annotations

import json

import pytest

from langgraft.adapters import load_module
from langgraft.adapters.metadata import METADATA_FILE
from langgraft.errors import UserError


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
