"""Output-bias calibration after vocabulary transfer (``langgraft init --calibrate-bias``)."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from langgraft.adapt.cli import main
from langgraft.errors import UserError
from langgraft.eval.bpc import compute_bpc
from langgraft.vocab.calibration import BiasCalibrationConfig, calibrate_output_bias, mean_prediction
from langgraft.vocab.init import TransferResources
from langgraft.vocab.transfer import TRANSFER_SUMMARY_FILE, transfer


def token_frequencies(tokenizer, path) -> torch.Tensor:
    counts = torch.zeros(len(tokenizer))
    for line in path.read_text(encoding="utf-8").splitlines():
        ids = tokenizer(line, add_special_tokens=False)["input_ids"]
        if ids:
            counts += torch.bincount(torch.tensor(ids), minlength=len(tokenizer)).float()
    return (counts + 0.1) / (counts + 0.1).sum()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["random", "fvt"])
def test_calibration_matches_frequencies_and_lowers_step0_bpc(tiny_models, target_tokenizers, target_corpus,
                                                               target_eval_corpus, method):
    resources = TransferResources(target_corpus=[str(target_corpus)])
    plain = transfer(tiny_models["bert"], target_tokenizers["bert"], method, resources=resources, seed=3)
    calibrated = transfer(tiny_models["bert"], target_tokenizers["bert"], method, resources=resources, seed=3,
                          calibrate_bias=True)
    summary = calibrated.summary["bias_calibration"]
    kl = summary["kl_bits_per_round"]
    assert len(kl) == 3 and kl[-1] < kl[0] / 4, kl
    assert summary["calibrated_tokens"] == calibrated.summary["initialized_tokens"]
    # the correction recomputed independently: KL(p || mean prediction) of the saved model is the reported one
    tokenizer = calibrated.tokenizer
    frequencies = token_frequencies(tokenizer, target_corpus)
    config = BiasCalibrationConfig(sample_documents=10_000)  # all documents: no sampling difference
    prediction, _ = mean_prediction(calibrated.model, tokenizer, target_corpus.read_text().splitlines(), "mlm",
                                    config, seed=3)
    before, _ = mean_prediction(plain.model, tokenizer, target_corpus.read_text().splitlines(), "mlm", config, seed=3)
    kl_after = float((frequencies * (frequencies / prediction).log()).sum())
    kl_before = float((frequencies * (frequencies / before).log()).sum())
    assert kl_after < kl_before / 4
    # only the bias moved; rows are the method's
    assert torch.equal(plain.model.get_input_embeddings().weight, calibrated.model.get_input_embeddings().weight)
    bpc_plain = compute_bpc(plain.model, tokenizer, target_eval_corpus).bpc
    bpc_calibrated = compute_bpc(calibrated.model, tokenizer, target_eval_corpus).bpc
    assert bpc_calibrated < bpc_plain - 0.1, (bpc_plain, bpc_calibrated)


@pytest.mark.slow
def test_calibration_is_deterministic_and_keeps_old_rows_in_extension_mode(tiny_models, extended_tokenizers,
                                                                          target_corpus):
    resources = TransferResources(target_corpus=[str(target_corpus)])
    runs = [transfer(tiny_models["bert"], extended_tokenizers["bert"], "mean", resources=resources, seed=5,
                     calibrate_bias=True) for _ in range(2)]
    biases = [run.model.get_output_embeddings().bias.detach() for run in runs]
    assert torch.equal(biases[0], biases[1])
    source = AutoModelForMaskedLM.from_pretrained(tiny_models["bert"])
    old = source.get_output_embeddings().bias.detach()
    assert torch.equal(biases[0][:len(old)], old)  # the source's rows stay exact
    new = biases[0][len(old):]
    assert runs[0].summary["bias_calibration"]["calibrated_tokens"] == len(new)
    assert not torch.equal(new, old.mean().expand_as(new))  # the new rows did move


@pytest.mark.slow
def test_calibration_for_a_causal_lm_with_an_output_bias(tiny_models, target_tokenizers, target_corpus, tmp_path):
    """CodeGen's lm_head has a bias: the next-token path calibrates it like the masked one."""
    from transformers import CodeGenConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    torch.manual_seed(0)
    config = CodeGenConfig(vocab_size=len(tokenizer), n_positions=128, n_ctx=128, n_embd=32, n_layer=2, n_head=4,
                           rotary_dim=4, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "codegen")
    tokenizer.save_pretrained(tmp_path / "codegen")
    outcome = transfer(str(tmp_path / "codegen"), target_tokenizers["gpt2"], "random", seed=0, calibrate_bias=True,
                       resources=TransferResources(target_corpus=[str(target_corpus)]))
    kl = outcome.summary["bias_calibration"]["kl_bits_per_round"]
    assert outcome.summary["head"] == "clm" and kl[-1] < kl[0] / 4, kl


def test_calibration_bad_input(tiny_models, target_tokenizers, target_corpus, tmp_path, capsys):
    tokenizer = AutoTokenizer.from_pretrained(target_tokenizers["bert"])
    model = AutoModelForMaskedLM.from_pretrained(tiny_models["bert"])
    with pytest.raises(UserError, match="no target-language text"):
        empty = tmp_path / "empty.txt"
        empty.write_text("\n\n")
        calibrate_output_bias(model, tokenizer, [empty], torch.arange(5), objective="mlm")
    # no target text given
    out = tmp_path / "out"
    code = main(["init", "--source", str(tiny_models["bert"]), "--tokenizer", str(target_tokenizers["bert"]),
                 "--method", "random", "--calibrate-bias", "--out", str(out)])
    assert code == 2 and not out.exists()
    assert "--target-corpus" in capsys.readouterr().err
    # GPT-2's LM head has no bias: refused before any transfer work, nothing written
    code = main(["init", "--source", str(tiny_models["gpt2"]), "--tokenizer", str(target_tokenizers["gpt2"]),
                 "--method", "random", "--calibrate-bias", "--target-corpus", str(target_corpus), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no output bias" in errors[0] and "Traceback" not in err


@pytest.mark.slow
def test_cli_calibrates_and_records_it(tiny_models, target_tokenizers, target_corpus, tmp_path, capsys):
    out = tmp_path / "calibrated"
    code = main(["init", "--source", str(tiny_models["xlmr"]), "--tokenizer", str(target_tokenizers["xlmr"]),
                 "--method", "fvt", "--calibrate-bias", "--target-corpus", str(target_corpus), "--out", str(out)])
    assert code == 0
    assert "output bias calibrated" in capsys.readouterr().out
    summary = json.loads((out / TRANSFER_SUMMARY_FILE).read_text())
    kl = summary["bias_calibration"]["kl_bits_per_round"]
    assert kl[-1] < kl[0]
    saved = AutoModelForMaskedLM.from_pretrained(out)  # a stock checkpoint with the calibrated bias
    outcome = transfer(tiny_models["xlmr"], target_tokenizers["xlmr"], "fvt", calibrate_bias=True,
                       resources=TransferResources(target_corpus=[str(target_corpus)]))
    assert torch.equal(saved.get_output_embeddings().bias, outcome.model.get_output_embeddings().bias)
