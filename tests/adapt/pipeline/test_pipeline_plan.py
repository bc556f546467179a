"""What the plan refuses before any stage runs, and what the evaluation's sampling knobs sample (per input form)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from langgraft import Pipeline, UserError
from langgraft.adapt.cli import main
from langgraft.adapt.pipeline import stages
from langgraft.adapt.pipeline.spec import StageContext

PREPARED_HEADER = "id\tgroup\tlabel\ttext\n"  # the corpus stage's tables (langgraft.corpora.prepare)


def decoder(model: Path, target: Path, source: Path, **sections) -> dict:
    """A tiny GPT-2 (128 positions) pipeline with a task module; full pretraining steps unless told otherwise."""
    config = {"language": "xx", "source_model": str(model), "output": "runs",
              "corpora": {"target": {"files": [str(target)]}, "source": {"files": [str(source)]}},
              "tokenizer": {"mode": "extend", "vocab_size": 20}, "init": {"method": "mean"},
              "pretrain": {"max_steps": 6, "embedding_steps": 4, "max_seq_length": 128},
              "modules": [{"name": "cls", "role": "task", "task": "cls"}],
              "evaluation": {"tasks": [{"name": "cls", "train": "train.tsv", "test": "train.tsv"}]}}
    config.update(sections)
    return config


@pytest.fixture
def task_dir(tmp_path, labelled) -> Path:
    (tmp_path / "train.tsv").write_bytes(labelled["seq"].read_bytes())
    return tmp_path


def refusal(config: dict, folder: Path, capsys) -> str:
    """``langgraft run`` on ``config``: exit 2, one line, and no run folder written."""
    path = folder / "p.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    capsys.readouterr()
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("langgraft: error:"), err
    assert not (folder / "runs").exists()
    return err


@pytest.mark.parametrize("key, section", [
    ("pretrain.max_seq_length", {"pretrain": {"max_steps": 4, "embedding_steps": 4, "max_seq_length": 129}}),
    ("modules[0].max_seq_length", {"modules": [{"name": "cls", "role": "task", "task": "cls", "max_seq_length": 256}],
                                   "pretrain": None}),
    ("distill.max_seq_length", {"distill": {"max_seq_length": 512}, "pretrain": None}),
])
def test_a_length_past_the_model_positions_is_refused_at_plan_time(key, section, tiny_models, target_corpus,
                                                                   source_corpus, task_dir, capsys):
    err = refusal(decoder(tiny_models["gpt2"], target_corpus, source_corpus, **section), task_dir, capsys)
    assert f"{key}: " in err and "exceed the 128 positions" in err and f"set {key}: 128 or less" in err


def test_the_tokenizer_model_max_length_bounds_the_lengths_too(tiny_models, target_corpus, source_corpus, task_dir,
                                                              capsys):
    model = task_dir / "gpt2-64"
    shutil.copytree(tiny_models["gpt2"], model)
    settings = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**settings, "model_max_length": 64}))
    config = decoder(model, target_corpus, source_corpus,
                     pretrain={"max_steps": 4, "embedding_steps": 4, "max_seq_length": 100})
    err = refusal(config, task_dir, capsys)
    assert "pretrain.max_seq_length: 100 tokens exceed the 64 tokens (tokenizer model_max_length)" in err


def test_the_whole_position_table_of_a_gpt2_with_a_pad_token_is_allowed(tiny_models, target_corpus, source_corpus,
                                                                        task_dir):
    config = decoder(tiny_models["gpt2"], target_corpus, source_corpus,
                     pretrain={"max_steps": 4, "embedding_steps": 4, "max_seq_length": 128})
    assert Pipeline.from_dict(config, base_dir=task_dir).spec("pretrain").config.pretrain.max_seq_length == 128


def test_a_source_task_module_after_full_steps_is_refused_with_the_fix(tiny_models, target_corpus, source_corpus,
                                                                       task_dir, capsys):
    err = refusal(decoder(tiny_models["gpt2"], target_corpus, source_corpus), task_dir, capsys)
    assert "modules[0].base" in err and "pretrain.max_steps (6) > pretrain.embedding_steps (4)" in err
    assert "set modules[0].base: adapted" in err and "pretrain.embedding_steps: 6" in err
    config = decoder(tiny_models["gpt2"], target_corpus, source_corpus, tokenizer={"mode": "train", "vocab_size": 300})
    err = refusal(config, task_dir, capsys)
    assert "set pretrain.embedding_steps: 6" in err and "tokenizer.mode: extend" in err


def test_base_adapted_trains_on_the_adapted_model_and_needs_extension_mode(tiny_models, target_corpus,
                                                                           source_corpus, task_dir, capsys):
    modules = [{"name": "cls", "role": "task", "task": "cls", "base": "adapted"}]
    pipeline = Pipeline.from_dict(decoder(tiny_models["gpt2"], target_corpus, source_corpus, modules=modules),
                                  base_dir=task_dir)
    assert "pretrain" in pipeline.spec("module-cls").needs
    config = decoder(tiny_models["gpt2"], target_corpus, source_corpus, modules=modules,
                     tokenizer={"mode": "train", "vocab_size": 300})
    assert "modules[0].base: adapted" in refusal(config, task_dir, capsys) and "tokenizer.mode: extend" in \
        refusal(config, task_dir, capsys)
    language = [{"name": "lang", "role": "language", "base": "adapted"}, *modules]
    config = decoder(tiny_models["gpt2"], target_corpus, source_corpus, modules=language)
    assert "modules[0].base: a language module's base follows its corpus" in refusal(config, task_dir, capsys)


def test_embeddings_only_pretraining_keeps_source_task_modules_and_their_keys(tiny_models, target_corpus,
                                                                              source_corpus, task_dir):
    config = decoder(tiny_models["gpt2"], target_corpus, source_corpus,
                     pretrain={"max_steps": 4, "embedding_steps": 4, "max_seq_length": 64})
    pipeline = Pipeline.from_dict(config, base_dir=task_dir)
    assert "pretrain" not in pipeline.spec("module-cls").needs
    assert "base" not in json.dumps(stages.plain(pipeline.spec("module-cls").config, results_only=True))


def _context(tmp_path: Path, config, inputs: dict[str, Path]) -> StageContext:
    class Owner:  # what a stage context reads of its pipeline
        base_dir = tmp_path
        config = type("C", (), {"language": "xx"})

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return StageContext(Owner(), "eval-data", config, work, inputs)


def test_max_pairs_samples_pair_files(parallel_corpus, tmp_path):
    source, target, _ = parallel_corpus
    config = stages.EvalDataStageConfig([], [str(source), str(target)], 7, 0)
    ctx = _context(tmp_path, config, {})
    stages.eval_data_stage(ctx)
    pairs = dict(zip(source.read_text().splitlines(), target.read_text().splitlines()))
    kept_source = (ctx.work_dir / "retrieval" / "source.txt").read_text().splitlines()
    kept_target = (ctx.work_dir / "retrieval" / "target.txt").read_text().splitlines()
    assert len(kept_source) == 7 and [pairs[s] for s in kept_source] == kept_target  # still aligned


def test_max_pairs_samples_corpus_pairs(tmp_path):
    corpus = tmp_path / "corpus"
    for side in ("source", "target"):
        (corpus / side).mkdir(parents=True)
        (corpus / side / "test.tsv").write_text(PREPARED_HEADER + "".join(
            f"v{i}\tv{i}\t\t{side} {i}\n" for i in range(40)), encoding="utf-8")
        (corpus / side / "test.txt").write_text("".join(f"{side} {i}\n" for i in range(40)), encoding="utf-8")
    ctx = _context(tmp_path, stages.EvalDataStageConfig([], "corpus", 9, 0), {"corpus": corpus})
    stages.eval_data_stage(ctx)
    kept = (ctx.work_dir / "retrieval" / "target.txt").read_text().splitlines()
    assert len(kept) == 9
    assert [s.replace("source", "target") for s in
            (ctx.work_dir / "retrieval" / "source.txt").read_text().splitlines()] == kept


@pytest.mark.parametrize("form", ["sequence_classification", "token_classification"])
def test_max_examples_samples_task_files(form, labelled, tmp_path):
    path = labelled["seq" if form == "sequence_classification" else "iob"]
    task = stages.TaskConfig(name="t", type=form, train=str(path), test=str(path), max_examples=5)
    ctx = _context(tmp_path, stages.EvalDataStageConfig([task], None, None, 0), {})
    stages.eval_data_stage(ctx)
    suffix = ".jsonl" if form == "sequence_classification" else ".iob"
    for split in ("train", "test"):
        text = (ctx.work_dir / "tasks" / "t" / f"{split}{suffix}").read_text()
        count = len(text.splitlines()) if suffix == ".jsonl" else len([b for b in text.split("\n\n") if b.strip()])
        assert count == 5


def test_max_examples_samples_bible_task_files(tmp_path):
    corpus = tmp_path / "corpus"
    for side, split in (("source", "train"), ("target", "test")):
        (corpus / side).mkdir(parents=True)
        (corpus / side / f"{split}.tsv").write_text(PREPARED_HEADER + "".join(
            f"v{i}\tv{i}\t{'law' if i % 2 else 'poetry'}\t{side} {i}\n" for i in range(30)), encoding="utf-8")
    task = stages.TaskConfig(name="genre", bible="genre", max_examples=6)
    ctx = _context(tmp_path, stages.EvalDataStageConfig([task], None, None, 0), {"corpus": corpus})
    stages.eval_data_stage(ctx)
    for split in ("train", "test"):
        assert len((ctx.work_dir / "tasks" / "genre" / f"{split}.jsonl").read_text().splitlines()) == 6


def test_max_documents_samples_the_bpc_text_and_each_corpus_split(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "target").mkdir(parents=True)
    (corpus / "target" / "test.txt").write_text("".join(f"doc {i}\n" for i in range(50)), encoding="utf-8")
    (corpus / "target" / "test.tsv").write_text(PREPARED_HEADER + "".join(f"d{i}\td{i}\t\tdoc {i}\n" for i in range(50)),
                                                encoding="utf-8")
    evaluation = stages.EvaluationConfig(max_documents=11)
    config = stages.EvaluateStageConfig(evaluation, 0, "xx", "source", [])
    ctx = _context(tmp_path, config, {"corpus": corpus, "init": tmp_path / "init"})
    jobs = stages.evaluation_jobs(ctx)
    assert len((ctx.work_dir / "bpc-test.txt").read_text().splitlines()) == 11
    assert {job["setup"] for job in jobs} == {"source", "adapted"}
    stages.cap_split(corpus / "target", "test", 8, 0)  # corpora.max_documents
    kept = (corpus / "target" / "test.txt").read_text().splitlines()
    rows = (corpus / "target" / "test.tsv").read_text().splitlines()[1:]
    assert len(kept) == 8 and [r.split("\t")[3] for r in rows] == kept


def _evaluate_context(tmp_path):
    """An evaluate stage over a two-line test split, with the source and adapted setups to compute."""
    corpus = tmp_path / "corpus"
    (corpus / "target").mkdir(parents=True)
    (corpus / "target" / "test.txt").write_text("a b\nc d\n", encoding="utf-8")
    (tmp_path / "init").mkdir()
    config = stages.EvaluateStageConfig(stages.EvaluationConfig(max_documents=None), 0, "xx", "source", [])
    return _context(tmp_path, config, {"corpus": corpus, "init": tmp_path / "init"})


def test_evaluate_keeps_the_setups_it_finished_and_reruns_only_the_missing(tmp_path, monkeypatch):
    ctx = _evaluate_context(tmp_path)
    calls = []

    def evaluate(model, tasks, *, name, **options):
        calls.append(name)
        if name == "adapted" and calls.count("adapted") == 1:
            raise RuntimeError("simulated failure")
        return {"name": name, "results": [{"name": "bpc", "metrics": {"bpc": 1.5}}]}

    monkeypatch.setattr(stages, "evaluate", evaluate)
    monkeypatch.setattr(stages, "to_rows", lambda runs: [{"setup": r["name"], "task": "bpc", "metric": "bpc",
                                                          "value": 1.5} for r in runs])
    with pytest.raises(RuntimeError, match="simulated failure"):
        stages.evaluate_stage(ctx)
    assert calls == ["source", "adapted"] and len(list((ctx.work_dir / stages.ROWS_FOLDER).iterdir())) == 1
    stages.evaluate_stage(ctx)
    assert calls == ["source", "adapted", "adapted"]  # the finished source setup was kept
    rows = json.loads((ctx.work_dir / "evaluation.json").read_text())["rows"]
    assert [r["setup"] for r in rows] == ["source", "adapted"]


def test_evaluate_refuses_damaged_kept_rows_in_one_line(tmp_path, monkeypatch):
    ctx = _evaluate_context(tmp_path)

    def evaluate(model, tasks, *, name, **options):
        if name == "adapted":
            raise RuntimeError("simulated failure")
        return {"name": name}

    monkeypatch.setattr(stages, "evaluate", evaluate)
    monkeypatch.setattr(stages, "to_rows", lambda runs: [{"setup": r["name"], "task": "bpc"} for r in runs])
    with pytest.raises(RuntimeError, match="simulated failure"):
        stages.evaluate_stage(ctx)
    kept = next((ctx.work_dir / stages.ROWS_FOLDER).iterdir())
    for damaged in ('{"job": ', '{"job": {}}', '{"rows": [1, 2]}'):
        kept.write_text(damaged, encoding="utf-8")
        with pytest.raises(UserError, match=rf"{kept.name}: the rows of a finished evaluation call.*delete it"):
            stages.evaluate_stage(ctx)


def test_a_module_name_that_is_no_folder_name_is_refused_at_plan_time(tiny_models, target_corpus, source_corpus,
                                                                      task_dir, capsys):
    config = decoder(tiny_models["gpt2"], target_corpus, source_corpus, pretrain=None,
                     modules=[{"name": "../../cls", "role": "task", "task": "cls"}])
    assert "modules[0].name: '../../cls' must be one plain folder name" in refusal(config, task_dir, capsys)


def test_a_local_source_model_is_read_beside_the_yaml_file_from_any_working_folder(tiny_models, target_corpus,
                                                                                   source_corpus, task_dir,
                                                                                   monkeypatch):
    shutil.copytree(tiny_models["gpt2"], task_dir / "models" / "gpt2")
    config = decoder(Path("models/gpt2"), target_corpus, source_corpus, pretrain=None)
    (task_dir / "p.yaml").write_text(yaml.safe_dump({**config, "source_model": "models/gpt2"}), encoding="utf-8")
    monkeypatch.chdir(task_dir.parent)
    pipeline = Pipeline.from_yaml(task_dir / "p.yaml")
    assert Path(pipeline.config.source_model).resolve() == (task_dir / "models" / "gpt2").resolve()
    assert pipeline.name == "gpt2-xx" and pipeline.run_dir == (task_dir / "runs" / "gpt2-xx").resolve()


def test_a_roberta_family_encoder_takes_its_positions_less_the_offset(tiny_models, target_corpus, source_corpus,
                                                                      task_dir, capsys):
    """The tiny XLM-R has 130 positions and pad id 1: 128 tokens fit, 129 are refused before any stage."""
    def config(length: int) -> dict:
        return decoder(tiny_models["xlmr"], target_corpus, source_corpus,
                       pretrain={"max_steps": 4, "embedding_steps": 4, "max_seq_length": length})

    assert Pipeline.from_dict(config(128), base_dir=task_dir).spec("pretrain").config.pretrain.max_seq_length == 128
    err = refusal(config(129), task_dir, capsys)
    assert "pretrain.max_seq_length: 129 tokens exceed the 128 positions" in err
