"""Evaluation harness: metrics against hand-computed cases, tagging alignment, retrieval, CLI errors."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from langgraft.adapt.cli import main
from langgraft.errors import UserError
from langgraft.eval.harness import TaskSpec, evaluate
from langgraft.eval.retrieval import evaluate_retrieval, retrieval_accuracy
from langgraft.eval.tasks import (classification_metrics, evaluate_sequence_classification, first_subword_positions,
                                  predict_word_labels)
from tiny import source_sentences, target_sentences


def _classifier(base: Path, out: Path, kind: str, labels: list[str], always: str | None) -> Path:
    """A tiny classifier saved like any fine-tuned checkpoint; ``always`` forces one predicted label."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    auto = AutoModelForSequenceClassification if kind == "seq" else AutoModelForTokenClassification
    torch.manual_seed(0)
    model = auto.from_pretrained(base, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                 label2id={label: i for i, label in enumerate(labels)})
    if always is not None:
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == len(labels)][-1]
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.bias[labels.index(always)] = 5.0
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def genre_classifier(tiny_models, tmp_path_factory) -> Path:
    labels = ["law", "poetry", "gospel"]
    return _classifier(tiny_models["bert"], tmp_path_factory.mktemp("cls"), "seq", labels, "poetry")


# ----------------------------------------------------------------------------- metrics
def test_classification_metrics_hand_computed():
    # class 0: TP 1 FP 1 FN 1 -> F1 .5; class 1: TP 2 FP 1 -> F1 .8; class 2: FN 1 -> F1 0
    scores = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # a predicted class absent from gold still counts in the macro average (scikit-learn convention)
    assert classification_metrics([0, 0], [0, 1])["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert classification_metrics([2, 2], [2, 2]) == {"accuracy": 1.0, "macro_f1": 1.0}


def test_sequence_classification_constant_predictor(genre_classifier, tmp_path):
    data = tmp_path / "genre.tsv"
    data.write_text("text\tlabel\nthe lord said\tlaw\nsing unto\tpoetry\nthe king\tpoetry\n"
                    "and he went\tgospel\nthe law of\tlaw\n", encoding="utf-8")
    run = evaluate(genre_classifier, [f"genre=seq-cls:{data}"])
    metrics = run["results"][0]["metrics"]
    # always "poetry": accuracy 2/5; F1(poetry) = 2*2 / (5 + 2) = 4/7, the other classes 0
    assert metrics["accuracy"] == pytest.approx(2 / 5)
    assert metrics["macro_f1"] == pytest.approx((4 / 7) / 3)
    assert metrics["examples"] == 5
    assert run["results"][0]["name"] == "genre"

    jsonl = tmp_path / "genre.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": l}) + "\n"
                             for t, l in [("a b", "poetry"), ("c d", "law")]), encoding="utf-8")
    assert evaluate(genre_classifier, [f"seq-cls:{jsonl}"])["results"][0]["metrics"]["accuracy"] == 0.5


@pytest.mark.slow
def test_sequence_classification_batching_matches_one_by_one(tiny_models, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = _classifier(tiny_models["xlmr"], tmp_path / "x", "seq", ["a", "b", "c"], None)
    model, tok = AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    rng = random.Random(0)
    examples = [(s, rng.choice("abc")) for s in source_sentences(40, seed=5)]
    batched = evaluate_sequence_classification(model, tok, examples, batch_size=16)
    with torch.no_grad():
        pred = [int(model(**tok(t, return_tensors="pt")).logits.argmax(-1)) for t, _ in examples]
    expected = classification_metrics(["abc".index(label) for _, label in examples], pred)
    assert batched["accuracy"] == pytest.approx(expected["accuracy"])
    assert batched["macro_f1"] == pytest.approx(expected["macro_f1"])


# ----------------------------------------------------------------------------- tagging
def test_first_subword_positions_byte_level_offsets():
    # "the king" as byte-level BPE: "the" (0,3), "Ġki" (3,6) carries the space, "ng" (6,8)
    first = first_subword_positions([(0, 3), (3, 6), (6, 8)], np.array([0, 4]), np.array([3, 8]))
    assert first.tolist() == [0, 1]
    # special tokens (0, 0) and a lone "▁" on the space are skipped; an uncovered word gets -1
    first = first_subword_positions([(0, 0), (0, 3), (3, 4), (0, 0)], np.array([0, 4]), np.array([3, 8]))
    assert first.tolist() == [1, -1]


@pytest.mark.slow
def test_alignment_matches_word_ids_first_subword(tiny_models):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForTokenClassification.from_pretrained(tiny_models["bert"], num_labels=5)
    tok = AutoTokenizer.from_pretrained(tiny_models["bert"])
    sentences = [s.rstrip(".").split() for s in target_sentences(12, seed=3)]  # unseen words: many pieces
    predicted = predict_word_labels(model, tok, sentences, batch_size=5)
    for words, labels in zip(sentences, predicted):
        encoded = tok(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            token_pred = model(**encoded).logits.argmax(-1)[0]
        word_ids = encoded.word_ids()
        reference = [int(token_pred[word_ids.index(w)]) for w in range(len(words))]
        assert labels == reference


def test_token_classification_conllu_upos_accuracy(tiny_models, tmp_path):
    model_dir = _classifier(tiny_models["llama"], tmp_path / "pos", "token", ["DET", "NOUN", "VERB"], "NOUN")
    rows = ["# sent_id = 1", "1\tthe\tthe\tDET\t_\t_\t2\tdet\t_\t_", "2\tking\tking\tNOUN\t_\t_\t3\tnsubj\t_\t_",
            "3-4\tsaidunto\t_\t_\t_\t_\t_\t_\t_\t_", "3\tsaid\tsay\tVERB\t_\t_\t0\troot\t_\t_",
            "4\tunto\tunto\tADP\t_\t_\t3\tcase\t_\t_", ""]
    data = tmp_path / "test.conllu"
    data.write_text("\n".join(rows[:5] + rows[6:]) + "\n" + "\n".join(["1\tland\tland\tNOUN\t_\t_\t0\troot\t_\t_", ""]),
                    encoding="utf-8")
    metrics = evaluate(model_dir, [f"token-cls:{data}"])["results"][0]["metrics"]
    # words: the/DET king/NOUN said/VERB | land/NOUN (the 3-4 range line is skipped); always NOUN -> 2/4
    assert metrics["words"] == 4 and metrics["sentences"] == 2
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert "f1" not in metrics  # UPOS tags are not entity spans


@pytest.mark.slow
def test_token_classification_iob_entity_f1(tiny_models, tmp_path):
    model_dir = _classifier(tiny_models["gpt2"], tmp_path / "ner", "token", ["O", "B-PER", "I-PER"], "B-PER")
    data = tmp_path / "test.iob"
    data.write_text("-DOCSTART- O\n\nJohn B-PER\nsmith I-PER\nwent O\n\nMary B-PER\nran O\n", encoding="utf-8")
    metrics = evaluate(model_dir, [f"token-cls:{data}"])["results"][0]["metrics"]
    # every word predicted as its own PER entity: 5 predicted, 2 gold, 1 exact match (Mary)
    assert metrics["precision"] == pytest.approx(1 / 5)
    assert metrics["recall"] == pytest.approx(1 / 2)
    assert metrics["f1"] == pytest.approx(2 * 0.2 * 0.5 / 0.7)
    assert metrics["accuracy"] == pytest.approx(2 / 5)
    assert metrics["unaligned_words"] == 0


# ----------------------------------------------------------------------------- retrieval
def test_retrieval_accuracy_hand_computed():
    queries = torch.eye(3)
    keys = torch.eye(3)[[0, 2, 1]]  # query 0 finds its key first; queries 1 and 2 find each other's
    scores = retrieval_accuracy(queries, keys, ks=(1, 3), block_size=2)
    assert scores[1] == pytest.approx(1 / 3)
    assert scores[3] == 1.0


@pytest.mark.slow
def test_retrieval_identical_and_shuffled(tiny_models):
    from transformers import AutoModel, AutoTokenizer

    side = (AutoModel.from_pretrained(tiny_models["xlmr"]), AutoTokenizer.from_pretrained(tiny_models["xlmr"]))
    sentences = source_sentences(60, seed=7)
    same = evaluate_retrieval(side, side, list(zip(sentences, sentences)), batch_size=16)
    for key in ("top1_src2tgt", "top1_tgt2src", "top10_src2tgt", "top10_tgt2src"):
        assert same[key] == 1.0
    shuffled = sentences[:]
    random.Random(0).shuffle(shuffled)
    other = evaluate_retrieval(side, side, list(zip(sentences, shuffled)), batch_size=16)
    assert other["top1"] < 0.5 and other["pairs"] == 60


def test_inputs_longer_than_the_position_table_are_truncated(tiny_models, tmp_path):
    """The tiny models have 128 positions: a 400-word verse must be cut to fit, not crash."""
    from transformers import AutoModel, AutoTokenizer

    long_text = " ".join(source_sentences(60, seed=9))
    side = (AutoModel.from_pretrained(tiny_models["bert"]), AutoTokenizer.from_pretrained(tiny_models["bert"]))
    result = evaluate_retrieval(side, side, [(long_text, long_text), ("the king", "the king")])
    assert result["pairs"] == 2 and result["top1"] == 1.0
    classifier = _classifier(tiny_models["bert"], tmp_path / "cls", "seq", ["a", "b"], always="b")
    data = tmp_path / "long.tsv"
    data.write_text(f"{long_text}\tb\nthe king\ta\n", encoding="utf-8")
    from transformers import AutoModelForSequenceClassification

    metrics = evaluate_sequence_classification(AutoModelForSequenceClassification.from_pretrained(classifier),
                                                AutoTokenizer.from_pretrained(classifier), data)
    assert metrics["accuracy"] == 0.5


def test_retrieval_two_models_and_id_keyed_files(tiny_models, tmp_path):
    src = source_sentences(30, seed=8)
    ids = [f"GEN.1.{i}" for i in range(30)]
    order = list(range(30))
    random.Random(1).shuffle(order)
    (tmp_path / "en.tsv").write_text("".join(f"{ids[i]}\t{src[i]}\n" for i in range(30)), encoding="utf-8")
    (tmp_path / "xx.tsv").write_text("".join(f"{ids[i]}\t{src[i]}\n" for i in order), encoding="utf-8")
    run = evaluate(tiny_models["bert"], [f"retrieval:{tmp_path / 'en.tsv'},{tmp_path / 'xx.tsv'}"])
    assert run["results"][0]["metrics"]["top1"] == 1.0  # joined on ids, not on line order

    (tmp_path / "en.txt").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "xx.txt").write_text("\n".join(target_sentences(30, seed=8)) + "\n", encoding="utf-8")
    run = evaluate(tiny_models["xlmr"], [f"retrieval:{tmp_path / 'en.txt'},{tmp_path / 'xx.txt'}"],
                   source_model=tiny_models["bert"], layer=-1)
    metrics = run["results"][0]["metrics"]
    assert metrics["pairs"] == 30 and metrics["layer"] == [2, 2]
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("top1", "top10"))


# ----------------------------------------------------------------------------- intrinsic wrappers
@pytest.mark.slow
def test_bpc_and_fertility_tasks(tiny_models, target_corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from langgraft.eval.bpc import compute_bpc

    run = evaluate(tiny_models["gpt2"], [f"bpc:{target_corpus}", f"fertility:{target_corpus}"],
                   source_model=tiny_models["bert"])
    bpc, fertility = (result["metrics"] for result in run["results"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"])
    tok = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    assert bpc["bpc"] == pytest.approx(compute_bpc(model, tok, target_corpus).bpc)
    assert fertility["fertility"] == pytest.approx(fertility["tokens"] / fertility["words"])
    assert 0.0 <= fertility["overlap"] <= 1.0


# ----------------------------------------------------------------------------- specs and errors
def test_task_spec_parsing():
    spec = TaskSpec.parse("genre=seq-cls:data/test.tsv")
    assert (spec.kind, spec.files, spec.name) == ("seq-cls", ("data/test.tsv",), "genre")
    spec = TaskSpec.parse("retrieval:a.txt,b.txt")
    assert spec.files == ("a.txt", "b.txt") and spec.name == "retrieval:a.txt,b.txt"
    for bad in ("seq-cls", "nope:x.tsv", "retrieval:a.txt", "bpc:a,b"):
        with pytest.raises(UserError):
            TaskSpec.parse(bad)


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("langgraft: error:")
    return err


def test_cli_errors(genre_classifier, tiny_models, tmp_path, capsys):
    data = tmp_path / "bad.tsv"
    data.write_text("some text\tpoetry\nother text\tprophecy\n", encoding="utf-8")
    err = _one_line_error(capsys, ["eval", "--model", str(genre_classifier), "--task", f"seq-cls:{data}"])
    assert "'prophecy'" in err and "poetry" in err
    missing = tmp_path / "no.tsv"
    err = _one_line_error(capsys, ["eval", "--model", str(genre_classifier), "--task", f"seq-cls:{missing}"])
    assert "no.tsv" in err
    # a checkpoint without a trained classification head is refused, not scored with a random head
    err = _one_line_error(capsys, ["eval", "--model", str(tiny_models["bert"]), "--task", f"seq-cls:{data}"])
    assert "head" in err
    _one_line_error(capsys, ["eval", "--model", str(genre_classifier)])
    _one_line_error(capsys, ["eval", "report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "r")])


@pytest.mark.slow
def test_cli_json_and_bpc_subcommand(tiny_models, target_corpus, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["eval", "--model", str(tiny_models["bert"]), "--task", f"fertility:{target_corpus}",
                 "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text(encoding="utf-8"))
    assert printed["results"][0]["metrics"]["fertility"] > 1.0
    assert main(["eval", "bpc", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bpc"] > 0


# ----------------------------------------------------------------------------- modules
@pytest.fixture(scope="module")
def lora_modules(tiny_models, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A LoRA language module and a LoRA genre task module on the tiny BERT (a couple of steps each)."""
    from langgraft.adapt.pretrain.language_modules import train_language_module
    from langgraft.adapters import TrainOptions, train_task_module

    root = tmp_path_factory.mktemp("modules")
    train = root / "train.tsv"
    train.write_text("".join(f"{s}\t{'royal' if 'king' in s.lower() else 'other'}\n"
                             for s in source_sentences(40, seed=2)), encoding="utf-8")
    target = root / "target.txt"
    target.write_text("\n".join(target_sentences(40, seed=2)) + "\n", encoding="utf-8")
    options = TrainOptions(max_steps=2, per_device_train_batch_size=8, save_steps=1000, logging_steps=1000)
    task = train_task_module("lora", tiny_models["bert"], train, task="seq-cls", out=root / "task", options=options)
    lang = train_language_module("lora", tiny_models["bert"], [target], language="xx", out=root / "lang",
                                 options=options)
    return lang, task, train


@pytest.mark.slow
def test_modules_are_composed_like_load_composed(tiny_models, lora_modules, tmp_path):
    from langgraft.adapters import load_composed
    from langgraft.eval.retrieval import evaluate_retrieval

    lang, task, train = lora_modules
    pairs = tmp_path / "a.txt", tmp_path / "b.txt"
    pairs[0].write_text("\n".join(source_sentences(20, seed=4)) + "\n", encoding="utf-8")
    pairs[1].write_text("\n".join(target_sentences(20, seed=4)) + "\n", encoding="utf-8")
    run = evaluate(tiny_models["bert"], [f"seq-cls:{train}", f"retrieval:{pairs[0]},{pairs[1]}"], modules=[lang, task])
    seq_cls, retrieval = ({**result["metrics"], "intervals": result["intervals"]} for result in run["results"])

    model, tok = load_composed(tiny_models["bert"], [lang, task])
    assert seq_cls == evaluate_sequence_classification(model, tok, train)
    lm, tok = load_composed(tiny_models["bert"], [lang])  # retrieval uses the language module only
    assert retrieval == evaluate_retrieval((lm, tok), (lm, tok), pairs)

    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tprophecy\n", encoding="utf-8")
    with pytest.raises(UserError, match="'prophecy'"):
        evaluate(tiny_models["bert"], [f"seq-cls:{bad}"], modules=[task])
