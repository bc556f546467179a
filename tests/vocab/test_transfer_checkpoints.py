"""Vocabulary transfer on the checkpoints users have: sharded safetensors, bf16, embedding rows padded
past the tokenizer — reading only the vocabulary tensors and carrying every other tensor over."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny import build_model
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

import langgraft.vocab.checkpoint as checkpoint_module
import langgraft.vocab.transfer as transfer_module
from langgraft.adapt.cli import main
from langgraft.vocab.checkpoint import Checkpoint, file_sha256, read_header, write_safetensors
from langgraft.vocab.init import TransferResources, list_methods, topk_similarities
from langgraft.vocab.init.base import FALLBACK, resolve_device
from langgraft.vocab.init.focus import sparsemax, sparsemax_neighbours
from langgraft.vocab.init.transtok import top_k_rows
from langgraft.vocab.transfer import (PROVENANCE_FILE, TRANSFER_SUMMARY_FILE, Plan, embedding_layout, fill_rows, save_outcome,
                                      transfer)

PAD = 64  # the fixtures' padding multiple (Qwen2.5 pads to 128, Gemma-3 to 64)
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{{ eos_token }}{% endfor %}"
AUTO = {"llama": AutoModelForCausalLM, "gpt2": AutoModelForCausalLM, "bert": AutoModelForMaskedLM}
VOCAB_KEYS = {"llama": {"model.embed_tokens.weight", "lm_head.weight"}, "gpt2": {"transformer.wte.weight"},
              "bert": {"bert.embeddings.word_embeddings.weight", "cls.predictions.bias"}}


def make_sharded(source_dir, out, family):
    """``source_dir``'s tiny model in bf16, rows padded to a multiple of PAD, saved in several shards,
    with a chat template and (decoders) a non-default generation config."""
    torch.manual_seed(0)  # the padding rows' random init
    model = AUTO[family].from_pretrained(source_dir, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=PAD, mean_resizing=False)
    if family != "bert":
        model.generation_config.max_new_tokens = 7
    tokenizer.chat_template = CHAT_TEMPLATE
    model.save_pretrained(out, max_shard_size="20KB")
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def sharded(tiny_models, tmp_path_factory):
    """family -> sharded bf16 padded checkpoint: llama (untied head), gpt2 (tied), bert (tied + output bias)."""
    root = tmp_path_factory.mktemp("sharded")
    return {family: make_sharded(tiny_models[family], root / family, family) for family in AUTO}


@pytest.fixture(scope="module")
def helpers(tmp_path_factory, target_tokenizers, extended_tokenizers):
    """mode -> a tiny llama that already uses the target tokenizer of that mode (clp's helper)."""
    root = tmp_path_factory.mktemp("clp_helpers")
    out = {}
    for mode, tokenizers in (("replace", target_tokenizers), ("extend", extended_tokenizers)):
        out[mode] = root / mode
        build_model("llama", tokenizers["llama"], out[mode], seed=7)
    return out


def method_inputs(method, mode, helpers, word_resources, target_corpus, parallel_corpus, workdir):
    """(resources, options) that let ``method`` run on the tiny models in a second or two."""
    small = dict(dim=12, bucket=20_000, epochs=3)
    source, target, _ = parallel_corpus
    return {
        "ofa": (None, {"rank": 8}),
        "clp": (TransferResources(helper=str(helpers[mode])), {}),
        "wechsel": (word_resources, small),
        "focus": (TransferResources(target_corpus=[str(target_corpus)], workdir=str(workdir)), {**small, "min_count": 1}),
        "transtok": (TransferResources(parallel=(str(source), str(target))), {"min_count": 1}),
    }.get(method, (None, {}))


def loaded_transfer(source_dir, family, *args, **kwargs):
    """The same transfer from the model loaded whole (the Python API's in-memory path): the reference."""
    model = AUTO[family].from_pretrained(source_dir)
    return transfer(model, *args, source_tokenizer=AutoTokenizer.from_pretrained(source_dir), **kwargs)


def check_output(out, source_dir, family):
    """The output keeps the source's files, index and every non-vocabulary tensor byte for byte."""
    source_index = json.loads((source_dir / "model.safetensors.index.json").read_text())
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == source_index["weight_map"]
    summary = json.loads((out / TRANSFER_SUMMARY_FILE).read_text())
    files = summary["output_files"]
    assert sorted(files) == sorted(set(source_index["weight_map"].values()))
    stored = {}
    for name, record in files.items():
        assert file_sha256(out / name) == record["sha256"] and (out / name).stat().st_size == record["bytes"]
        _, entries = read_header(out / name)
        stored.update({e.name: e for e in entries})
        holds_vocab = any(e.name in VOCAB_KEYS[family] for e in entries)
        assert record["written"] == ("rewritten" if holds_vocab else record["written"])
        if not holds_vocab:  # carried over whole: the very same bytes
            assert record["written"] in ("reflinked", "hard-linked", "copied")
            assert record["sha256"] == file_sha256(source_dir / name)
    assert index["metadata"]["total_size"] == sum(e.nbytes for e in stored.values())
    before, after = {}, {}
    for name in files:
        before.update(load_file(source_dir / name))
        after.update(load_file(out / name))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before if k not in VOCAB_KEYS[family])
    assert all(after[k].dtype == torch.bfloat16 for k in VOCAB_KEYS[family])
    config = json.loads((out / "config.json").read_text())
    rows = after[sorted(VOCAB_KEYS[family])[0]].shape[0]
    assert config["vocab_size"] == rows and rows % PAD == 0 == summary["embedding_rows"]["rows"] % PAD
    return summary


# ------------------------------------------------------------------------------ every method, both modes
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["replace", "extend"])
def test_every_method_on_a_sharded_bf16_padded_checkpoint_matches_the_loaded_model(
        mode, sharded, tiny_models, target_tokenizers, extended_tokenizers, helpers, word_resources, target_corpus,
        parallel_corpus, tmp_path):
    source_dir = sharded["llama"]
    tokenizer = (target_tokenizers if mode == "replace" else extended_tokenizers)["llama"]
    source_tokens = len(AutoTokenizer.from_pretrained(source_dir))
    source_rows = load_file(source_dir / json.loads((source_dir / "model.safetensors.index.json").read_text())
                            ["weight_map"]["model.embed_tokens.weight"])["model.embed_tokens.weight"]
    assert source_rows.dtype == torch.bfloat16 and source_rows.shape[0] % PAD == 0 and source_rows.shape[0] > source_tokens
    for method in list_methods():
        resources, options = method_inputs(method, mode, helpers, word_resources, target_corpus, parallel_corpus,
                                           tmp_path / "work")
        lazy = transfer(str(source_dir), str(tokenizer), method, mode=mode, seed=1, resources=resources, **options)
        reference = loaded_transfer(source_dir, "llama", str(tokenizer), method, mode=mode, seed=1,
                                    resources=resources, **options)
        assert lazy.summary["whole_model_loaded"] == [], method
        assert lazy.tables.keys() == reference.tables.keys() == {"input", "head"}
        for role, table in lazy.tables.items():
            assert table.dtype == torch.bfloat16 and torch.equal(table, reference.tables[role]), (method, mode, role)
        assert lazy.provenance == reference.provenance, method
        # padding rows past the source tokenizer are never neighbours
        assert all(i < source_tokens for row in lazy.provenance for i in row["source_ids"]), method
        rows = lazy.tables["input"]
        assert rows.shape[0] % PAD == 0 and rows.shape[0] >= len(lazy.tokenizer)
        if mode == "extend":  # old rows and the source's padding rows past the new tokens stay exact
            assert torch.equal(rows[:source_tokens], source_rows[:source_tokens])
            kept = slice(len(lazy.tokenizer), source_rows.shape[0])
            assert torch.equal(rows[kept], source_rows[kept])
        out = tmp_path / method / mode
        save_outcome(lazy, out)
        summary = check_output(out, source_dir, "llama")
        assert summary["method"] == method and summary["dtype"] == "bfloat16"
        assert len((out / PROVENANCE_FILE).read_text().splitlines()) == len(lazy.tokenizer)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
@pytest.mark.parametrize("mode", ["replace", "extend"])
def test_tied_heads_and_output_biases_on_sharded_checkpoints(family, mode, sharded, target_tokenizers,
                                                             extended_tokenizers, tmp_path):
    tokenizer = (target_tokenizers if mode == "replace" else extended_tokenizers)[family]
    for method in ("random", "fvt"):
        lazy = transfer(str(sharded[family]), str(tokenizer), method, mode=mode, seed=2)
        reference = loaded_transfer(sharded[family], family, str(tokenizer), method, mode=mode, seed=2)
        expected_roles = {"input", "bias"} if family == "bert" else {"input"}
        assert lazy.tables.keys() == reference.tables.keys() == expected_roles
        assert all(torch.equal(lazy.tables[r], reference.tables[r]) for r in expected_roles), (family, mode, method)
        save_outcome(lazy, tmp_path / method)
        check_output(tmp_path / method, sharded[family], family)


@pytest.mark.slow
def test_outputs_load_in_stock_transformers_without_langgraft(sharded, target_tokenizers, extended_tokenizers,
                                                              tmp_path):
    outs = {}
    for family in AUTO:
        for mode, tokenizers in (("replace", target_tokenizers), ("extend", extended_tokenizers)):
            out = tmp_path / f"{family}-{mode}"
            assert main(["init", "--source", str(sharded[family]), "--tokenizer", str(tokenizers[family]),
                         "--method", "fvt", "--mode", mode, "--out", str(out)]) == 0
            outs[f"{family}-{mode}"] = str(out)
    script = textwrap.dedent("""
        import json, sys, torch
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
        for name, path in json.loads(sys.argv[1]).items():
            cls = AutoModelForMaskedLM if name.startswith("bert") else AutoModelForCausalLM
            model, info = cls.from_pretrained(path, output_loading_info=True)
            tok = AutoTokenizer.from_pretrained(path)
            assert not info["missing_keys"] and not info["mismatched_keys"] and not info["unexpected_keys"], (name, info)
            assert model.dtype == torch.bfloat16, name
            rows = model.get_input_embeddings().weight.shape[0]
            assert rows == model.config.vocab_size and rows % 64 == 0 and rows >= len(tok), name
            batch = tok(["kuchimana ndalo wana."], return_tensors="pt")
            logits = model(**batch).logits
            assert logits.shape[-1] == rows and torch.isfinite(logits.float()).all(), name
            chat = tok.apply_chat_template([{"role": "user", "content": "moni"}], tokenize=False)
            assert chat.startswith("moni"), (name, chat)
            if not name.startswith("bert"):
                assert model.generation_config.max_new_tokens == 7, name
                assert model.generation_config.eos_token_id == tok.eos_token_id, name
        assert not any(m.startswith("langgraft") for m in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(outs)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_only_the_vocabulary_tensors_are_read_and_the_source_is_untouched(sharded, target_tokenizers, tmp_path,
                                                                           monkeypatch):
    source = sharded["llama"]
    before = {p.name: file_sha256(p) for p in source.iterdir()}
    read = []
    real_read = checkpoint_module.read_tensor
    monkeypatch.setattr(checkpoint_module, "read_tensor", lambda entry: read.append(entry.name) or real_read(entry))

    def no_model(*args, **kwargs):
        raise AssertionError("the whole model was loaded")

    monkeypatch.setattr(transfer_module, "load_model", no_model)
    monkeypatch.setattr(checkpoint_module, "load_model", no_model)
    assert main(["init", "--source", str(source), "--tokenizer", str(target_tokenizers["llama"]),
                 "--method", "fvt", "--out", str(tmp_path / "out")]) == 0
    assert set(read) == VOCAB_KEYS["llama"]
    assert {p.name: file_sha256(p) for p in source.iterdir()} == before


def test_same_seed_gives_the_same_checksums(sharded, target_tokenizers, tmp_path):
    sums = []
    for run in ("a", "b"):
        assert main(["init", "--source", str(sharded["llama"]), "--tokenizer", str(target_tokenizers["llama"]),
                     "--method", "random", "--seed", "5", "--copy-untouched", "--out", str(tmp_path / run)]) == 0
        summary = json.loads((tmp_path / run / TRANSFER_SUMMARY_FILE).read_text())
        assert {r["written"] for r in summary["output_files"].values()} == {"rewritten", "copied"}
        sums.append({name: record["sha256"] for name, record in summary["output_files"].items()})
    assert sums[0] == sums[1]


# ------------------------------------------------------------------------------ other formats, bad input
def test_pickle_weights_are_read_safely_and_written_as_safetensors(sharded, target_tokenizers, tmp_path):
    source = tmp_path / "pickled"
    model = AutoModelForCausalLM.from_pretrained(sharded["llama"])
    source.mkdir()
    torch.save(model.state_dict(), source / "pytorch_model.bin")
    model.config.save_pretrained(source)
    AutoTokenizer.from_pretrained(sharded["llama"]).save_pretrained(source)
    pickled = transfer(str(source), str(target_tokenizers["llama"]), "fvt")
    stored = transfer(str(sharded["llama"]), str(target_tokenizers["llama"]), "fvt")
    assert all(torch.equal(pickled.tables[r], stored.tables[r]) for r in stored.tables)
    save_outcome(pickled, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file() and not list((tmp_path / "out").glob("*.bin"))
    written = load_file(tmp_path / "out" / "model.safetensors")
    assert all(torch.equal(written[k], v) for k, v in model.state_dict().items() if k not in VOCAB_KEYS["llama"])


@pytest.mark.parametrize("unsafe", [False, True], ids=["state-dicts", "unsafe-object-in-one-shard"])
def test_sharded_pickle_weights_through_the_cli(unsafe, sharded, target_tokenizers, tmp_path, capsys):
    """``pytorch_model-0000i-of-0000n.bin`` + index: each shard read with weights_only=True and written as the
    safetensors shard of the same number; one refused object in any shard is one line, exit 2, nothing written."""
    source = tmp_path / "pickled"
    shutil.copytree(sharded["llama"], source, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    index = json.loads((sharded["llama"] / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2
    weight_map = {}
    for shard in shards:
        state = load_file(sharded["llama"] / shard)
        name = shard.replace("model", "pytorch_model", 1).replace(".safetensors", ".bin")
        weight_map.update({key: name for key in state})
        if unsafe and shard == shards[-1]:
            state["extra"] = NotATensor()
            weight_map["extra"] = name
        torch.save(state, source / name)
    (source / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    out = tmp_path / "out"
    code = main(["init", "--source", str(source), "--tokenizer", str(target_tokenizers["llama"]), "--method", "fvt",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    if unsafe:
        assert code == 2 and len(err) == 1 and "weights_only" in err[0] and weight_map["extra"] in err[0]
        assert not out.exists() and not list(tmp_path.glob(".out*"))
        return
    assert code == 0
    assert sorted(p.name for p in out.glob("*.safetensors")) == shards and not list(out.glob("*.bin"))
    assert json.loads((out / "model.safetensors.index.json").read_text())["weight_map"] == index["weight_map"]
    before = {k: v for shard in shards for k, v in load_file(sharded["llama"] / shard).items()}
    after = {k: v for shard in shards for k, v in load_file(out / shard).items()}
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before if k not in VOCAB_KEYS["llama"])
    reference = transfer(str(sharded["llama"]), str(target_tokenizers["llama"]), "fvt")
    assert torch.equal(after["model.embed_tokens.weight"], reference.tables["input"])
    assert torch.equal(after["lm_head.weight"], reference.tables["head"])


class NotATensor:
    """A pickled object a weights_only load must refuse."""


def rewrite_header(path, change):
    """Apply ``change`` to a safetensors file's JSON header in place (same length, padded with spaces)."""
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    change(header)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    assert len(encoded) <= length
    path.write_bytes(data[:8] + encoded + b" " * (length - len(encoded)) + data[8 + length:])


@pytest.mark.parametrize("case", ["unsafe-pickle", "missing-shard", "missing-tensor", "tokenizer-too-long",
                                  "unknown-dtype", "truncated-shard", "device"])
def test_bad_checkpoints_exit_2_with_one_line_and_write_nothing(case, sharded, target_tokenizers, tmp_path, capsys):
    source = tmp_path / "source"
    shutil.copytree(sharded["llama"], source)
    index_path = source / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    body_shard = index["weight_map"]["model.norm.weight"]
    extra = []
    if case == "unsafe-pickle":
        for shard in set(index["weight_map"].values()):
            (source / shard).unlink()
        index_path.unlink()
        torch.save({"model.embed_tokens.weight": torch.zeros(2, 2), "extra": NotATensor()}, source / "pytorch_model.bin")
    elif case == "missing-shard":
        (source / body_shard).unlink()
    elif case == "missing-tensor":
        index["weight_map"]["model.layers.0.mlp.extra.weight"] = body_shard
        index_path.write_text(json.dumps(index))
    elif case == "tokenizer-too-long":  # more tokens than the padded table has rows
        tokenizer = AutoTokenizer.from_pretrained(source)
        tokenizer.add_tokens([f"extra{i}" for i in range(PAD + 1)])
        tokenizer.save_pretrained(source)
    elif case == "unknown-dtype":
        rewrite_header(source / body_shard, lambda h: h["model.norm.weight"].update(dtype="Q16"))
    elif case == "truncated-shard":
        data = (source / body_shard).read_bytes()
        (source / body_shard).write_bytes(data[:-2])
    elif case == "device":
        extra = ["--device", "cuda:7" if torch.cuda.is_available() else "cuda"]
    out = tmp_path / "out"
    code = main(["init", "--source", str(source), "--tokenizer", str(target_tokenizers["llama"]), "--method", "fvt",
                 "--out", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("langgraft: error:"), err
    expected = {"unsafe-pickle": "weights_only", "missing-shard": "missing", "missing-tensor": "no such tensor",
                "tokenizer-too-long": "no padding room", "unknown-dtype": "'Q16'", "truncated-shard": "truncated",
                "device": "--device"}[case]
    assert expected in err[0], err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_tokens_added_within_the_padding_room_are_accepted(sharded, target_tokenizers, tmp_path):
    """A tokenizer may grow into the padding rows (Llama-3's reserved tokens, Qwen's spare rows)."""
    source = tmp_path / "source"
    shutil.copytree(sharded["llama"], source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|reserved_0|>", "<|reserved_1|>"]})
    tokenizer.save_pretrained(source)
    outcome = transfer(str(source), str(target_tokenizers["llama"]), "fvt")
    assert outcome.summary["source_vocab_size"] == len(tokenizer)


# ------------------------------------------------------------------------------ stages that need more
@pytest.mark.slow
def test_bias_calibration_loads_the_model_for_that_step_only(sharded, extended_tokenizers, target_corpus, tmp_path):
    source = sharded["bert"]
    resources = TransferResources(target_corpus=[str(target_corpus)])
    outcome = transfer(str(source), str(extended_tokenizers["bert"]), "mean", resources=resources, calibrate_bias=True)
    assert outcome.summary["whole_model_loaded"] == ["bias calibration runs the model on target text"]
    kl = outcome.summary["bias_calibration"]["kl_bits_per_round"]
    assert kl[-1] < kl[0]
    bias = outcome.tables["bias"]
    old = load_file(source / json.loads((source / "model.safetensors.index.json").read_text())["weight_map"]
                    ["cls.predictions.bias"])["cls.predictions.bias"]
    tokens = len(AutoTokenizer.from_pretrained(source))
    assert bias.dtype == torch.bfloat16 and torch.equal(bias[:tokens], old[:tokens])
    new = slice(tokens, len(outcome.tokenizer))
    assert not torch.equal(bias[new], torch.full_like(bias[new], float(bias[new][0])))
    save_outcome(outcome, tmp_path / "out")
    check_output(tmp_path / "out", source, "bert")
    assert torch.equal(AutoModelForMaskedLM.from_pretrained(tmp_path / "out").get_output_embeddings().bias, bias)


def test_hydra_and_ofa_export_keep_the_shard_layout(sharded, target_tokenizers, tmp_path):
    source = sharded["llama"]
    assert main(["init", "--source", str(source), "--tokenizer", str(target_tokenizers["llama"]), "--method", "ofa",
                 "--rank", "0", "--out", str(tmp_path / "ofa")]) == 0
    assert main(["hydra", "add", "--model", str(tmp_path / "ofa"), "--language", "ny", "--out",
                 str(tmp_path / "table")]) == 0
    assert main(["hydra", "export", "--model", str(source), "--table", str(tmp_path / "table"),
                 "--out", str(tmp_path / "hydra")]) == 0
    assert main(["ofa", "export", "--model", str(tmp_path / "ofa"), "--out", str(tmp_path / "exported")]) == 0
    transferred = Checkpoint.open(tmp_path / "ofa")
    for name in ("hydra", "exported"):
        written = Checkpoint.open(tmp_path / name)
        assert written.files.keys() == transferred.files.keys()
        for key, entry in transferred.entries.items():
            if name == "exported" and key == "model.embed_tokens.weight":  # factors multiplied out again, full rank
                # both are float32 products of the same factors rounded to bf16 once: at most one bf16 step
                # (at most 2^-7 of the value) apart where the float32 results straddle a rounding boundary
                torch.testing.assert_close(written.read(key).float(), transferred.read(key).float(),
                                           atol=1e-6, rtol=2 ** -7)
            else:
                assert torch.equal(written.read(key), transferred.read(key)), (name, key)
    hydra_config = json.loads((tmp_path / "hydra" / "config.json").read_text())
    assert hydra_config["vocab_size"] == transferred.entries["model.embed_tokens.weight"].shape[0]


# ------------------------------------------------------------------------------ building blocks
def test_padding_follows_the_source():
    qwen = embedding_layout(151_936, 151_665, 32_001, "replace")
    assert (qwen.multiple, qwen.rows) == (128, 32_128)
    gemma = embedding_layout(262_208, 262_145, 262_145 + 40, "extend")
    assert (gemma.multiple, gemma.rows) == (64, 262_208)  # new tokens fill padding rows; nothing shrinks
    llama3 = embedding_layout(128_256, 128_256, 50_001, "replace")
    assert (llama3.multiple, llama3.rows) == (1, 50_001)  # an unpadded source gives an unpadded target
    assert embedding_layout(128_256, 128_256, 50_001, "replace", pad_to_multiple_of=256).rows == 50_176
    assert embedding_layout(1000, 900, 100, "extend").rows == 1000
    with pytest.raises(Exception, match="no padding room"):
        embedding_layout(1000, 1001, 100, "replace")


def test_blocked_rows_match_a_dense_product(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(50, 8, generator=generator).to(torch.bfloat16)
    ids = torch.randint(-1, 50, (30, 5), generator=generator)
    weights = torch.rand(30, 5, generator=generator)
    kinds = torch.ones(30, dtype=torch.int8)
    kinds[[3, 17]] = FALLBACK
    ids[[3, 17]] = -1
    plan = Plan(ids, torch.where(ids >= 0, weights, 0.0), kinds, "mean")
    dense = (torch.where(ids >= 0, weights, 0.0)[:, :, None] * source.float()[ids.clamp_min(0)]).sum(dim=1)
    dense[[3, 17]] = source.float().mean(dim=0)
    for budget in (1 << 24, 40, 1):  # one block, several, one row per block
        monkeypatch.setattr(transfer_module, "ENTRY_BUDGET", budget)
        out = torch.empty(30, 8, dtype=torch.bfloat16)
        fill_rows(out, source, plan, torch.Generator())
        # float32 sums in another order, each rounded to bf16 once: at most one bf16 step apart, and a bf16
        # step is at most 2^-7 of the value (8 significant bits)
        torch.testing.assert_close(out.float(), dense.to(torch.bfloat16).float(), atol=1e-6, rtol=2 ** -7)


def test_streaming_writer_output_reads_back_with_safetensors(tmp_path):
    tensors = {"a": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5, dtype=torch.bfloat16)}
    save_file({"c": torch.full((7,), 3, dtype=torch.int64), "d": torch.zeros(2, 2)}, tmp_path / "old.safetensors",
              metadata={"format": "pt"})
    _, entries = read_header(tmp_path / "old.safetensors")
    record = write_safetensors(tmp_path / "new.safetensors", [("a", tensors["a"]), *[(e.name, e) for e in entries],
                                                              ("b", tensors["b"])], {"format": "pt"})
    assert record["sha256"] == file_sha256(tmp_path / "new.safetensors")
    loaded = load_file(tmp_path / "new.safetensors")
    expected = {**tensors, **load_file(tmp_path / "old.safetensors")}
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_device_resolution_and_device_parameterized_similarities_agree_with_the_reference():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    generator = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(37, 8, generator=generator), torch.randn(50, 8, generator=generator)
    cosine = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    expected = torch.topk(cosine, 5, dim=1)
    reference_support = sparsemax(cosine)
    for device in (torch.device("cpu"), resolve_device("auto")):
        for block in (4, 37, 4096):
            values, indices = topk_similarities(queries, keys, 5, block_size=block, device=device)
            # float32 cosines of 8-d unit vectors: a few ulps apart at most, whatever the device's kernels
            torch.testing.assert_close(values, expected.values, atol=1e-6, rtol=1e-5)
            assert torch.equal(indices, expected.indices)
            columns, weights = sparsemax_neighbours(queries, keys, block_size=block, device=device)
            rebuilt = torch.zeros_like(reference_support)
            rebuilt.scatter_add_(1, columns.clamp_min(0), torch.where(columns >= 0, weights, 0.0))
            torch.testing.assert_close(rebuilt, reference_support, atol=1e-6, rtol=1e-5)
    counts = torch.sparse_coo_tensor(torch.tensor([[0, 0, 1, 2, 2, 2], [3, 1, 2, 0, 1, 4]]),
                                     torch.tensor([5.0, 2.0, 1.0, 3.0, 3.0, 1.0]), (3, 6), check_invariants=True).coalesce()
    on_cpu = top_k_rows(counts, 1.0, 2, 3, 6)
    on_device = top_k_rows(counts, 1.0, 2, 3, 6, device=resolve_device("auto"))
    assert all(torch.equal(a, b) for a, b in zip(on_cpu, on_device))
    assert on_cpu[0].tolist() == [[3, 1], [2, -1], [0, 1]]  # ties (3.0, 3.0) keep the column order
