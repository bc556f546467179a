"""``init.resources.parallel: corpus``: trans-tokenization from the corpus stage's id-aligned train splits."""
from __future__ import annotations

import json

import pytest
from pipeline_tiny import tiny_pipeline

from langgraft import Pipeline, UserError
from langgraft.vocab.transfer import PROVENANCE_FILE, TRANSFER_SUMMARY_FILE


def write_ids(path, lines, prefix="g"):
    """``id<TAB>text`` lines; ids ``<prefix><group>.<n>`` so both languages split by the same groups."""
    path.write_text("".join(f"{prefix}{n // 10}.{n}\t{line}\n" for n, line in enumerate(lines)), encoding="utf-8")
    return path


def id_corpus(path) -> dict:
    return {"files": [str(path)], "format": "tsv", "id_column": 0, "group_key": "id-prefix"}


def lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def aligned_files(parallel_corpus, tmp_path_factory):
    """(source.tsv, target.tsv, word mapping): the line-aligned parallel fixture given shared ids."""
    src, tgt, mapping = parallel_corpus
    root = tmp_path_factory.mktemp("aligned")
    return write_ids(root / "source.tsv", lines(src)), write_ids(root / "target.tsv", lines(tgt)), mapping


def parallel_config(tiny_models, source, target, out, **init) -> dict:
    return tiny_pipeline(tiny_models["bert"], source, target, out, pretrain=None, publish={},
                         corpora={"target": id_corpus(target), "source": id_corpus(source)},
                         init={"resources": {"parallel": "corpus"}, "dev_documents": 20, **init})


@pytest.fixture(scope="module")
def transtok_run(tiny_models, aligned_files, tmp_path_factory):
    """A pipeline run up to init with ``method: transtok`` on the corpus stage's aligned train splits."""
    source, target, _ = aligned_files
    out = tmp_path_factory.mktemp("transtok")
    config = parallel_config(tiny_models, source, target, out, method="transtok")
    pipeline = Pipeline.from_dict(config, base_dir=out)
    return config, pipeline, pipeline.run(stop_after="init")


def test_transtok_aligns_the_train_splits_of_both_corpora(transtok_run, aligned_files):
    _, _, outputs = transtok_run
    mapping = aligned_files[2]
    model = outputs["init"] / "model"
    summary = json.loads((model / TRANSFER_SUMMARY_FILE).read_text())
    corpus = outputs["corpus"]
    # the train tables only: dev and test text never reaches the initialization
    assert summary["resources"]["parallel"] == [str(corpus / "source" / "train.tsv"),
                                                 str(corpus / "target" / "train.tsv")]
    assert summary["method"] == "transtok" and summary["notes"]["aligned_tokens"] > 20
    rows = [json.loads(line) for line in (model / PROVENANCE_FILE).open(encoding="utf-8")]
    translation = {t: s for s, t in mapping.items()}
    whole = [r for r in rows if r["kind"] == "neighbours" and r["token"] in translation]
    # a whole target word's strongest neighbour is its source word (the fixture's known dictionary)
    assert whole and sum(translation[r["token"]] == r["source_tokens"][0] for r in whole) >= 0.8 * len(whole)


def test_the_init_key_follows_the_corpus(transtok_run, tiny_models, aligned_files, parallel_corpus, tmp_path):
    config, pipeline, _ = transtok_run
    source, target, _ = aligned_files
    keys = pipeline.keys()
    fewer = write_ids(tmp_path / "target.tsv", lines(parallel_corpus[1])[:400])
    changed = parallel_config(tiny_models, source, target, pipeline.base_dir, method="transtok")
    changed["corpora"]["target"] = id_corpus(fewer)
    other = Pipeline.from_dict(changed, base_dir=pipeline.base_dir).keys()
    assert other["corpus"] != keys["corpus"] and other["init"] != keys["init"]
    without = json.loads(json.dumps(config))
    without["init"]["resources"] = {}
    assert Pipeline.from_dict(without, base_dir=pipeline.base_dir).keys()["init"] != keys["init"]


def test_auto_gives_each_candidate_its_options(transtok_run, monkeypatch):
    """Candidates are plain method names; ``init.options`` reaches the method ``auto`` tries."""
    from langgraft.adapt.pipeline import stages

    config, pipeline, _ = transtok_run
    calls = {}
    real = stages.initialize_embeddings

    def recording(source, tokenizer, method, **kwargs):
        calls[method] = {k: v for k, v in kwargs.items() if k not in ("mode", "resources", "seed", "out", "calibrate_bias", "overwrite")}
        return real(source, tokenizer, method, **kwargs)

    monkeypatch.setattr(stages, "initialize_embeddings", recording)
    auto = json.loads(json.dumps(config))
    auto["init"].update(method="auto", candidates=["mean", "transtok"],
                        options={"transtok": {"fvt_fallback": True, "min_count": 1}})
    init = Pipeline.from_dict(auto, base_dir=pipeline.base_dir).run(stop_after="init")["init"]
    assert calls == {"mean": {}, "transtok": {"fvt_fallback": True, "min_count": 1}}
    comparison = json.loads((init / "comparison.json").read_text())
    assert [c["method"] for c in comparison["candidates"]] == ["mean", "transtok"]


def test_default_candidates_include_the_methods_parallel_text_enables(transtok_run):
    from langgraft.adapt.pipeline.spec import StageContext
    from langgraft.adapt.pipeline.stages import candidate_methods

    _, pipeline, outputs = transtok_run
    spec = pipeline.spec("init")
    ctx = StageContext(pipeline, "init", spec.config, pipeline.run_dir / "unused", {"corpus": outputs["corpus"]})
    candidates = candidate_methods(ctx)
    assert candidates[:3] == ["random", "mean", "fvt"] and "transtok" in candidates


def test_parallel_corpus_without_a_source_corpus_is_refused(tiny_models, aligned_files, tmp_path):
    source, target, _ = aligned_files
    config = parallel_config(tiny_models, source, target, tmp_path, method="transtok")
    del config["corpora"]["source"]
    with pytest.raises(UserError, match=r"^init\.resources\.parallel: corpus needs corpora\.source"):
        Pipeline.from_dict(config, base_dir=tmp_path)
    config["init"]["resources"]["parallel"] = [str(source)]
    with pytest.raises(UserError, match=r"init\.resources\.parallel: give corpus or \[source_file, target_file\]"):
        Pipeline.from_dict(config, base_dir=tmp_path)
    config["init"]["resources"]["parallel"] = "bitext"
    with pytest.raises(UserError, match=r"init\.resources\.parallel: 'bitext' is not allowed"):
        Pipeline.from_dict(config, base_dir=tmp_path)


def test_corpora_sharing_no_ids_fail_at_init_with_one_line(tiny_models, aligned_files, parallel_corpus, tmp_path):
    _, target, _ = aligned_files
    renamed = write_ids(tmp_path / "source.tsv", lines(parallel_corpus[0]), prefix="s")
    config = parallel_config(tiny_models, renamed, target, tmp_path, method="transtok")
    with pytest.raises(UserError, match=r"^init\.resources\.parallel: corpus found no id shared") as info:
        Pipeline.from_dict(config, base_dir=tmp_path).run(stop_after="init")
    assert "\n" not in str(info.value)
