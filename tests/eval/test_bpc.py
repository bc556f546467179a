"""Bits per character: fixed whole-word masks, exact CLM coverage, agreement with a plain forward pass."""
from __future__ import annotations

import json
import math

import pytest
import torch
from tiny import target_sentences

from langgraft.adapt.cli import main
from langgraft.errors import UserError
from langgraft.eval.bpc import compute_bpc
from langgraft.lm import clm_windows, masked_word_spans, mlm_windows, word_mask_draws
from langgraft.models import load_language_model, load_tokenizer

TEXTS = target_sentences(40, seed=5)


def _loaded(tiny_models, family):
    model, objective = load_language_model(tiny_models[family])
    return model, load_tokenizer(tiny_models[family]), objective


def _reference_bpc(model, windows, characters):
    """One window at a time, full logits, no hooks: the definition written out."""
    nll = 0.0
    with torch.no_grad():
        for window in windows:
            logits = model(input_ids=torch.tensor([window.input_ids])).logits[0]
            nll += torch.nn.functional.cross_entropy(logits[window.positions], torch.tensor(window.targets),
                                                     reduction="sum").item()
    return nll / math.log(2) / characters


def test_word_masks_are_fixed_and_near_the_rate():
    draws = word_mask_draws(0, 3, 20000)
    assert abs((draws < 0.15).mean() - 0.15) < 0.01
    assert (word_mask_draws(0, 3, 10) == draws[:10]).all()  # a word's draw does not depend on document length
    assert not (word_mask_draws(1, 3, 10) == draws[:10]).all()
    text = "Alpha beta  gamma delta"
    spans = masked_word_spans(text, 0, seed=0, rate=1.0)
    assert [text[s:e] for s, e in spans] == ["Alpha", "beta", "gamma", "delta"]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "xlmr", "gpt2", "llama"])
def test_bpc_matches_plain_forward(tiny_models, family):
    model, tokenizer, objective = _loaded(tiny_models, family)
    result = compute_bpc(model, tokenizer, TEXTS, max_length=24, batch_size=5)
    if objective == "mlm":
        windows, characters = mlm_windows(tokenizer, TEXTS, 0, 0, 0.15, 24)
    else:
        windows, characters = clm_windows(tokenizer, TEXTS, 24)
    assert result.objective == objective and result.characters == characters
    assert result.tokens == sum(len(w.targets) for w in windows)
    assert result.bpc == pytest.approx(_reference_bpc(model, windows, characters), rel=1e-4)
    assert result.loss == pytest.approx(result.nll_bits * math.log(2) / result.tokens)
    assert compute_bpc(model, tokenizer, TEXTS, max_length=24, batch_size=5) == result  # deterministic
    assert compute_bpc(model, tokenizer, TEXTS, max_length=24, batch_size=3).bpc == pytest.approx(result.bpc, rel=1e-6)


def test_mlm_masks_whole_words_and_the_same_words_for_every_tokenizer(tiny_models):
    results = {}
    for family in ("bert", "xlmr"):
        model, tokenizer, _ = _loaded(tiny_models, family)
        results[family] = compute_bpc(model, tokenizer, TEXTS)
        windows, _ = mlm_windows(tokenizer, TEXTS[:1], 0, 0, 1.0, 512)  # rate 1: every word masked
        text_ids = [i for i in windows[0].input_ids if i not in tokenizer.all_special_ids]
        assert text_ids == [] and len(windows[0].targets) == len(tokenizer(TEXTS[0], add_special_tokens=False).input_ids)
    # characters of the masked words do not depend on the tokenizer (bert lowercases, xlmr does not)
    assert results["bert"].characters == results["xlmr"].characters
    masked = sum(e - s for i, t in enumerate(TEXTS) for s, e in masked_word_spans(t, i, 0, 0.15))
    assert results["bert"].characters == masked


def test_clm_scores_every_token_once_whatever_the_window(tiny_models):
    model, tokenizer, _ = _loaded(tiny_models, "gpt2")
    text_tokens = sum(len(ids) for ids in tokenizer(TEXTS, add_special_tokens=False).input_ids)
    small = compute_bpc(model, tokenizer, TEXTS, max_length=8)
    large = compute_bpc(model, tokenizer, TEXTS, max_length=128)
    assert small.tokens == large.tokens == text_tokens
    assert small.characters == large.characters == sum(len(t) for t in TEXTS)


def test_files_and_texts_agree(tiny_models, tmp_path):
    model, tokenizer, _ = _loaded(tiny_models, "bert")
    corpus = tmp_path / "dev.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert compute_bpc(model, tokenizer, corpus) == compute_bpc(model, tokenizer, TEXTS)


def test_cli_json_and_errors(tiny_models, tmp_path, capsys):
    corpus = tmp_path / "dev.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["eval", "bpc", "--model", str(tiny_models["llama"]), "--corpus", str(corpus), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"bpc", "loss", "tokens", "characters"} <= record.keys() and record["bpc"] > 0

    from transformers import BertModel

    headless = tmp_path / "headless"
    BertModel.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    load_tokenizer(tiny_models["bert"]).save_pretrained(headless)
    assert main(["eval", "bpc", "--model", str(headless), "--corpus", str(corpus)]) == 2
    assert "langgraft head recover" in capsys.readouterr().err
    with pytest.raises(UserError, match="head recover"):
        compute_bpc(BertModel.from_pretrained(tiny_models["bert"]), load_tokenizer(tiny_models["bert"]), TEXTS)
