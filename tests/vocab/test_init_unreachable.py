"""Extension pieces the tokenizer never emits get the mean source row (``unreachable``), on a tiny tied GPT-2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from langgraft.adapt.cli import main
from langgraft.lm import clm_windows, window_logits
from langgraft.models import load_tokenizer
from langgraft.vocab.init.base import TransferContext
from langgraft.vocab.checkpoint import open_source
from langgraft.vocab.transfer import TRANSFER_SUMMARY_FILE, transfer


@pytest.fixture(scope="module")
def appended(tiny_models, target_corpus, tmp_path_factory) -> Path:
    """The tiny GPT-2 tokenizer extended as other tools do it (and `tokenizer extend` did before it continued
    the source's BPE training): the first 40 new merges of a BPE trained on the target text alone, appended
    after the source's merges. Some can never fire, which is what the ``unreachable`` rule is for."""
    out = tmp_path_factory.mktemp("appended")
    source = load_tokenizer(tiny_models["gpt2"])
    source.save_pretrained(out)
    spec = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    target = Tokenizer(models.BPE())
    target.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    target.train_from_iterator(target_corpus.read_text(encoding="utf-8").splitlines(), trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    assert len(vocab) == len(source)  # new ids follow the model vocabulary
    for left, right in json.loads(target.to_str())["model"]["merges"]:
        if left + right not in vocab and left in vocab and right in vocab and len(vocab) < len(source) + 40:
            vocab[left + right] = len(vocab)
            merges.append([left, right])
    assert len(vocab) == len(source) + 40
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return out


def _context(tiny_models, appended) -> TransferContext:
    return TransferContext(open_source(tiny_models["gpt2"]), load_tokenizer(tiny_models["gpt2"]),
                           load_tokenizer(appended), mode="extend",
                           original_vocab_size=len(load_tokenizer(tiny_models["gpt2"])))


def _emitted(tokenizer, corpus) -> set[int]:
    texts = corpus.read_text(encoding="utf-8").splitlines()
    return {i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids}


def test_a_piece_marked_unreachable_is_never_emitted_and_the_others_are(tiny_models, appended,
                                                                       target_corpus):
    ctx = _context(tiny_models, appended)
    unreachable = set(ctx.new_token_ids[ctx.unreachable].tolist())
    emitted = _emitted(ctx.target_tokenizer, target_corpus) & set(ctx.new_token_ids.tolist())
    assert unreachable, "the tiny extension leaves pieces whose merges cannot fire (else this test proves nothing)"
    assert not unreachable & emitted
    # every piece the test calls reachable tokenizes to itself, which is how it occurs in text
    for token in set(ctx.new_token_ids.tolist()) - unreachable:
        surface = ctx.target_tokenizer.convert_tokens_to_string([ctx.target_tokenizer.convert_ids_to_tokens(token)])
        assert token in ctx.target_tokenizer(surface, add_special_tokens=False)["input_ids"] or not surface.strip()


def test_unreachable_rows_are_the_mean_row_and_method_keeps_the_published_rows(tiny_models, appended):
    ctx = _context(tiny_models, appended)
    source = ctx.source_embeddings
    mended = transfer(tiny_models["gpt2"], appended, "fvt", mode="extend")
    published = transfer(tiny_models["gpt2"], appended, "fvt", mode="extend", unreachable="method")
    ids = ctx.new_token_ids[ctx.unreachable]
    rows, plain = mended.tables["input"].float(), published.tables["input"].float()
    torch.testing.assert_close(rows[ids], source.mean(0).expand(len(ids), -1), atol=1e-6, rtol=1e-5)
    reachable = ctx.new_token_ids[~ctx.unreachable]
    assert torch.equal(rows[reachable], plain[reachable])
    assert not torch.allclose(rows[ids], plain[ids])  # FVT built these from real pieces
    assert mended.summary["counts"]["unreachable"] == len(ids) == mended.summary["notes"]["unreachable_tokens"]
    assert published.summary["counts"]["unreachable"] == 0
    kinds = {row["id"]: row["kind"] for row in mended.provenance}
    assert {kinds[i] for i in ids.tolist()} == {"unreachable"}


@pytest.mark.slow
@torch.no_grad()
def test_in_a_tied_head_an_unreachable_token_never_outweighs_the_average_source_token(
        tiny_models, appended, target_corpus):
    """The mean row's logit is the mean of the source logits, so by Jensen its probability is at most
    the average source token's at every position; an FVT row has no such bound and, on target
    text, takes more of the mass that only tokens which occur should get."""
    ctx = _context(tiny_models, appended)
    ids = ctx.new_token_ids[ctx.unreachable]
    texts = target_corpus.read_text(encoding="utf-8").splitlines()[:64]
    windows, _ = clm_windows(ctx.target_tokenizer, texts, 64)
    mass = {}
    for rule in ("mean", "method"):
        model = transfer(tiny_models["gpt2"], appended, "fvt", mode="extend",
                         unreachable=rule).model
        assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        logits, _ = window_logits(model, windows, ctx.target_tokenizer.eos_token_id)
        probabilities = logits.float().softmax(-1)
        source_average = probabilities[:, :ctx.source_vocab_size].mean(-1, keepdim=True)
        if rule == "mean":
            assert (probabilities[:, ids] <= source_average * (1 + 1e-4)).all()
        mass[rule] = float(probabilities[:, ids].sum(-1).mean())
    assert mass["mean"] < mass["method"]


def test_cli_option_unreachable_method_reaches_the_engine(tiny_models, appended, tmp_path, capsys):
    for rule in ("mean", "method"):
        out = tmp_path / rule
        assert main(["init", "--source", str(tiny_models["gpt2"]), "--tokenizer", str(appended),
                     "--method", "fvt", "--out", str(out), "--option", f"unreachable={rule}"]) == 0
        summary = json.loads((out / TRANSFER_SUMMARY_FILE).read_text(encoding="utf-8"))
        assert summary["options"]["unreachable"] == rule
        assert (summary["counts"]["unreachable"] > 0) == (rule == "mean")
    assert main(["init", "--source", str(tiny_models["gpt2"]), "--tokenizer", str(appended),
                 "--method", "fvt", "--out", str(tmp_path / "bad"), "--option", "unreachable=zero"]) == 2
    assert not (tmp_path / "bad").exists()
