"""Hydra: one body, per-language tables switched with one call, exported as stock checkpoints."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from langgraft.adapt.cli import main
from langgraft.vocab.hydra import HydraModel, LanguageTable


def logits(model, tokenizer, text="kuchimana ndalo wana"):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


@pytest.mark.parametrize("family", ["llama", "bert"])  # untied head / tied head with an MLM output bias
def test_switch_round_trip_and_export(family, tiny_models, target_tokenizers, tmp_path):
    source = tiny_models[family]
    auto = AutoModelForCausalLM if family == "llama" else AutoModelForMaskedLM
    transferred = tmp_path / "ny-model"
    assert main(["init", "--source", str(source), "--tokenizer", str(target_tokenizers[family]),
                 "--method", "fvt", "--out", str(transferred)]) == 0
    table_dir = tmp_path / "ny-table"
    assert main(["hydra", "add", "--model", str(transferred), "--language", "ny", "--out", str(table_dir)]) == 0
    table = LanguageTable.load(table_dir)
    assert (table.output_embeddings is not None) == (family == "llama")
    assert (table.output_bias is not None) == (family == "bert")
    assert table.vocab_size == len(table.tokenizer)

    hydra = HydraModel.from_pretrained(source, "en")
    english = logits(hydra.model, hydra.tokenizer)
    hydra.add_language(table_dir)
    tokenizer = hydra.set_language("ny")
    direct = auto.from_pretrained(transferred)
    torch.testing.assert_close(logits(hydra.model, tokenizer), logits(direct, AutoTokenizer.from_pretrained(transferred)))
    hydra.set_language("en")
    torch.testing.assert_close(logits(hydra.model, hydra.tokenizer), english)

    exported = tmp_path / "exported"
    assert main(["hydra", "export", "--model", str(source), "--table", str(table_dir), "--out", str(exported)]) == 0
    stock = auto.from_pretrained(exported)
    torch.testing.assert_close(logits(stock, AutoTokenizer.from_pretrained(exported)), logits(direct, tokenizer))


def test_table_for_another_model_is_rejected(tiny_models, tmp_path, capsys):
    table_dir = tmp_path / "bert-table"
    assert main(["hydra", "add", "--model", str(tiny_models["bert"]), "--language", "en", "--out", str(table_dir)]) == 0
    out = tmp_path / "out"
    # the BERT table is tied; the Llama body has an untied head
    assert main(["hydra", "export", "--model", str(tiny_models["llama"]), "--table", str(table_dir),
                 "--out", str(out)]) == 2
    assert not out.exists()
