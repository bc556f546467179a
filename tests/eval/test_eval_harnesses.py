"""lm-evaluation-harness and MTEB on tiny models with local tasks (nothing downloads), and seed sets.

Each harness score is checked against an independent computation: lm-eval's multiple-choice
accuracy against log-likelihoods computed here from the model, MTEB's bitext-mining accuracy
against langgraft's own retrieval top-1 on the same files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from langgraft.adapt.cli import main
from langgraft.eval.cli import format_metrics
from tiny import build_source_model, source_sentences, target_sentences


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("harness_models")
    return {family: build_source_model(family, root / family) for family in ("gpt2", "bert")}


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("langgraft: error:")
    return err


def _choice_loglikelihoods(model_dir: Path, docs: list[dict]) -> np.ndarray:
    """Sum of log p(" " + choice | query) per (doc, choice), the way lm-eval's loglikelihood scores a choice."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    scores = np.zeros((len(docs), len(docs[0]["choices"])))
    with torch.inference_mode():
        for row, doc in enumerate(docs):
            context = tokenizer(doc["query"], add_special_tokens=False)["input_ids"]
            for column, choice in enumerate(doc["choices"]):
                whole = tokenizer(doc["query"] + " " + choice, add_special_tokens=False)["input_ids"]
                logits = model(torch.tensor([whole[:-1]])).logits[0].log_softmax(-1)
                targets = torch.tensor(whole[len(context):])
                scores[row, column] = logits[len(context) - 1:].gather(-1, targets[:, None]).sum().item()
    return scores


@pytest.mark.slow
def test_lm_eval_local_task_matches_loglikelihoods_computed_here(models, tmp_path, capsys):
    sentences = source_sentences(24, seed=3)
    docs = [{"query": " ".join(s.split()[:2]), "choices": [s, sentences[(i + 5) % 24], sentences[(i + 11) % 24]],
             "gold": i % 3} for i, s in enumerate(sentences)]
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = tasks / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (tasks / "tiny_choice.yaml").write_text(
        "task: tiny_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{query}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{gold}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n", encoding="utf-8")
    out = tmp_path / "run.json"
    assert main(["eval", "--model", str(models["gpt2"]), "--harness", "lm-eval", "--tasks", "tiny_choice",
                 "--include-path", str(tasks), "--batch-size", "8", "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))["results"][0]
    assert result["name"] == "lm-eval:tiny_choice" and result["task"] == "lm-eval"
    expected = (_choice_loglikelihoods(models["gpt2"], docs).argmax(1) == [d["gold"] for d in docs]).mean()
    assert result["metrics"]["acc"] == pytest.approx(expected)
    assert result["metrics"]["examples"] == len(docs)
    low, high = result["intervals"]["acc"]
    assert low <= result["metrics"]["acc"] <= high and high > low
    capsys.readouterr()

    err = _one_line_error(capsys, ["eval", "--model", str(models["bert"]), "--harness", "lm-eval", "--tasks",
                                   "tiny_choice", "--include-path", str(tasks)])
    assert "masked LM" in err
    err = _one_line_error(capsys, ["eval", "--model", str(models["gpt2"]), "--harness", "lm-eval", "--tasks",
                                   "no_such_task", "--include-path", str(tasks)])
    assert "no_such_task" in err


@pytest.mark.slow
def test_mteb_bitext_mining_equals_langgraft_retrieval_top1(models, tmp_path, capsys):
    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_text("\n".join(source_sentences(40, seed=8)) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(target_sentences(40, seed=8)) + "\n", encoding="utf-8")
    assert main(["eval", "--model", str(models["bert"]), "--task", f"retrieval:{src},{tgt}",
                 "--harness", "mteb", "--tasks", f"pairs=bitext-mining:{src},{tgt}", "--json"]) == 0
    retrieval, mined = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert mined["name"] == "mteb:pairs" and mined["task"] == "mteb"
    # MTEB mines each source sentence's nearest target: langgraft's source->target top-1, same embeddings
    assert mined["metrics"]["accuracy"] == pytest.approx(retrieval["metrics"]["top1_src2tgt"])
    low, high = mined["intervals"]["accuracy"]
    assert low <= mined["metrics"]["accuracy"] <= high
    assert {"f1", "precision", "recall"} <= set(mined["metrics"])


def test_missing_extra_is_one_line(models, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("lm_eval", "mteb") else real(name, *a))
    for harness in ("lm-eval", "mteb"):
        err = _one_line_error(capsys, ["eval", "--model", str(models["gpt2"]), "--harness", harness, "--tasks", "x"])
        assert "langgraft[bench]" in err


@pytest.mark.slow
def test_seed_set_is_scored_per_seed_as_mean_and_sd(models, tmp_path, capsys):
    from langgraft.eval import evaluate

    sentences = source_sentences(48, seed=6)
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{s}\t{'long' if len(s.split()) > 6 else 'short'}\n" for s in sentences),
                     encoding="utf-8")
    test = tmp_path / "test.tsv"
    test.write_text("".join(f"{s}\t{'long' if len(s.split()) > 6 else 'short'}\n"
                            for s in source_sentences(40, seed=7)), encoding="utf-8")
    seeds = tmp_path / "task-seeds"
    assert main(["module", "train-task", "--kind", "lora", "--model", str(models["bert"]), "--train", str(train),
                 "--task", "seq-cls", "--out", str(seeds), "--seeds", "3", "--seed", "4", "--max-steps", "4",
                 "--batch-size", "8", "--learning-rate", "0.01", "--max-length", "32"]) == 0
    assert sorted(p.name for p in seeds.iterdir()) == ["langgraft_seeds.json", "seed-4", "seed-5", "seed-6"]
    run = evaluate(models["bert"], [f"genre=seq-cls:{test}", f"fertility:{test}"], modules=[seeds])
    scored, fertility = run["results"]
    singles = [evaluate(models["bert"], [f"seq-cls:{test}"], modules=[seeds / f"seed-{s}"])["results"][0]
               for s in (4, 5, 6)]
    accuracies = [r["metrics"]["accuracy"] for r in singles]
    assert [s["seed"] for s in scored["seeds"]] == [4, 5, 6]
    assert [s["metrics"]["accuracy"] for s in scored["seeds"]] == accuracies
    assert [s["intervals"] for s in scored["seeds"]] == [r["intervals"] for r in singles]
    assert scored["metrics"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert scored["sd"]["accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    assert "seeds" not in fertility  # fertility composes no module: scored once
    printed = format_metrics(scored)  # the line `langgraft eval` prints
    assert f"accuracy {scored['metrics']['accuracy']:.4f} ± {scored['sd']['accuracy']:.4f}" in printed
    assert printed.endswith("(3 seeds)")


@pytest.mark.slow
def test_interrupted_seed_set_keeps_finished_members(models, tmp_path, monkeypatch):
    import importlib

    from langgraft.adapters import TrainOptions, train_task_module_seeds

    compose = importlib.import_module("langgraft.adapters.compose")  # the package's `compose` is the function

    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{s}\t{'long' if len(s.split()) > 6 else 'short'}\n"
                             for s in source_sentences(32, seed=9)), encoding="utf-8")
    options = TrainOptions(max_steps=2, per_device_train_batch_size=8, max_seq_length=32, save_steps=1000)
    real = compose.train_task_module
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(kwargs["options"].seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compose, "train_task_module", interrupted)
    out = tmp_path / "set"
    with pytest.raises(KeyboardInterrupt):
        train_task_module_seeds("lora", models["bert"], train, seeds=2, out=out, task="seq-cls", options=options)
    assert not out.exists() and calls == [0, 1]
    first = (tmp_path / ".set.work" / "seed-0" / "langgraft_module.json").read_bytes()
    monkeypatch.setattr(compose, "train_task_module", lambda *a, **k: (calls.append(k["options"].seed), real(*a, **k))[1])
    train_task_module_seeds("lora", models["bert"], train, seeds=2, out=out, task="seq-cls", options=options)
    assert calls == [0, 1, 1]  # seed 0 was finished: kept, not retrained
    assert (out / "seed-0" / "langgraft_module.json").read_bytes() == first
    assert json.loads((out / "langgraft_seeds.json").read_text(encoding="utf-8")) == {"seeds": [0, 1]}
    assert not (tmp_path / ".set.work").exists()
