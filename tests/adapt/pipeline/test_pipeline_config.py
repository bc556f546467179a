"""Pipeline YAML validation: every bad key or value is one UserError naming its path and the choices."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from langgraft import Pipeline, UserError
from langgraft.adapt.pipeline.config import PipelineConfig
from langgraft.options import from_mapping as build


def base(model, corpus) -> dict:
    return {"language": "xx", "source_model": str(model), "corpora": {"target": {"files": [str(corpus)]}},
            "pretrain": None}


def error_of(data: dict, tmp_path) -> str:
    with pytest.raises(UserError) as info:
        Pipeline.from_dict(data, base_dir=tmp_path)
    return str(info.value)


def test_unknown_key_names_its_path_and_the_allowed_keys(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["tokenizer"] = {"size": 100}
    message = error_of(data, tmp_path)
    assert "'tokenizer.size'" in message and "vocab_size" in message and "mode" in message


def test_unknown_key_inside_a_list_item(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["modules"] = [{"name": "a", "role": "language"}, {"name": "b", "role": "language", "steps": 3}]
    message = error_of(data, tmp_path)
    assert "'modules[1].steps'" in message and "max_steps" in message


def test_bad_value_lists_the_allowed_values(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["modules"] = [{"name": "a", "kind": "prefix"}]
    message = error_of(data, tmp_path)
    assert "modules[0].kind" in message and "'lora'" in message and "'sft'" in message and "'madx'" in message


def test_wrong_type_and_missing_required_key(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["seed"] = "zero"
    assert "seed: expected integer" in error_of(data, tmp_path)
    data = base(tiny_models["bert"], target_corpus)
    del data["language"]
    assert "missing key 'language'" in error_of(data, tmp_path)


def test_floats_written_like_1e_3_are_accepted():
    config = build(PipelineConfig, {"language": "xx", "source_model": "m",
                                    "pretrain": {"embedding_learning_rate": "1e-3"}})
    assert config.pretrain.embedding_learning_rate == pytest.approx(1e-3)


def test_unknown_init_method_and_method_option(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["init"] = {"method": "magic"}
    message = error_of(data, tmp_path)
    assert "init.method" in message and "fvt" in message and "auto" in message
    data["init"] = {"method": "auto", "options": {"fvt": {"no_such_option": 1}}}
    assert "init.options.fvt" in error_of(data, tmp_path)


def test_task_module_must_name_an_evaluation_task(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["modules"] = [{"name": "cls", "role": "task", "task": "genre"}]
    message = error_of(data, tmp_path)
    assert "modules[0].task" in message and "genre" in message


def test_evaluation_task_without_a_task_module(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["evaluation"] = {"tasks": [{"name": "genre", "bible": "genre"}]}
    assert "evaluation.tasks[0]" in error_of(data, tmp_path)


def test_headless_source_without_source_text_is_refused(tiny_models, target_corpus, tmp_path):
    from transformers import AutoModel

    headless = tmp_path / "headless"
    AutoModel.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (headless / name).write_bytes((tiny_models["bert"] / name).read_bytes())
    message = error_of(base(headless, target_corpus), tmp_path)
    assert "corpora.source" in message and "head" in message


def test_stage_run_alone_needs_its_earlier_outputs(tiny_models, target_corpus, tmp_path):
    pipeline = Pipeline.from_dict({**base(tiny_models["bert"], target_corpus), "output": str(tmp_path / "runs")}, base_dir=tmp_path)
    assert [s.name for s in pipeline.stages] == ["corpus", "tokenizer", "init", "evaluate", "report"]
    with pytest.raises(UserError, match="needs the output of stage 'corpus'"):
        pipeline.run_stage("tokenizer")
    with pytest.raises(UserError, match="no stage 'pretrain'"):
        pipeline.run_stage("pretrain")


def test_a_list_of_languages_in_one_file(tiny_models, target_corpus, tmp_path):
    first, second = base(tiny_models["bert"], target_corpus), base(tiny_models["bert"], target_corpus)
    second["language"] = "yy"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump([first, second]))
    pipelines = Pipeline.all_from_yaml(path)
    assert [p.name for p in pipelines] == ["bert-xx", "bert-yy"]
    with pytest.raises(UserError, match="holds 2 languages"):
        Pipeline.from_yaml(path)
    second["tokenizer"] = {"vocab": 3}
    path.write_text(yaml.safe_dump([first, second]))
    with pytest.raises(UserError, match=r"\[1\]\.tokenizer\.vocab"):
        Pipeline.all_from_yaml(path)


@pytest.mark.slow
def test_cli_prints_one_line_and_exits_2(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["pretrian"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run([sys.executable, "-m", "langgraft", "run", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "'pretrian'" in done.stderr and "pretrain" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_demo_yaml_is_valid():
    from langgraft.adapt.pipeline.demo import demo_config

    for quick in (False, True):
        config = build(PipelineConfig, demo_config(quick))
        assert config.source_model == "minilm" and config.tokenizer.vocab_size == (2000 if quick else 16000)


def test_corpus_needs_exactly_one_source_and_tasks_need_their_files(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["corpora"] = {"target": {"bible": "nya", "files": ["t.txt"]}}
    assert "corpora.target: give either bible" in error_of(data, tmp_path)
    data = base(tiny_models["bert"], target_corpus)
    data["modules"] = [{"name": "t", "role": "task", "task": "ner"}]
    data["evaluation"] = {"tasks": [{"name": "ner", "type": "token_classification", "train": "en.conllu"}]}
    assert "evaluation.tasks[0]: give either bible: genre or both train" in error_of(data, tmp_path)


def test_task_module_stacked_on_a_missing_language_module(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["evaluation"] = {"tasks": [{"name": "toy", "train": str(target_corpus), "test": str(target_corpus)}]}
    data["modules"] = [{"name": "xx", "role": "language"},
                       {"name": "t", "role": "task", "task": "toy", "language_module": "en"}]
    message = error_of(data, tmp_path)
    assert "modules[1].language_module: 'en' is not an earlier source-language module" in message


def test_missing_files_are_named_by_their_key_before_anything_runs(tiny_models, target_corpus, tmp_path):
    data = base(tiny_models["bert"], target_corpus)
    data["corpora"]["source"] = {"files": ["missing.txt"]}
    message = error_of(data, tmp_path)
    assert "corpora.source.files[0]" in message and "missing.txt not found" in message
    data = base(tiny_models["bert"], target_corpus)
    data["init"] = {"resources": {"dictionary": "dict.tsv"}}
    assert "init.resources.dictionary" in error_of(data, tmp_path)


def test_pretrain_section_takes_every_option_of_the_python_api():
    """A new langgraft.adapt.pretrain.run option is a pipeline key without editing the pipeline."""
    import dataclasses

    from langgraft.adapt.pipeline import config as pipeline_config
    from langgraft.adapt.pretrain.run import PretrainOptions

    run_fields = {f.name: f for f in dataclasses.fields(PretrainOptions)}
    keys = {f.name: f for f in dataclasses.fields(pipeline_config.PretrainConfig)}
    assert set(pipeline_config.STAGE_SET_FIELDS) <= set(run_fields)
    assert set(pipeline_config.PRETRAIN_DEFAULTS) <= set(keys)
    assert set(run_fields) - set(pipeline_config.STAGE_SET_FIELDS) == set(keys) - {"eval_documents"}
    assert keys["shuffle_buffer"].default == run_fields["shuffle_buffer"].default
    assert keys["max_steps"].default == 300 != run_fields["max_steps"].default
    config = build(PipelineConfig, {"language": "xx", "source_model": "m",
                                    "pretrain": {"shuffle_buffer": 0, "report_to": ["none"], "learning_rate": None}})
    assert (config.pretrain.shuffle_buffer, config.pretrain.report_to, config.pretrain.learning_rate) == (0, ["none"], None)
    with pytest.raises(UserError, match=r"pretrain\.shuffle_buffer: expected integer"):
        build(PipelineConfig, {"language": "xx", "source_model": "m", "pretrain": {"shuffle_buffer": "all"}})
    with pytest.raises(UserError, match=r"unknown key 'pretrain\.corpus_alpha'; allowed keys in pretrain: max_steps, "):
        build(PipelineConfig, {"language": "xx", "source_model": "m", "pretrain": {"corpus_alpha": 0.5}})
