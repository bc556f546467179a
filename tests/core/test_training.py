"""The one training path (``langgraft.training``): precision, new rows only, chunked loss, resume, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from langgraft.adapt.cli import main
from langgraft.adapt.pretrain.data import PackedLMCollator, PackedLMStream
from langgraft.lm import LM_ROWS_KEY, head_module
from langgraft.models import load_language_model, load_tokenizer
from langgraft.training import LMLoss
from langgraft.training.loss import LinearCrossEntropy

FAST = ["--max-seq-length", "32", "--per-device-train-batch-size", "2", "--logging-steps", "1"]
BF16_HALF_ULP = 2.0 ** -9  # half the spacing of bf16 numbers in [0.5, 1): 8 significant bits, spacing 2^-8


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("langgraft: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


# ------------------------------------------------------------------------------------------- precision


def adam_step_bound(steps: int, beta1: float = 0.9, beta2: float = 0.999) -> float:
    """Largest |update| / learning rate that Adam's bias-corrected m / sqrt(v) can reach within ``steps`` steps.

    Cauchy-Schwarz on m_t = (1-b1) sum b1^k g_{t-k} against v_t = (1-b2) sum b2^k g_{t-k}^2 gives
    |m_t| <= (1-b1) / sqrt(1-b2) * sqrt(sum (b1^2/b2)^k) * sqrt(v_t); with the bias corrections
    1/(1-b1^t) and sqrt(1-b2^t) the largest value over t <= ``steps`` bounds every step.
    """
    bounds = []
    for t in range(1, steps + 1):
        geometric = sum((beta1 ** 2 / beta2) ** k for k in range(t))
        bounds.append((1 - beta1) / (1 - beta1 ** t) * ((1 - beta2 ** t) / (1 - beta2)) ** 0.5 * geometric ** 0.5)
    return max(bounds)


@pytest.fixture(scope="module")
def bf16_llama(tiny_models, tmp_path_factory) -> Path:
    """The tiny Llama stored in bf16, embeddings and head drawn with |w| in [0.55, 0.95] (bf16 spacing 2^-8)."""
    model, _ = load_language_model(tiny_models["llama"])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            magnitude = torch.empty(weight.shape).uniform_(0.55, 0.95, generator=generator)
            sign = torch.randint(0, 2, weight.shape, generator=generator) * 2 - 1
            weight.copy_(magnitude * sign)
    out = tmp_path_factory.mktemp("bf16") / "llama"
    model.to(torch.bfloat16).save_pretrained(out)
    load_tokenizer(tiny_models["llama"]).save_pretrained(out)
    return out


STEPS, SMALL_LR = 30, 1e-3


@pytest.mark.slow
def test_pure_bf16_adamw_loses_small_updates_that_fp32_master_weights_keep(bf16_llama, target_corpus, tmp_path):
    """A bf16 checkpoint: plain Trainer on the bf16 weights changes nothing; langgraft (fp32 and --bf16) moves them."""
    from transformers import Trainer, TrainingArguments

    # Every pure-bf16 step moves a weight by at most lr * bound < half a bf16 spacing at |w| >= 0.5: rounded away.
    assert SMALL_LR * adam_step_bound(STEPS) < BF16_HALF_ULP
    source = load_file(bf16_llama / "model.safetensors")
    tokenizer = load_tokenizer(bf16_llama)

    plain, _ = load_language_model(bf16_llama)
    assert plain.dtype == torch.bfloat16
    plain.requires_grad_(False)
    for parameter in (plain.get_input_embeddings().weight, plain.get_output_embeddings().weight):
        parameter.requires_grad_(True)
    collate = PackedLMCollator(tokenizer, "clm")
    args = TrainingArguments(output_dir=str(tmp_path / "plain"), max_steps=STEPS, learning_rate=SMALL_LR,
                             lr_scheduler_type="constant", weight_decay=0.0, per_device_train_batch_size=2,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
                             remove_unused_columns=False)
    Trainer(model=plain, args=args, train_dataset=PackedLMStream(tokenizer, [target_corpus], "clm", 32),
            data_collator=lambda rows: {k: v for k, v in collate(rows).items() if k != LM_ROWS_KEY}).train()
    assert torch.equal(plain.get_output_embeddings().weight, source["lm_head.weight"])  # every update lost
    assert torch.equal(plain.get_input_embeddings().weight, source["model.embed_tokens.weight"])

    for name, flags in (("fp32", []), ("bf16", ["--bf16"])):
        out = tmp_path / name
        assert main(["pretrain", "--model", str(bf16_llama), "--corpus", str(target_corpus), "--out", str(out),
                     "--max-steps", str(STEPS), "--embedding-steps", str(STEPS), "--embedding-learning-rate",
                     str(SMALL_LR), "--lr-scheduler-type", "constant", "--weight-decay", "0", "--save-steps", "1000",
                     *FAST, *flags]) == 0
        trained = load_file(out / "model.safetensors")
        assert all(t.dtype == torch.bfloat16 for t in trained.values())  # saved back in the source's dtype
        moved = (trained["lm_head.weight"] != source["lm_head.weight"]).float().mean().item()
        assert moved > 0.5, (name, moved)  # the fp32 master weights accumulated the small updates
        body = [k for k in source if "embed_tokens" not in k and "lm_head" not in k]
        assert all(torch.equal(trained[k], source[k]) for k in body)  # frozen in the embeddings phase


# ------------------------------------------------------------------------------------------- new rows only


@pytest.fixture(scope="module")
def extended_inits(tiny_models, extended_tokenizers, tmp_path_factory) -> dict[str, Path]:
    """family -> `langgraft init --mode extend` output (source rows kept, 40-odd new rows)."""
    from langgraft.vocab.transfer import initialize_embeddings

    root = tmp_path_factory.mktemp("extended_inits")
    return {family: initialize_embeddings(str(tiny_models[family]), str(extended_tokenizers[family]), "mean",
                                          mode="extend", out=root / family) and root / family
            for family in ("llama", "bert")}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "bert"])  # untied head without bias; tied head with a bias
def test_new_rows_only_trains_new_rows_and_keeps_source_rows_bit_identical(family, extended_inits, tiny_models,
                                                                            target_corpus, tmp_path):
    model_dir = extended_inits[family]
    start = len(load_tokenizer(tiny_models[family]))
    out = tmp_path / "run"
    assert main(["pretrain", "--model", str(model_dir), "--corpus", str(target_corpus), "--out", str(out),
                 "--train-new-rows-only", "--max-steps", "4", "--embedding-steps", "2", "--save-steps", "2",
                 "--learning-rate", "1e-3", *FAST]) == 0
    before, _ = load_language_model(model_dir)
    after, _ = load_language_model(out)
    pairs = [(before.get_input_embeddings().weight, after.get_input_embeddings().weight),
             (before.get_output_embeddings().weight, after.get_output_embeddings().weight)]
    bias = getattr(before.get_output_embeddings(), "bias", None)
    if bias is not None:
        pairs.append((bias, after.get_output_embeddings().bias))
    for old, new in pairs:
        assert torch.equal(new[:start], old[:start])  # source rows: bit-identical
        assert not torch.equal(new[start:], old[start:])  # new rows: trained
    body = {n: p for n, p in after.named_parameters() if "embed" not in n and "lm_head" not in n and "decoder" not in n}
    assert any(not torch.equal(p, dict(before.named_parameters())[n]) for n, p in body.items())  # phase 2: body trains

    # Optimizer state exists for the new rows only: AdamW's two moments per new-row entry.
    state = torch.load(out / "checkpoints" / "embeddings" / "checkpoint-2" / "optimizer.pt", weights_only=True)["state"]
    new_rows, width = after.get_input_embeddings().weight.shape[0] - start, after.config.hidden_size
    tied = family == "bert"
    expected = new_rows * width * (1 if tied else 2) + (new_rows if bias is not None else 0)
    assert sum(s["exp_avg"].numel() for s in state.values()) == expected
    assert sum(s["exp_avg_sq"].numel() for s in state.values()) == expected


# ------------------------------------------------------------------------------------------- chunked loss


@pytest.mark.parametrize("family,objective", [("llama", "clm"), ("bert", "mlm")])
def test_chunked_lm_loss_equals_the_full_loss_without_building_all_logits(family, objective, tiny_models,
                                                                          target_corpus, monkeypatch):
    model, _ = load_language_model(tiny_models[family])
    model.train()
    for module in model.modules():  # dropout off: the runs below must see the same function
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    tokenizer = load_tokenizer(tiny_models[family])
    stream = iter(PackedLMStream(tokenizer, [target_corpus], objective, 32, seed=0))
    batch = PackedLMCollator(tokenizer, objective, position_ids=False)([next(stream) for _ in range(3)])
    labels = batch.pop("labels")
    rows = int(batch[LM_ROWS_KEY].sum())
    inputs = {k: v for k, v in batch.items() if k != LM_ROWS_KEY}

    def loss_and_grads(chunk: int | None, probed: bool = True) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        model.zero_grad()
        widest = [0]  # most positions the head projected at once

        def probe(module, args):
            widest[0] = max(widest[0], args[0].numel() // args[0].shape[-1])

        if chunk is None:  # transformers' own loss over the full logits
            loss = model(**inputs, labels=labels).loss
            loss.backward()
            return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None], 0
        lm_loss = LMLoss(objective, chunk)
        with lm_loss.attached(model):
            # after LMLoss's own hook: sees its rows; a foreign hook on the head keeps the checkpointed path
            handle = head_module(model).register_forward_pre_hook(probe) if probed else None
            loss = lm_loss(model(**batch), labels)
            loss.backward()  # recomputes each chunk's logits
            if handle is not None:
                handle.remove()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None], widest[0]

    reference, reference_grads, _ = loss_and_grads(None)
    for chunk in (0, 5):
        loss, grads, widest = loss_and_grads(chunk)
        # float32 cross-entropy over `rows` terms summed in another order: rows * eps32 relative
        assert loss.item() == pytest.approx(reference.item(), rel=rows * torch.finfo(torch.float32).eps)
        for got, want in zip(grads, reference_grads):
            torch.testing.assert_close(got, want, rtol=rows * torch.finfo(torch.float32).eps, atol=1e-7)
        if chunk:
            assert widest <= chunk < rows  # the head never saw more rows than one chunk
    # an unhooked nn.Linear head takes the fused path: gradients from each chunk's logits, one weight buffer
    fused = []
    original = LinearCrossEntropy.forward
    monkeypatch.setattr(LinearCrossEntropy, "forward", staticmethod(
        lambda ctx, hidden, weight, *rest: fused.append(weight.shape) or original(ctx, hidden, weight, *rest)))
    loss, grads, _ = loss_and_grads(5, probed=False)
    head = head_module(model)  # Llama's lm_head is an nn.Linear; BERT's MLM head transforms first (checkpointed)
    assert fused == ([head.weight.shape] if isinstance(head, torch.nn.Linear) else [])
    assert loss.item() == pytest.approx(reference.item(), rel=rows * torch.finfo(torch.float32).eps)
    for got, want in zip(grads, reference_grads):
        torch.testing.assert_close(got, want, rtol=rows * torch.finfo(torch.float32).eps, atol=1e-7)


# ------------------------------------------------------------------------------------------- resume


class Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt


def _head(tiny_models, source_corpus, target_corpus, out: Path, callbacks) -> Path:
    from langgraft.adapt.pretrain.head import recover_head

    recover_head(tiny_models["bert"], [source_corpus], out, max_steps=4, batch_size=4, save_steps=2,
                 callbacks=callbacks)
    return out / "model.safetensors"


def _pretrain(tiny_models, source_corpus, target_corpus, out: Path, callbacks) -> Path:
    from langgraft.adapt.pretrain.run import PretrainOptions, pretrain

    pretrain(PretrainOptions(model=str(tiny_models["gpt2"]), corpus=[str(target_corpus)], out=str(out), max_steps=4,
                            save_steps=2, max_seq_length=32, per_device_train_batch_size=2, resume=True,
                            report_to=["none"]), callbacks=callbacks)
    return out / "model.safetensors"


def _task_module(tiny_models, source_corpus, target_corpus, out: Path, callbacks) -> Path:
    from tiny import write_labelled_tsv

    from langgraft.adapters import TrainOptions, train_task_module

    labelled = write_labelled_tsv(out.parent / "labelled.tsv", 60)
    train_task_module("lora", tiny_models["bert"], labelled, task="seq-cls", out=out,
                      options=TrainOptions(max_steps=4, per_device_train_batch_size=4, max_seq_length=32, save_steps=2,
                                           learning_rate=5e-3), callbacks=callbacks)
    return out / "adapter_model.safetensors"


def _checkpoints(run, out: Path) -> Path:
    from langgraft.adapt.pretrain.head import checkpoint_dir
    from langgraft.adapters.compose import work_dir

    return {_head: checkpoint_dir(out), _pretrain: out / "checkpoints" / "full",
            _task_module: work_dir(out) / "train"}[run]


@pytest.mark.slow
@pytest.mark.parametrize("run", [_head, _pretrain, _task_module], ids=["head recovery", "pretraining", "task module"])
def test_an_interrupted_run_resumes_from_its_last_sealed_checkpoint(run, tiny_models, source_corpus, target_corpus,
                                                                    tmp_path):
    """Head recovery, pretraining and module training resume the same way: from the last sealed checkpoint, a
    half-written one removed, to the same weights as an uninterrupted run."""
    from langgraft.training import is_sealed

    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    whole = run(tiny_models, source_corpus, target_corpus, tmp_path / "whole" / "out", [])
    cut = tmp_path / "cut" / "out"
    with pytest.raises(KeyboardInterrupt):
        run(tiny_models, source_corpus, target_corpus, cut, [Interrupt()])
    checkpoints = _checkpoints(run, cut)
    assert is_sealed(checkpoints / "checkpoint-2") and not cut.joinpath(whole.name).exists()
    half_written = checkpoints / "checkpoint-3"  # a save killed midway: files but no seal
    half_written.mkdir()
    (half_written / "trainer_state.json").write_text("{", encoding="utf-8")
    resumed = run(tiny_models, source_corpus, target_corpus, cut, [])
    expected, found = load_file(whole), load_file(resumed)
    assert expected.keys() == found.keys() and all(torch.equal(expected[k], found[k]) for k in expected)
    assert not half_written.exists()


# ------------------------------------------------------------------------------------------- bad input


def test_scale_options_refuse_what_this_machine_cannot_run(tiny_models, target_tokenizers, target_corpus, tmp_path,
                                                           monkeypatch, capsys):
    """One line, exit 2, nothing written; the same check for pretraining, modules and head recovery."""
    import importlib.util

    from langgraft.training import precision, run
    from langgraft.vocab.transfer import initialize_embeddings

    replaced = initialize_embeddings(str(tiny_models["bert"]), str(target_tokenizers["bert"]), "random",
                                     mode="replace", out=tmp_path / "replaced") and tmp_path / "replaced"
    deepspeed_config = tmp_path / "ds.json"
    deepspeed_config.write_text(json.dumps({"zero_optimization": {"stage": 3}}), encoding="utf-8")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: None if name == "deepspeed" else find_spec(name))
    pretrain = ["pretrain", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus), *FAST]
    task = ["module", "train-task", "--kind", "lora", "--model", str(tiny_models["bert"]), "--train",
            str(target_corpus), "--task", "seq-cls"]
    head = ["head", "recover", "--model", str(tiny_models["bert"]), "--corpus", str(target_corpus)]
    cases = [
        ([*pretrain, "--fp16"], "--fp16 needs a GPU"),
        ([*task, "--fp16"], "--fp16 needs a GPU"),
        ([*head, "--fp16"], "--fp16 needs a GPU"),
        ([*pretrain, "--fsdp"], "this is one process"),
        ([*pretrain, "--deepspeed", str(deepspeed_config)], "needs the deepspeed package"),
        ([*pretrain, "--optim", "adamw_bnb_8bit"], "bitsandbytes"),
        ([*pretrain, "--attn-implementation", "flash_attention_2"], "flash-attn"),
        (["pretrain", "--model", str(replaced), "--corpus", str(target_corpus), "--train-new-rows-only", *FAST],
         "replaced vocabulary"),
        ([*pretrain, "--train-new-rows-only"], "needs an extended vocabulary"),
    ]
    for number, (argv, message) in enumerate(cases):
        out = tmp_path / f"bad{number}"
        assert main([*argv, "--out", str(out)]) == 2, argv
        assert message in _error_line(capsys.readouterr().err)
        assert not out.exists()
    monkeypatch.setattr(precision, "bf16_supported", lambda on_cpu: False)  # a CPU without bf16 compute
    assert main([*pretrain, "--bf16", "--out", str(tmp_path / "bf16")]) == 2
    assert "cannot compute in bfloat16" in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "bf16").exists()
