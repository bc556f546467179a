"""Named benchmarks: declarations, loading (HF cache offline, local folders), conversion, zero-shot protocol."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch

from benchmark_fixtures import HUB, SOURCE, TARGET, UPOS, WIKIANN_TAGS, cache_like_hub, fixture, write_like_hub
from langgraft.adapt.cli import main
from langgraft.errors import UserError
from langgraft.eval.benchmarks import BENCHMARKS, Benchmark, prepare_benchmark, register_benchmark
from langgraft.eval.tasks import evaluate_choice_likelihood

NAMES = ("sib200", "wikiann", "ud", "flores200", "tatoeba", "belebele")


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf_datasets_cache")
    for name in NAMES:
        cache_like_hub(cache, name)
    return cache


@pytest.fixture()
def offline_cache(hub_cache, monkeypatch) -> Path:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hub_cache)
    assert datasets.config.HF_HUB_OFFLINE  # nothing may try the network
    return hub_cache


def _jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_every_benchmark_is_registered_once():
    assert set(NAMES) <= set(BENCHMARKS)
    for name in NAMES:
        assert BENCHMARKS[name].hub == HUB[name][0]
    with pytest.raises(ValueError, match="already registered"):
        register_benchmark(BENCHMARKS["sib200"])


@pytest.mark.parametrize("name", NAMES)
def test_prepare_reads_the_hub_schema_from_the_offline_cache(name, offline_cache, tmp_path):
    files = prepare_benchmark(name, TARGET[name], tmp_path / name)
    benchmark = BENCHMARKS[name]
    if name == "tatoeba":
        rows = fixture(name, "nya-eng", "test")
        assert Path(files["train"]).read_text().splitlines() == rows["sentence2"]
        assert Path(files["test"]).read_text().splitlines() == rows["sentence1"]
        return
    if name == "flores200":
        english, target = (fixture(name, c, "devtest") for c in ("eng_Latn", "nya_Latn"))
        by_id = {i: t for i, t in zip(target["id"], target["text"])}
        assert Path(files["train"]).read_text().splitlines() == english["text"]
        assert Path(files["test"]).read_text().splitlines() == [by_id[i] for i in english["id"]]
        return
    test, train = _jsonl(files["test"]), _jsonl(files["train"])
    target_rows = fixture(name, TARGET[name], benchmark.test_split)
    source_rows = fixture(name, SOURCE[name], benchmark.train_split or benchmark.test_split)
    if name == "sib200":
        assert test == [{"text": t, "label": c} for t, c in zip(target_rows["text"], target_rows["category"])]
        assert train == [{"text": t, "label": c} for t, c in zip(source_rows["text"], source_rows["category"])]
    elif name in ("wikiann", "ud"):
        column, names = ("ner_tags", WIKIANN_TAGS) if name == "wikiann" else ("upos", UPOS)
        assert test == [{"tokens": w, "tags": [names[t] for t in tags]}
                        for w, tags in zip(target_rows["tokens"], target_rows[column])]
        assert len(train) == len(source_rows)
    else:  # belebele: passages split between train (English) and test (target) by link
        test_links = {target_rows["link"][i] for i in range(len(target_rows))
                      if target_rows["flores_passage"][i] in {r["context"] for r in test}}
        train_links = {source_rows["link"][i] for i in range(len(source_rows))
                       if source_rows["flores_passage"][i] in {r["context"] for r in train}}
        assert test_links and train_links and not test_links & train_links
        assert test_links | train_links == set(target_rows["link"])
        first = next(i for i in range(len(target_rows)) if target_rows["flores_passage"][i] == test[0]["context"])
        assert test[0]["label"] == int(target_rows["correct_answer_num"][first]) - 1
        assert test[0]["choices"] == [target_rows[f"mc_answer{k}"][first] for k in range(1, 5)]


def test_local_folder_gives_the_same_files_as_the_cache(offline_cache, tmp_path):
    from_cache = prepare_benchmark("sib200", "nya_Latn", tmp_path / "cache", max_examples=10, seed=3)
    folder = write_like_hub(tmp_path / "data", "sib200")
    local = prepare_benchmark("sib200", "nya_Latn", tmp_path / "local", data_dir=folder, max_examples=10, seed=3)
    for split in ("train", "test"):
        assert Path(local[split]).read_bytes() == Path(from_cache[split]).read_bytes()
    assert len(_jsonl(local["test"])) == 10


def test_ud_reads_local_conllu_treebanks(tmp_path):
    for treebank, split in (("en_ewt", "train"), ("ny_tiny", "test")):
        folder = tmp_path / treebank
        folder.mkdir()
        (folder / f"{treebank}-ud-{split}.conllu").write_text(
            "# text = Moni bwanji .\n1\tMoni\tmoni\tINTJ\t_\t_\t0\troot\t_\t_\n2-3\tbwanji\t_\t_\t_\t_\t_\t_\t_\t_\n"
            "2\tbwa\tbwa\tADV\t_\t_\t1\tadvmod\t_\t_\n3\tnji\tnji\tPRON\t_\t_\t1\tobj\t_\t_\n"
            "4\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_\n\n", encoding="utf-8")
    files = prepare_benchmark("ud", "ny_tiny", tmp_path / "out", data_dir=tmp_path)
    assert _jsonl(files["test"]) == [{"tokens": ["Moni", "bwa", "nji", "."], "tags": ["INTJ", "ADV", "PRON", "PUNCT"]}]


def test_a_dataset_neither_cached_nor_reachable_is_one_line(tmp_path, monkeypatch, capsys, tiny_models):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty")
    with pytest.raises(UserError, match="neither in the local HF cache nor reachable"):
        prepare_benchmark("belebele", "nya_Latn", tmp_path / "out")
    code = main(["eval", "--model", str(tiny_models["bert"]), "--benchmark", "sib200", "--language", "nya_Latn"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Davlan/sib200" in err


def test_unknown_benchmark_and_missing_language_are_user_errors(tiny_models, capsys):
    assert main(["eval", "--model", str(tiny_models["bert"]), "--benchmark", "xnli"]) == 2
    assert "unknown benchmark 'xnli'" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_models["bert"]), "--benchmark", "sib200"]) == 2
    assert "no target language" in capsys.readouterr().err


def _benchmark_args(model: Path, modules: Path, out: Path, benchmarks: list[str]) -> list[str]:
    return ["eval", "--model", str(model), "--benchmark", *benchmarks, "--language", "nya_Latn", "--task-steps", "2",
            "--task-modules", str(modules), "--out", str(out), "--json"]


def _size(name: str) -> int:
    return len(fixture(name, TARGET[name] if name != "tatoeba" else "nya-eng", BENCHMARKS[name].test_split))


@pytest.mark.slow
def test_one_command_scores_every_benchmark_zero_shot_on_an_encoder(tiny_models, offline_cache, tmp_path, capsys):
    modules = tmp_path / "task-modules"
    benchmarks = ["sib200", "belebele", "flores200", "tatoeba:nya", "wikiann:ny", "ud:ny_tiny"]
    assert main(_benchmark_args(tiny_models["bert"], modules, tmp_path / "a.json", benchmarks)) == 0
    run = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "a.json").read_text()) == run
    results = {r["name"]: r for r in run["results"]}
    assert set(results) == set(NAMES)
    assert results["sib200"]["metrics"]["examples"] == _size("sib200")
    assert results["wikiann"]["metrics"]["sentences"] == _size("wikiann") and "f1" in results["wikiann"]["metrics"]
    assert results["ud"]["metrics"]["sentences"] == _size("ud") and "f1" not in results["ud"]["metrics"]
    assert results["flores200"]["metrics"]["pairs"] == _size("flores200")
    assert results["tatoeba"]["metrics"]["pairs"] == _size("tatoeba")
    assert 0 < results["belebele"]["metrics"]["examples"] < _size("belebele")  # held-out passages only
    assert "accuracy_norm" not in results["belebele"]["metrics"]  # an encoder answers with a trained head
    assert results["belebele"]["source_language"] == "eng_Latn" and results["wikiann"]["source_language"] == "en"
    # task modules were trained on the English train splits: their labels are the English label sets
    assert sorted(p.name for p in modules.iterdir()) == ["belebele-eng_Latn", "sib200-eng_Latn", "ud-en_ewt",
                                                         "wikiann-en"]
    sib = json.loads((modules / "sib200-eng_Latn" / "langgraft_module.json").read_text())
    assert sib["task"] == "seq-cls" and sib["labels"] == sorted(set(fixture("sib200", "eng_Latn", "train")["category"]))
    choice = json.loads((modules / "belebele-eng_Latn" / "langgraft_module.json").read_text())
    assert choice["task"] == "multiple-choice" and choice["labels"] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_a_decoder_answers_by_likelihood_and_reruns_give_the_same_numbers(tiny_models, offline_cache, tmp_path,
                                                                           capsys):
    modules = tmp_path / "task-modules"
    args = lambda out: _benchmark_args(tiny_models["gpt2"], modules, tmp_path / out,  # noqa: E731
                                       ["sib200", "belebele"]) + ["--name", out.split(".")[0]]
    assert main(args("a.json")) == 0
    run = json.loads(capsys.readouterr().out)
    assert "accuracy_norm" in run["results"][1]["metrics"]
    assert [p.name for p in modules.iterdir()] == ["sib200-eng_Latn"]  # no head for the decoder's multiple choice
    assert main(args("b.json")) == 0  # the kept task module is reused
    again = json.loads(capsys.readouterr().out)
    assert [r["metrics"] for r in again["results"]] == [r["metrics"] for r in run["results"]]
    assert main(["eval", "report", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "r")]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert [r["intervals"] for r in again["results"]] == [r["intervals"] for r in run["results"]]
    numbers = [f"{r['metrics']['accuracy']:.4f} [{r['intervals']['accuracy'][0]:.4f}, "
               f"{r['intervals']['accuracy'][1]:.4f}]" for r in run["results"]]
    assert f"| a | {numbers[0]} | {numbers[1]} |" in report and f"| b | {numbers[0]} | {numbers[1]} |" in report


def test_choice_likelihood_is_the_summed_log_probability_of_each_answer(tiny_models):
    from langgraft.models import load_language_model, load_tokenizer

    model, _ = load_language_model(tiny_models["gpt2"])
    tokenizer = load_tokenizer(tiny_models["gpt2"])
    examples = [("the lord came", "who came?", ["the lord", "bread", "the city of god", "fire"], k) for k in range(4)]
    prompt = tokenizer("the lord came\nwho came?\nAnswer:")["input_ids"]
    scores = []
    with torch.no_grad():
        for choice in examples[0][2]:
            continuation = tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + continuation])
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            positions = range(len(prompt) - 1, ids.shape[1] - 1)
            scores.append(sum(logprobs[p, ids[0, p + 1]].item() for p in positions))
    best = max(range(4), key=scores.__getitem__)
    result = evaluate_choice_likelihood(model, tokenizer, examples, batch_size=3)
    assert result["examples"] == 4 and result["accuracy"] == 0.25  # exactly the example whose label is `best`
    only_best = evaluate_choice_likelihood(model, tokenizer, [examples[best]], batch_size=3)
    assert only_best["accuracy"] == 1.0


def _pipeline_with_benchmarks(tiny_models, source_corpus, target_corpus, out: Path, family: str, **evaluation) -> dict:
    from pipeline_tiny import tiny_pipeline

    config = tiny_pipeline(tiny_models[family], source_corpus, target_corpus, out)
    config["init"] = {"method": "mean"}
    config["pretrain"] = {**config["pretrain"], "max_steps": 2, "embedding_steps": 2, "eval_steps": 2, "save_steps": 2}  # body kept: modules compose
    config["evaluation"] = {"bpc": False, **evaluation}
    config.pop("publish")
    return config


def test_pipeline_plans_a_default_task_module_for_benchmarks_that_need_one(tiny_models, source_corpus, target_corpus,
                                                                           tmp_path):
    from langgraft import Pipeline

    benchmarks = [{"name": "sib200", "language": "nya_Latn"}, {"name": "belebele", "language": "nya_Latn"},
                  {"name": "flores200", "language": "nya_Latn"}]
    names = {}
    for family in ("bert", "gpt2"):
        config = _pipeline_with_benchmarks(tiny_models, source_corpus, target_corpus, tmp_path / family, family,
                                           benchmarks=benchmarks)
        names[family] = [s.name for s in Pipeline.from_dict(config, base_dir=tmp_path).stages]
    assert [n for n in names["bert"] if n.startswith("module-")] == ["module-sib200-task", "module-belebele-task"]
    assert [n for n in names["gpt2"] if n.startswith("module-")] == ["module-sib200-task"]  # likelihood, no head
    assert "eval-data" in names["bert"]
    config["evaluation"]["benchmarks"] = [{"name": "sib200"}, {"name": "sib200"}]
    with pytest.raises(UserError, match=r"evaluation.benchmarks\[1\]"):
        Pipeline.from_dict(config, base_dir=tmp_path).stages


@pytest.mark.slow
def test_pipeline_reports_benchmarks_for_every_setup(tiny_models, source_corpus, target_corpus, offline_cache,
                                                     tmp_path):
    from langgraft import Pipeline

    config = _pipeline_with_benchmarks(
        tiny_models, source_corpus, target_corpus, tmp_path, "bert",
        benchmarks=[{"name": "sib200", "language": "nya_Latn"}, {"name": "flores200", "language": "nya_Latn"}])
    config["modules"] = [{"name": "xx-lang", "role": "language", "kind": "lora", "max_steps": 2},
                         {"name": "sib", "role": "task", "kind": "lora", "task": "sib200", "max_steps": 2}]
    pipeline = Pipeline.from_dict(config, base_dir=tmp_path)
    outputs = pipeline.run()
    rows = json.loads((outputs["evaluate"] / "evaluation.json").read_text())["rows"]
    table = {(r["setup"], r["task"], r["metric"]): r["value"] for r in rows}
    interval = {(r["setup"], r["task"], r["metric"]): f"[{r['low']:.4f}, {r['high']:.4f}]" for r in rows if "low" in r}
    for setup in ("source", "adapted", "adapted+language"):
        assert table[(setup, "sib200", "examples")] == _size("sib200")
        assert table[(setup, "flores200", "pairs")] == _size("flores200")
    report = (pipeline.run_dir / "report" / "report.md").read_text()
    paper = report.split("## Benchmarks")[1].split("\n## ")[0]  # one row per setup, the headline metrics
    assert "| setup | sib200 (accuracy) | flores200 (top1) |" in paper
    for setup in ("source", "adapted", "adapted+language"):
        row = next(line for line in paper.splitlines() if line.startswith(f"| {setup} |"))
        assert row == (f"| {setup} | {table[(setup, 'sib200', 'accuracy')]:.4f} {interval[(setup, 'sib200', 'accuracy')]} | "
                       f"{table[(setup, 'flores200', 'top1')]:.4f} {interval[(setup, 'flores200', 'top1')]} |")
