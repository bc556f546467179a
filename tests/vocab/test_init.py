"""Embedding transfer: every method langgraft's engine owns, on every family, in both modes."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import FAMILIES
from tiny import build_model

from langgraft.adapt.cli import main
from langgraft.vocab.canonical import canonical_tokens, decompose, detect_family
from langgraft.vocab.init import TransferResources, list_methods, topk_similarities
from langgraft.vocab.init.ofa import FactorizedEmbedding, export_factorized
from langgraft.vocab.transfer import FACTORIZED_FILE, PROVENANCE_FILE, TRANSFER_SUMMARY_FILE, load_source, transfer

ENGINE_METHODS = ("random", "mean", "fvt", "ofa", "clp")


@pytest.fixture(scope="module")
def helpers(tmp_path_factory, target_tokenizers, extended_tokenizers):
    """(family, mode) -> a tiny helper model that uses that target tokenizer (for clp)."""
    root = tmp_path_factory.mktemp("helpers")
    out = {}
    for family in FAMILIES:
        for mode, tokenizers in (("replace", target_tokenizers), ("extend", extended_tokenizers)):
            out[family, mode] = root / f"{family}-{mode}"
            build_model(family, tokenizers[family], out[family, mode], seed=7)
    return out


def vocab_tensors(model):
    """(input rows, untied head rows or None, output bias or None) as float32 copies."""
    inp = model.get_input_embeddings().weight.detach().float().clone()
    head = model.get_output_embeddings()
    untied = head is not None and head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    bias = getattr(head, "bias", None) if head is not None else None
    return inp, head.weight.detach().float().clone() if untied else None, None if bias is None else bias.detach().clone()


def run(family, method, mode, tiny_models, tokenizers, helpers, seed=0, **options):
    resources = TransferResources(helper=str(helpers[family, mode])) if method == "clp" else None
    return transfer(tiny_models[family], tokenizers[family], method, mode=mode, seed=seed, resources=resources,
                    **options)


def test_registry_lists_all_methods():
    assert {"random", "mean", "fvt", "ofa", "clp"} <= set(list_methods())


def test_a_method_name_registered_twice_is_refused():
    from langgraft.vocab.init.base import MethodConfig, register_method

    before = list_methods()

    def another_fvt(config: MethodConfig, ctx) -> None:
        """A second method under a taken name."""

    with pytest.raises(ValueError, match="'fvt' is registered twice"):
        register_method("fvt", MethodConfig)(another_fvt)
    assert list_methods() == before


def test_init_help_lists_the_registered_methods(capsys):
    with pytest.raises(SystemExit):
        main(["init", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"embedding initializer: {', '.join(list_methods())}" in help_text


@pytest.mark.parametrize("family", FAMILIES)
def test_canonical_boundaries(family, tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models[family])
    tokens = canonical_tokens(tok)
    assert len(tokens) == len(tok)
    ids = tok("the king said", add_special_tokens=False)["input_ids"]
    pieces = [tokens[i] for i in ids]
    # "the" begins a word in every family except GPT-2 without a prefix space; "king" always does
    assert b"".join(p.raw for p in pieces).replace(b" ", b"") == b"thekingsaid"
    assert sum(p.word_initial for p in pieces) >= 2
    # decomposing a token with its own tokenizer gives the token back (boundary respected)
    sample = [t for t in tokens if not t.is_special and not t.is_byte and t.raw][:60]
    assert [len(d) for d in decompose(sample, tok)].count(1) >= 0.9 * len(sample)


def test_canonical_byte_level_and_byte_fallback(tiny_models):
    from transformers import AutoTokenizer

    gpt2 = canonical_tokens(AutoTokenizer.from_pretrained(tiny_models["gpt2"]))
    llama_tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    llama = canonical_tokens(llama_tok)
    assert detect_family(llama_tok).marker == "sentencepiece"
    byte_piece = llama[llama_tok.convert_tokens_to_ids("<0xE2>")]
    assert byte_piece.raw == b"\xe2" and byte_piece.is_byte
    space_the = [t for t in gpt2 if t.raw == b"the" and t.word_initial]
    assert space_the, "Ġthe decodes to word-initial b'the'"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["replace", "extend"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_every_family(family, mode, tiny_models, target_tokenizers, extended_tokenizers, helpers):
    tokenizers = target_tokenizers if mode == "replace" else extended_tokenizers
    source, _ = load_source(tiny_models[family])
    src_in, src_head, src_bias = vocab_tensors(source)
    for method in ENGINE_METHODS:
        options = {"rank": 0} if method == "ofa" else {}  # full rank: rows are exact weighted sums
        outcome = run(family, method, mode, tiny_models, tokenizers, helpers, **options)
        model, summary, provenance = outcome.model, outcome.summary, outcome.provenance
        vocab = len(outcome.tokenizer)
        new_in, new_head, new_bias = vocab_tensors(model)
        assert model.config.vocab_size == vocab == new_in.shape[0] == len(provenance)
        assert summary["mode"] == mode and torch.isfinite(new_in).all()
        assert (new_head is None) == (src_head is None) and (new_bias is None) == (src_bias is None)
        if mode == "extend":
            kept = src_in.shape[0]
            assert torch.equal(new_in[:kept], src_in[:kept]), (family, method)
            if src_head is not None:
                assert torch.equal(new_head[:kept], src_head[:kept])
            if src_bias is not None:
                assert torch.equal(new_bias[:kept], src_bias[:kept])
        for row in provenance:
            if row["kind"] in ("fallback", "unreachable"):
                assert row["source_ids"] == []
                if row["kind"] == "unreachable":  # never emitted by the tokenizer: the mean source row
                    torch.testing.assert_close(new_in[row["id"]], src_in.mean(0), atol=1e-5, rtol=1e-4)
                    if src_head is not None:
                        torch.testing.assert_close(new_head[row["id"]], src_head.mean(0), atol=1e-5, rtol=1e-4)
                    if src_bias is not None:
                        torch.testing.assert_close(new_bias[row["id"]], src_bias.mean(), atol=1e-5, rtol=1e-4)
                continue
            ids, w = torch.tensor(row["source_ids"]), torch.tensor(row["weights"])
            assert abs(float(w.sum()) - 1.0) < 1e-4, (family, method, row)
            expected = (w[:, None] * src_in[ids]).sum(0)
            torch.testing.assert_close(new_in[row["id"]], expected, atol=1e-4, rtol=1e-4)
            if src_head is not None:
                torch.testing.assert_close(new_head[row["id"]], (w[:, None] * src_head[ids]).sum(0), atol=1e-4, rtol=1e-4)
            if src_bias is not None:
                torch.testing.assert_close(new_bias[row["id"]], (w * src_bias[ids]).sum(), atol=1e-4, rtol=1e-4)
        counts = summary["counts"]
        assert sum(counts.values()) == summary["initialized_tokens"]
        if method in ("random", "mean"):
            assert counts["fallback"] + counts["unreachable"] == summary["initialized_tokens"]
            assert summary["coverage"] == 0.0
        else:
            assert summary["coverage"] > 0.5, (family, mode, method, summary)
        if method == "mean":
            fallback_ids = [r["id"] for r in provenance if r["kind"] in ("fallback", "unreachable")]
            torch.testing.assert_close(new_in[fallback_ids], src_in.mean(0).expand(len(fallback_ids), -1))


def test_specials_map_by_role(tiny_models, target_tokenizers):
    outcome = transfer(tiny_models["xlmr"], target_tokenizers["xlmr"], "fvt")
    source, _ = load_source(tiny_models["xlmr"])
    from transformers import AutoTokenizer

    src_tok = AutoTokenizer.from_pretrained(tiny_models["xlmr"])
    new_rows = outcome.model.get_input_embeddings().weight
    for role in ("cls", "sep", "pad", "mask", "unk"):
        t, s = getattr(outcome.tokenizer, f"{role}_token_id"), getattr(src_tok, f"{role}_token_id")
        assert torch.equal(new_rows[t], source.get_input_embeddings().weight[s])
    assert outcome.model.config.pad_token_id == outcome.tokenizer.pad_token_id


@pytest.mark.slow
def test_same_seed_bit_identical(tiny_models, target_tokenizers):
    def rows(method, seed):
        outcome = transfer(tiny_models["llama"], target_tokenizers["llama"], method, seed=seed)
        return vocab_tensors(outcome.model)

    for method in ("random", "fvt"):
        first, second = rows(method, 3), rows(method, 3)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(rows("random", 3)[0], rows("random", 4)[0])


def test_ofa_factorized_artifact_and_export(tiny_models, target_tokenizers, tmp_path):
    out = tmp_path / "ofa"
    assert main(["init", "--source", str(tiny_models["bert"]), "--tokenizer", str(target_tokenizers["bert"]),
                 "--method", "ofa", "--rank", "8", "--out", str(out)]) == 0
    table = FactorizedEmbedding.from_file(out / FACTORIZED_FILE)
    assert table.coordinates.weight.shape[1] == 8 and table.primitives.weight.shape == (32, 8)
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(out)
    torch.testing.assert_close(model.get_input_embeddings().weight, table.full_matrix(), atol=1e-5, rtol=1e-5)
    assert torch.linalg.matrix_rank(model.get_input_embeddings().weight).item() <= 8
    with torch.no_grad():  # "training" the factors, then exporting them multiplied out
        table.coordinates.weight.mul_(2.0)
    from safetensors.torch import save_file

    save_file({"coordinates": table.coordinates.weight.detach().contiguous(),
               "primitives": table.primitives.weight.detach().T.contiguous()}, str(tmp_path / "trained.safetensors"))
    export_factorized(out, tmp_path / "exported", tmp_path / "trained.safetensors")
    exported = AutoModelForMaskedLM.from_pretrained(tmp_path / "exported")
    torch.testing.assert_close(exported.get_input_embeddings().weight, 2 * model.get_input_embeddings().weight,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_outputs_load_with_stock_transformers(tiny_models, target_tokenizers, extended_tokenizers, tmp_path):
    outs = {}
    for family in FAMILIES:
        for mode, tokenizers in (("replace", target_tokenizers), ("extend", extended_tokenizers)):
            out = tmp_path / f"{family}-{mode}"
            assert main(["init", "--source", str(tiny_models[family]), "--tokenizer", str(tokenizers[family]),
                         "--method", "fvt", "--mode", mode, "--out", str(out)]) == 0
            outs[f"{family}-{mode}"] = str(out)
            summary = json.loads((out / TRANSFER_SUMMARY_FILE).read_text())
            lines = (out / PROVENANCE_FILE).read_text().splitlines()
            assert summary["method"] == "fvt" and len(lines) == summary["target_vocab_size"]
            assert {"id", "token", "kind", "source_ids", "source_tokens", "weights"} <= set(json.loads(lines[-1]))
    script = textwrap.dedent("""
        import json, sys, torch
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
        for name, path in json.loads(sys.argv[1]).items():
            cls = AutoModelForCausalLM if name.startswith(("gpt2", "llama")) else AutoModelForMaskedLM
            model, info = cls.from_pretrained(path, output_loading_info=True)
            tok = AutoTokenizer.from_pretrained(path)
            assert not info["missing_keys"] and not info["mismatched_keys"], (name, info)
            batch = tok(["kuchimana ndalo wana."], return_tensors="pt")
            logits = model(**batch).logits
            assert logits.shape[-1] == len(tok) == model.config.vocab_size, name
            assert torch.isfinite(logits).all(), name
        assert not any(m.startswith("langgraft") for m in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(outs)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_headless_source_gives_body_and_hint(tiny_models, target_tokenizers, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    headless = tmp_path / "headless"
    AutoModel.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(headless)
    outcome = transfer(headless, target_tokenizers["bert"], "fvt")
    assert outcome.summary["head"] is None and "head recover" in outcome.summary["hint"]
    assert outcome.model.get_input_embeddings().weight.shape[0] == len(outcome.tokenizer)


def test_topk_similarities_blocked_matches_dense():
    g = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(37, 8, generator=g), torch.randn(50, 8, generator=g)
    values, indices = topk_similarities(queries, keys, 5, block_size=4)
    dense = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    expected = torch.topk(dense, 5, dim=1)
    torch.testing.assert_close(values, expected.values)
    assert torch.equal(indices, expected.indices)


@pytest.mark.parametrize("case", ["family", "method", "option", "clp-helper", "missing-file", "extend-mismatch"])
def test_bad_input_exits_2_and_writes_nothing(case, tiny_models, target_tokenizers, tmp_path, capsys):
    out = tmp_path / "out"
    args = {"family": ["--source", str(tiny_models["gpt2"]), "--tokenizer", str(target_tokenizers["bert"]),
                       "--method", "fvt"],
            "method": ["--source", str(tiny_models["gpt2"]), "--tokenizer", str(target_tokenizers["gpt2"]),
                       "--method", "nonsense"],
            "option": ["--source", str(tiny_models["gpt2"]), "--tokenizer", str(target_tokenizers["gpt2"]),
                       "--method", "fvt", "--rank", "4"],
            "clp-helper": ["--source", str(tiny_models["gpt2"]), "--tokenizer", str(target_tokenizers["gpt2"]),
                           "--method", "clp"],
            "missing-file": ["--source", str(tiny_models["gpt2"]), "--tokenizer", str(target_tokenizers["gpt2"]),
                             "--method", "fvt", "--dictionary", str(tmp_path / "nope.tsv")],
            "extend-mismatch": ["--source", str(tiny_models["gpt2"]), "--tokenizer", str(target_tokenizers["gpt2"]),
                                "--method", "fvt", "--mode", "extend"]}[case]
    assert main(["init", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("langgraft: error:"), err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    if case == "method":
        assert "fvt" in err[0] and "random" in err[0]


@pytest.mark.slow
def test_ofa_uses_aligned_static_vectors_when_given(tiny_models, parallel_corpus, tmp_path):
    from tiny import TOKENIZER_BUILDERS

    from langgraft.vocab.resources import fasttext

    src, tgt, mapping = parallel_corpus
    small = dict(dim=12, epochs=3, bucket=20_000)
    fasttext.train_fasttext([src], tmp_path / "src.bin", **small)
    fasttext.train_fasttext([tgt], tmp_path / "tgt.bin", **small)
    (tmp_path / "dict.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in mapping.items()), encoding="utf-8")
    TOKENIZER_BUILDERS["bert"](tmp_path / "tok", tgt.read_text(encoding="utf-8").splitlines())
    resources = TransferResources(source_embeddings=str(tmp_path / "src.bin"),
                                  target_embeddings=str(tmp_path / "tgt.bin"), dictionary=str(tmp_path / "dict.tsv"))
    outcome = transfer(tiny_models["bert"], tmp_path / "tok", "ofa", resources=resources, rank=16)
    assert outcome.summary["notes"]["neighbours"] == "aligned static vectors"
    assert outcome.summary["counts"]["neighbours"] > 0
    factors = outcome.artifacts[FACTORIZED_FILE]
    assert factors["coordinates"].shape == (len(outcome.tokenizer), 16)
    torch.testing.assert_close(outcome.model.get_input_embeddings().weight.detach(),
                               factors["coordinates"] @ factors["primitives"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["bert", "gpt2", "xlmr", "llama"])
def test_decomposition_respects_word_boundaries(family, tiny_models):
    from transformers import AutoTokenizer

    from langgraft.vocab.canonical import CanonicalToken

    tok = AutoTokenizer.from_pretrained(tiny_models[family])
    vocab = canonical_tokens(tok)
    initial, inside = decompose([CanonicalToken(b"hand", True), CanonicalToken(b"hand", False)], tok)
    assert initial and inside and initial != inside
    assert vocab[initial[0]].word_initial and not vocab[inside[0]].word_initial
    assert not any(vocab[i].word_initial for i in initial[1:] + inside)
    assert b"".join(vocab[i].raw for i in initial) == b"hand" == b"".join(vocab[i].raw for i in inside)
