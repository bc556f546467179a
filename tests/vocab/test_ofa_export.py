"""`langgraft ofa export`: (trained) OFA factors multiplied out into a stock checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from langgraft.adapt.cli import main
from langgraft.vocab.init.ofa import FactorizedEmbedding, export_factorized
from langgraft.vocab.transfer import FACTORIZED_FILE


@pytest.fixture(scope="module")
def ofa_outputs(tiny_models, target_tokenizers, tmp_path_factory):
    """family -> a rank-8 `langgraft init --method ofa` output (bert: tied head, llama: untied head)."""
    root = tmp_path_factory.mktemp("ofa")
    outs = {}
    for family in ("bert", "llama"):
        outs[family] = root / family
        assert main(["init", "--source", str(tiny_models[family]), "--tokenizer", str(target_tokenizers[family]),
                     "--method", "ofa", "--rank", "8", "--out", str(outs[family])]) == 0
    return outs


def trained_factors(model_dir, path):
    """Stand-in for training the rank-r form: perturb the factors with a seeded step and save them."""
    table = FactorizedEmbedding.from_file(model_dir / FACTORIZED_FILE)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        table.coordinates.weight.add_(0.1 * torch.randn(table.coordinates.weight.shape, generator=generator))
    table.save(path)
    return table


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_cli_export_equals_python_export(family, ofa_outputs, tmp_path):
    model_dir = ofa_outputs[family]
    table = trained_factors(model_dir, tmp_path / "trained.safetensors")
    assert main(["ofa", "export", "--model", str(model_dir), "--factorized", str(tmp_path / "trained.safetensors"),
                 "--out", str(tmp_path / "cli")]) == 0
    export_factorized(model_dir, tmp_path / "python", tmp_path / "trained.safetensors")
    cli = load_file(tmp_path / "cli" / "model.safetensors")
    python = load_file(tmp_path / "python" / "model.safetensors")
    assert cli.keys() == python.keys() and all(torch.equal(cli[k], python[k]) for k in cli)

    before = load_file(model_dir / "model.safetensors")
    changed = {k for k in cli if not torch.equal(cli[k], before[k])}
    embedding_keys = {k for k in changed if "embed" in k or "word_embeddings" in k}
    # only the input table changes (a tied head is the same tensor, saved once)
    assert embedding_keys and changed == embedding_keys, changed
    (key,) = embedding_keys
    torch.testing.assert_close(cli[key], table.full_matrix().detach(), atol=1e-6, rtol=1e-6)
    assert not (tmp_path / "cli" / FACTORIZED_FILE).exists()


def test_untrained_factors_reproduce_the_init_rows(ofa_outputs, tmp_path):
    """Exporting the factors `init` wrote gives back the checkpoint's own input rows (default --factorized)."""
    assert main(["ofa", "export", "--model", str(ofa_outputs["bert"]), "--out", str(tmp_path / "same")]) == 0
    from transformers import AutoModelForMaskedLM

    original = AutoModelForMaskedLM.from_pretrained(ofa_outputs["bert"]).get_input_embeddings().weight
    exported = AutoModelForMaskedLM.from_pretrained(tmp_path / "same").get_input_embeddings().weight
    torch.testing.assert_close(exported, original, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_export_loads_with_stock_transformers(ofa_outputs, tmp_path):
    outs = {}
    for family, model_dir in ofa_outputs.items():
        trained_factors(model_dir, tmp_path / f"{family}.safetensors")
        outs[family] = [str(tmp_path / family), str(tmp_path / f"{family}.safetensors")]
        assert main(["ofa", "export", "--model", str(model_dir), "--factorized", outs[family][1],
                     "--out", outs[family][0]]) == 0
    script = textwrap.dedent("""
        import json, sys, torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
        for family, (path, factors) in json.loads(sys.argv[1]).items():
            cls = AutoModelForCausalLM if family == "llama" else AutoModelForMaskedLM
            model, info = cls.from_pretrained(path, output_loading_info=True)
            assert not info["missing_keys"] and not info["mismatched_keys"], (family, info)
            tensors = load_file(factors)
            expected = tensors["coordinates"] @ tensors["primitives"]
            torch.testing.assert_close(model.get_input_embeddings().weight, expected, atol=1e-5, rtol=1e-5)
            tok = AutoTokenizer.from_pretrained(path)
            logits = model(**tok(["kuchimana ndalo wana."], return_tensors="pt")).logits
            assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all(), family
        assert not any(m.startswith("langgraft") for m in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(outs)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


@pytest.mark.parametrize("case", ["no-factors", "rank-mismatch", "other-model", "missing-tensor", "out-is-model"])
def test_bad_input_exits_2_and_writes_nothing(case, ofa_outputs, tiny_models, target_tokenizers, tmp_path, capsys):
    model_dir, out, bad = ofa_outputs["bert"], tmp_path / "out", tmp_path / "bad.safetensors"
    factors = load_file(model_dir / FACTORIZED_FILE)
    if case == "no-factors":  # an fvt output has no factorized file beside it
        model_dir = tmp_path / "fvt"
        assert main(["init", "--source", str(tiny_models["bert"]), "--tokenizer", str(target_tokenizers["bert"]),
                     "--method", "fvt", "--out", str(model_dir)]) == 0
        capsys.readouterr()
    elif case == "rank-mismatch":
        save_file({"coordinates": factors["coordinates"], "primitives": factors["primitives"][:-1].contiguous()}, bad)
    elif case == "other-model":
        save_file({"coordinates": factors["coordinates"][:-3].contiguous(), "primitives": factors["primitives"]}, bad)
    elif case == "missing-tensor":
        save_file({"coordinates": factors["coordinates"]}, bad)
    args = ["ofa", "export", "--model", str(model_dir), "--out", str(model_dir if case == "out-is-model" else out)]
    if bad.exists():
        args += ["--factorized", str(bad)]
    before = sorted(p.name for p in model_dir.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("langgraft: error:"), err
    assert {"no-factors": "not found", "rank-mismatch": "rank mismatch", "other-model": "input embeddings are",
            "missing-tensor": "'primitives'", "out-is-model": "is the input"}[case] in err[0]
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert sorted(p.name for p in model_dir.iterdir()) == before
