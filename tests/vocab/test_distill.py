"""Embedding distillation (langgraft.vocab.distill): alignment, which rows train, the measured loss, resume, bad input."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_hostile_inputs import run_refused
from tiny import TOKENIZER_BUILDERS, target_sentences

from langgraft import UserError
from langgraft.adapt.cli import main
from langgraft.models import load_tokenizer
from langgraft.vocab.distill import DISTILL_FILE, DistillOptions, distill_embeddings, distill_training
from langgraft.vocab.distill.align import aligned_positions, encode
from langgraft.vocab.transfer import initialize_embeddings

HOSTILE = [
    "Ndakuona bwanji kumudzi, ana akulira.",
    "emoji 😀👍🏽 in the middle 🙂 and at the end 🎉",
    "combining e\u0301 and n\u0303 marks, naïve café",
    "漢字とかなの文章、混在 mixed 中文 text",
    "  leading and   multiple spaces\tand a tab",
]
FAST = dict(max_steps=4, learning_rate=1e-2, per_device_train_batch_size=8, use_cpu=True, save_steps=2,
            logging_steps=1, seed=3)
SMALL = dict(snippets_per_token=4, held_out=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (on a busy machine, threads wait on each other); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def inits(tiny_models, extended_tokenizers, target_tokenizers, tmp_path_factory) -> dict[str, Path]:
    """fvt init outputs: extension mode (gpt2 tied head, llama untied, bert) and replacement mode (xlmr)."""
    root = tmp_path_factory.mktemp("distill_inits")
    out = {}
    for family in ("gpt2", "llama", "bert"):
        out[family] = initialize_embeddings(str(tiny_models[family]), str(extended_tokenizers[family]), "fvt",
                                            out=root / family) and root / family
    initialize_embeddings(str(tiny_models["xlmr"]), str(target_tokenizers["xlmr"]), "fvt", mode="replace",
                          out=root / "xlmr")
    out["xlmr"] = root / "xlmr"
    return out


# ----------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("family", ["bert", "gpt2", "xlmr", "llama"])
def test_aligned_positions_end_at_the_same_character_on_hostile_text(family, tiny_models, target_tokenizers):
    teacher_tok, student_tok = load_tokenizer(tiny_models[family]), load_tokenizer(target_tokenizers[family])
    teacher, student = encode(teacher_tok, HOSTILE, 256), encode(student_tok, HOSTILE, 256)
    for text, t, s in zip(HOSTILE, teacher, student):
        t_pos, s_pos = aligned_positions(t, s)
        ends = [t.ends[p] for p in t_pos]
        assert ends == [s.ends[p] for p in s_pos] and ends == sorted(set(ends)) and ends
        # exactly the offsets where both end a token, each the last token ending there
        assert set(ends) == {e for e in t.ends if e > 0} & {e for e in s.ends if e > 0}
        assert all(t.ends[p + 1:].count(t.ends[p]) == 0 for p in t_pos)
        # no added special token ([CLS], <s>, </s>) aligns; an unknown token read from the text may
        for tok, item, positions in ((teacher_tok, t, t_pos), (student_tok, s, s_pos)):
            frame = set(tok.all_special_ids) - {tok.unk_token_id}
            assert not {item.input_ids[p] for p in positions} & frame
        assert max(ends) == len(text.rstrip()), (text, max(ends))  # both read the whole text


def test_a_tokenizer_aligned_with_itself_aligns_every_token(tiny_models):
    tok = load_tokenizer(tiny_models["gpt2"])
    item = encode(tok, ["Kumudzi kwathu ndi kutali 😀."], 128)[0]
    teacher, student = aligned_positions(item, item)
    assert teacher == student
    assert len(teacher) == len({e for e in item.ends if e > 0})


# ----------------------------------------------------------------------------- what trains
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_extend_mode_trains_only_new_rows_and_lowers_the_held_out_loss(family, inits, target_corpus, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    result = distill_embeddings(inits[family], options=DistillOptions(**SMALL), training=distill_training(**FAST),
                                corpus=[target_corpus], out=out)
    start = result.summary["new_rows_start"]
    before, after = weights(inits[family]), weights(out)
    embedding = next(k for k in before if "embed_tokens" in k or "wte" in k)
    assert torch.equal(before[embedding][:start], after[embedding][:start])  # source rows bit-identical
    changed = (before[embedding][start:] != after[embedding][start:]).any(dim=1)
    assert changed.sum() == result.summary["data"]["tokens_with_snippets"] > 0  # served new rows moved, no others
    for key in before:
        if key != embedding and "lm_head" not in key:
            assert torch.equal(before[key], after[key]), key  # the body is untouched
    held = result.summary["held_out_mse"]
    assert held["after"] < held["before"]  # measured on held-out snippets before and after
    model = AutoModelForCausalLM.from_pretrained(out)  # a stock checkpoint
    if model.config.tie_word_embeddings:
        assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    else:
        head = next(k for k in before if "lm_head" in k)
        assert torch.equal(before[head][:start], after[head][:start])
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model(**tokenizer("Ndakuona", return_tensors="pt")).logits.shape[-1] == model.config.vocab_size
    summary = json.loads((out / DISTILL_FILE).read_text())
    assert summary["teacher"] and summary["loss"]["layers"] == [-1] and summary["data"]["snippets"] > 0
    assert summary["data"]["sha256"] == {str(target_corpus): hashlib.sha256(target_corpus.read_bytes()).hexdigest()}
    assert (out / "transfer_summary.json").is_file() and (out / "metrics.jsonl").is_file()
    assert not (out / "checkpoints").exists()


@pytest.mark.slow
def test_replace_mode_keeps_special_and_padding_rows(inits, target_corpus, tmp_path):
    out = tmp_path / "out"
    result = distill_embeddings(inits["xlmr"], options=DistillOptions(**SMALL), training=distill_training(**FAST),
                                corpus=[target_corpus], out=out)
    tokenizer = load_tokenizer(out)
    key = "roberta.embeddings.word_embeddings.weight"
    before, after = weights(inits["xlmr"])[key], weights(out)[key]
    frozen = sorted(set(tokenizer.all_special_ids) | set(range(len(tokenizer), before.shape[0])))
    assert torch.equal(before[frozen], after[frozen])
    assert (before != after).any(dim=1).any()
    assert result.summary["held_out_mse"]["after"] < result.summary["held_out_mse"]["before"]


def test_next_token_and_logit_kl_losses_train_the_untied_head_rows_too(tiny_models, extended_tokenizers, inits,
                                                                        target_corpus, tmp_path):
    padded = tmp_path / "padded"  # rows padded past the tokenizer: they must not move
    initialize_embeddings(str(tiny_models["llama"]), str(extended_tokenizers["llama"]), "fvt", out=padded,
                          pad_to_multiple_of=64)
    options = DistillOptions(ntp_weight=1.0, logit_kl_weight=0.5, layers=[1, -1], **SMALL)
    result = distill_embeddings(padded, options=options, training=distill_training(**FAST), corpus=[target_corpus],
                                out=tmp_path / "out")
    start, tokens = result.summary["new_rows_start"], len(load_tokenizer(padded))
    for key in ("lm_head.weight", "model.embed_tokens.weight"):
        before, after = weights(padded)[key], weights(tmp_path / "out")[key]
        assert before.shape[0] > tokens
        assert torch.equal(before[:start], after[:start]) and torch.equal(before[tokens:], after[tokens:])
        assert (before[start:tokens] != after[start:tokens]).any()
    assert result.summary["loss"]["teacher_cached"] is False
    assert result.summary["held_out_mse"]["after"] < result.summary["held_out_mse"]["before"]
    with pytest.raises(UserError, match="causal LM"):
        distill_embeddings(inits["bert"], options=DistillOptions(ntp_weight=1.0), corpus=[target_corpus],
                           out=tmp_path / "mlm")


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_tensors_as_an_uninterrupted_one(inits, target_corpus, tmp_path):
    from transformers import TrainerCallback

    class StopAtThree(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Interrupt

    run = dict(options=DistillOptions(**SMALL), training=distill_training(**FAST), corpus=[target_corpus])
    distill_embeddings(inits["llama"], out=tmp_path / "whole", **run)
    with pytest.raises(Interrupt):
        distill_embeddings(inits["llama"], out=tmp_path / "cut", callbacks=[StopAtThree()], **run)
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(UserError, match="--resume"):
        distill_embeddings(inits["llama"], out=tmp_path / "cut", **run)
    result = distill_embeddings(inits["llama"], out=tmp_path / "cut", resume=True, **run)
    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)  # same seed, same tensors, resume included
    steps = [r["step"] for r in map(json.loads, (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines())
             if "loss" in r]
    assert steps == [1, 2, 3, 4] and result.summary["steps"] == 4


def test_parallel_teacher_through_the_cli(inits, parallel_corpus, tmp_path, capsys):
    source, target, _ = parallel_corpus
    out = tmp_path / "out"
    code = main(["distill", "--model", str(inits["bert"]), "--teacher-text", "parallel", "--parallel", str(source),
                 str(target), "--out", str(out), "--max-pairs", "200", "--epochs", "0.25", "--learning-rate", "1e-2",
                 "--per-device-train-batch-size", "16", "--use-cpu", "--seed", "1"])
    assert code == 0
    assert "parallel text, 200 sentence pairs" in capsys.readouterr().out
    summary = json.loads((out / DISTILL_FILE).read_text())
    assert summary["data"]["pairs"] == 200 and summary["data"]["held_out_items"] == 20
    assert summary["steps"] == 6  # a quarter of 180 training pairs x 2 sides, 16 per step
    assert summary["held_out_mse"]["after"] < summary["held_out_mse"]["before"]
    before, after = weights(inits["bert"]), weights(out)
    start = summary["new_rows_start"]
    key = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(before[key][:start], after[key][:start])


@pytest.mark.slow
def test_word_aligned_positions_add_their_loss(inits, parallel_corpus, tmp_path):
    source, target, _ = parallel_corpus
    options = DistillOptions(teacher_text="parallel", word_weight=1.0, max_pairs=80, held_out=8)
    result = distill_embeddings(inits["bert"], options=options, training=distill_training(**FAST),
                                parallel=(source, target), out=tmp_path / "out")
    # the synthetic translation is word for word: nearly every target word is linked to its source word
    assert result.summary["data"]["word_links"] > 4 * 80
    assert result.summary["held_out_mse"]["after"] < result.summary["held_out_mse"]["before"]
    without = dataclasses.replace(options, word_weight=0.0)
    distill_embeddings(inits["bert"], options=without, training=distill_training(**FAST), parallel=(source, target),
                       out=tmp_path / "without")
    first = [next(r["loss"] for r in map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines())
                  if "loss" in r) for name in ("out", "without")]
    assert first[0] > first[1]  # the same first batch from the same rows: the word term adds to the loss
    with pytest.raises(UserError, match="word_weight applies to teacher_text parallel"):
        DistillOptions(word_weight=1.0)


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_are_one_line_and_write_nothing(inits, target_corpus, source_corpus, parallel_corpus, tmp_path,
                                                   capsys):
    source, target, _ = parallel_corpus
    short = tmp_path / "short.txt"
    short.write_text("".join(line + "\n" for line in target.read_text().splitlines()[:5]), encoding="utf-8")
    base = ["distill", "--model", inits["bert"], "--out", tmp_path / "out", "--max-steps", "2", "--use-cpu"]
    run_refused([*base, "--corpus", tmp_path / "missing.txt"], tmp_path, "missing.txt: file not found", capsys)
    run_refused(base, tmp_path, "needs target-language text", capsys)
    run_refused([*base, "--teacher-text", "parallel", "--parallel", source, short], tmp_path, "not aligned", capsys)
    run_refused([*base, "--teacher-text", "parallel"], tmp_path, "needs --parallel", capsys)
    run_refused(["distill", "--model", target_corpus.parent, "--corpus", target_corpus, "--out", tmp_path / "o"],
                tmp_path, "transfer_summary.json", capsys)


def test_a_corpus_without_new_tokens_is_refused(inits, source_corpus, tmp_path, capsys):
    # the source-language corpus never uses the target pieces the tokenizer added
    run_refused(["distill", "--model", inits["gpt2"], "--corpus", source_corpus, "--out", tmp_path / "out",
                 "--max-steps", "2"], tmp_path, "no snippet", capsys)


def test_a_teacher_that_cannot_read_the_script_is_refused(tiny_models, tmp_path, capsys):
    cjk = [f"漢字{chr(0x4E00 + i % 200)}{chr(0x4E80 + i % 150)}文章です。第{i}番" for i in range(300)]
    corpus = tmp_path / "data" / "cjk.txt"
    corpus.parent.mkdir()
    corpus.write_text("\n".join(cjk) + "\n", encoding="utf-8")
    TOKENIZER_BUILDERS["bert"](tmp_path / "data" / "tok", cjk)
    initialize_embeddings(str(tiny_models["bert"]), str(tmp_path / "data" / "tok"), "mean", mode="replace",
                          out=tmp_path / "data" / "init")
    run_refused(["distill", "--model", tmp_path / "data" / "init", "--corpus", corpus, "--out", tmp_path / "out",
                 "--max-steps", "2"], tmp_path, "unknown token", capsys)


def test_options_that_teach_nothing_are_refused():
    with pytest.raises(UserError, match="nothing to learn"):
        DistillOptions(hidden_weight=0)
    with pytest.raises(UserError, match="snippets_per_token must be >= 1"):
        DistillOptions(snippets_per_token=0)


@pytest.mark.slow
@pytest.mark.parametrize("teacher_text", ["same", "parallel"])
def test_pipeline_distill_stage_feeds_pretraining(teacher_text, tiny_models, source_corpus, target_corpus,
                                                  parallel_corpus, tmp_path):
    """Same text: init -> distill -> pretrain, with a "distilled" evaluation setup. Parallel text without
    pretraining: the distilled model is the adapted one."""
    from pipeline_tiny import tiny_pipeline

    from langgraft import Pipeline

    parallel = [str(parallel_corpus[0]), str(parallel_corpus[1])] if teacher_text == "parallel" else None
    pretrain = {"max_steps": 2, "embedding_steps": 2, "per_device_train_batch_size": 4, "max_seq_length": 32,
                "save_steps": 2, "eval_steps": 2, "eval_documents": 10} if teacher_text == "same" else None
    config = tiny_pipeline(tiny_models["bert"], source_corpus, target_corpus, tmp_path,
                           init={"method": "fvt", "resources": {"parallel": parallel}},
                           tokenizer={"mode": "extend", "vocab_size": 30},
                           distill={"teacher_text": teacher_text, "max_steps": 2, "snippets_per_token": 2,
                                    "max_pairs": 40, "per_device_train_batch_size": 4, "learning_rate": 1e-2,
                                    "use_cpu": True},
                           pretrain=pretrain, evaluation={"max_documents": 10}, publish={})
    pipeline = Pipeline.from_dict(config, base_dir=tmp_path)
    names = [s.name for s in pipeline.stages]
    assert names.index("init") < names.index("distill") < names.index("evaluate")
    outputs = pipeline.run()
    summary = json.loads((outputs["distill"] / "model" / DISTILL_FILE).read_text())
    assert summary["teacher_text"] == teacher_text and summary["steps"] == 2
    assert summary["data"]["parallel"] == (parallel or [])
    evaluation = json.loads((outputs["evaluate"] / "evaluation.json").read_text())
    setups = {r["setup"] for r in evaluation["rows"]}
    if pretrain:
        record = json.loads((outputs["pretrain"] / "model" / "langgraft_pretrain.json").read_text())
        assert record["model"] == str(outputs["distill"] / "model")
        assert {"init", "distilled", "adapted"} <= setups
    else:
        adapted = next(job["model"] for job in evaluation["jobs"] if job["setup"] == "adapted")
        assert adapted == str(outputs["distill"] / "model") and "distilled" not in setups


def test_pipeline_parallel_teacher_needs_parallel_text(tiny_models, source_corpus, target_corpus, tmp_path):
    from pipeline_tiny import tiny_pipeline

    from langgraft import Pipeline

    config = tiny_pipeline(tiny_models["bert"], source_corpus, target_corpus, tmp_path,
                           distill={"teacher_text": "parallel"})
    with pytest.raises(UserError, match="init.resources.parallel"):
        Pipeline.from_dict(config, base_dir=tmp_path).stages


def test_a_report_of_a_distillation_log_without_a_loss_record_has_no_empty_plot(tmp_path):
    """A run shorter than its logging interval logs only the held-out MSE: the report leaves the curve plot out."""
    from langgraft.eval.report import write_report

    log = tmp_path / "run" / "metrics.jsonl"
    log.parent.mkdir()
    log.write_text('{"step": 0, "phase": "distill", "held_out_mse": 0.5}\n'
                   '{"step": 2, "phase": "distill", "held_out_mse": 0.4}\n', encoding="utf-8")
    rows = [{"setup": "adapted", "task": "bpc", "metric": "bpc", "value": 3.0}]
    report = write_report([{"rows": rows}, log], tmp_path / "report")
    assert not (tmp_path / "report" / "loss_curves.png").exists() and "loss_curves.png" not in report.read_text()


def test_sequences_never_exceed_the_models_positions(inits, target_corpus, tmp_path):
    """A --max-seq-length beyond the position table (128 in the tiny GPT-2) is cut to it instead of indexing past it."""
    options = DistillOptions(snippets_per_token=2, held_out=8, snippet_tokens=400, max_seq_length=4096)
    result = distill_embeddings(inits["gpt2"], options=options, training=distill_training(**{**FAST, "max_steps": 1}),
                                corpus=[target_corpus], out=tmp_path / "out")
    assert result.summary["data"]["max_seq_length"] == 128
