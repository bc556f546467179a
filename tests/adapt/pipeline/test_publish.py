"""Publishing a finished run: a hub-ready folder that stock transformers/PEFT load without langgraft."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pipeline_tiny import tiny_pipeline

from langgraft import Pipeline, UserError
from langgraft.adapt.pipeline.publish import publish

pytestmark = pytest.mark.slow  # every test here runs a whole pipeline

LOAD_WITHOUT_LANGGRAFT = r"""
import hashlib, json, pathlib, sys
import yaml
import transformers
from peft import PeftModel

folder, auto_class, module = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
model = getattr(transformers, auto_class).from_pretrained(folder)
logits = model(**tokenizer("ndaku mwana wako", return_tensors="pt")).logits
assert logits.shape[-1] == len(tokenizer), (logits.shape, len(tokenizer))
if module:
    composed = PeftModel.from_pretrained(model, folder / "modules" / module[0])
    composed(**tokenizer("ndaku mwana wako", return_tensors="pt"))
manifest = json.loads((folder / "manifest.json").read_text())["files"]
on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"}
assert set(manifest) == on_disk, set(manifest) ^ on_disk
for name, digest in manifest.items():
    assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
card = (folder / "README.md").read_text()
meta = yaml.safe_load(card.split("---")[1])
assert meta["language"] == ["xx"] and meta["library_name"] == "transformers" and "langgraft" in meta["tags"]
metrics = {m["type"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
assert "bpc" in metrics, metrics
assert not any(name.startswith("langgraft") for name in sys.modules)
print("loaded", len(tokenizer))
"""


def task_files(tmp_path):
    """A toy labelled task: source train sentences, target test sentences (labels by a surface rule)."""
    from tiny import source_sentences, target_sentences

    train, test = tmp_path / "task-train.jsonl", tmp_path / "task-test.jsonl"
    train.write_text("".join(json.dumps({"text": s, "label": "king" if "king" in s else "other"}) + "\n"
                             for s in source_sentences(80, seed=3)))
    test.write_text("".join(json.dumps({"text": s, "label": "king" if "nd" in s else "other"}) + "\n"
                            for s in target_sentences(40, seed=4)))
    return str(train), str(test)


@pytest.fixture(scope="module")
def run_dir(tiny_models, source_corpus, target_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("publish")
    train, test = task_files(out)
    config = tiny_pipeline(
        tiny_models["bert"], source_corpus, target_corpus, out, publish={"out": None}, pretrain=None,
        init={"method": "fvt"},
        modules=[{"name": "xx-lora", "role": "language", "kind": "lora", "max_steps": 2, "batch_size": 4,
                  "max_seq_length": 32, "options": {"rank": 4}},
                 {"name": "toy-lora", "role": "task", "kind": "lora", "task": "toy", "max_steps": 2,
                  "batch_size": 4, "max_seq_length": 32}],
        evaluation={"max_documents": 20, "tasks": [{"name": "toy", "train": train, "test": test}]},
    )
    pipeline = Pipeline.from_dict(config, base_dir=out)
    pipeline.run()
    return pipeline.run_dir


def load_without_langgraft(folder, auto_class: str, *module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_LANGGRAFT, str(folder), auto_class, *module],
                          capture_output=True, text=True, env=env, cwd=folder.parent)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_published_folder_loads_with_stock_transformers_and_peft(run_dir, tmp_path):
    (folder,) = publish(run_dir, tmp_path / "hub")
    assert (folder / "modules" / "xx-lora" / "adapter_config.json").is_file()
    assert (folder / "modules" / "toy-lora").is_dir()
    load_without_langgraft(folder, "AutoModelForMaskedLM", "xx-lora")
    card = (folder / "README.md").read_text()
    assert "| toy | macro_f1 |" in card and "| bpc | bpc |" in card


def test_existing_publish_folder_is_never_overwritten(run_dir, tmp_path):
    target = tmp_path / "hub"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        publish(run_dir, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    done = subprocess.run([sys.executable, "-m", "langgraft", "publish", str(run_dir), "--out", str(target)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "already exists" in done.stderr


def test_not_a_run_folder(tmp_path):
    with pytest.raises(UserError, match="not a langgraft run folder"):
        publish(tmp_path, tmp_path / "out")


def test_push_offline_fails_with_one_line(run_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "langgraft", "publish", str(run_dir), "--out", str(tmp_path / "hub"),
                           "--push", "someone/model"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot push" in done.stderr and "someone/model" in done.stderr
    assert (tmp_path / "hub" / "manifest.json").is_file()  # the local folder is complete


@pytest.mark.slow
def test_a_decoder_run_publishes_a_causal_lm(tiny_models, source_corpus, target_corpus, tmp_path):
    config = tiny_pipeline(tiny_models["gpt2"], source_corpus, target_corpus, tmp_path, tokenizer={"vocab_size": 400},
                           init={"method": "fvt"}, publish={"out": str(tmp_path / "hub")},
                           pretrain={"max_steps": 2, "embedding_steps": 1, "per_device_train_batch_size": 2,
                                     "max_seq_length": 32, "save_steps": 1, "eval_steps": 2, "eval_documents": 10})
    Pipeline.from_dict(config, base_dir=tmp_path).run()
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "continued pretraining" in card
    load_without_langgraft(tmp_path / "hub", "AutoModelForCausalLM")
