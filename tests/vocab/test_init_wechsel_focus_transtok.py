"""WECHSEL, FOCUS and trans-tokenization through the transfer engine, on tiny models of every family."""
from __future__ import annotations

import json

import pytest
import torch

from langgraft.adapt.cli import main as cli
from langgraft.errors import UserError
from langgraft.vocab.init import TransferResources
from langgraft.vocab.init.focus import sparsemax, sparsemax_neighbours
from langgraft.vocab.init.transtok import top_k_rows
from langgraft.vocab.resources import fasttext
from langgraft.vocab.transfer import initialize_embeddings, transfer


@pytest.fixture(scope="module")
def parallel_tokenizers(tmp_path_factory, parallel_corpus):
    """family -> target tokenizer (same family as the tiny source) trained on the parallel target side."""
    from tiny import TOKENIZER_BUILDERS

    root = tmp_path_factory.mktemp("parallel_tokenizers")
    lines = parallel_corpus[1].read_text(encoding="utf-8").splitlines()
    for family in ("bert", "gpt2", "xlmr", "llama"):
        TOKENIZER_BUILDERS[family](root / family, lines)
    return {family: root / family for family in ("bert", "gpt2", "xlmr", "llama")}


def rows_follow_provenance(outcome, source_dir) -> None:
    """Every neighbours/copied row equals Σ w·E_s of the source rows its provenance names."""
    from transformers import AutoModel

    source = AutoModel.from_pretrained(source_dir).get_input_embeddings().weight.detach()
    target = outcome.model.get_input_embeddings().weight.detach()
    checked = 0
    for row in outcome.provenance:
        if row["kind"] in ("neighbours", "copied") and row["source_ids"]:
            expected = (torch.tensor(row["weights"])[:, None] * source[row["source_ids"]]).sum(dim=0)
            assert torch.allclose(target[row["id"]], expected, atol=1e-4), row
            checked += 1
    assert checked > 0


# ------------------------------------------------------------------------------------ sparsemax
def test_sparsemax_is_the_simplex_projection():
    assert torch.allclose(sparsemax(torch.tensor([1.0, 0.5, -1.0])), torch.tensor([0.75, 0.25, 0.0]))
    assert torch.allclose(sparsemax(torch.zeros(4)), torch.full((4,), 0.25))
    scores = torch.randn(64, 30, generator=torch.Generator().manual_seed(0))
    probs = sparsemax(scores)
    assert (probs >= 0).all() and torch.allclose(probs.sum(dim=1), torch.ones(64), atol=1e-5)
    assert (probs == 0).any(dim=1).all()  # sparse
    # the projection's KKT condition: all supported entries share the same score - probability
    for row_scores, row_probs in zip(scores, probs):
        support = row_probs > 0
        gap = row_scores[support] - row_probs[support]
        assert torch.allclose(gap, gap[0].expand_as(gap), atol=1e-5)
        assert (row_scores[~support] <= gap[0] + 1e-6).all()


def test_sparsemax_neighbours_blocks_agree():
    gen = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(37, 5, generator=gen), torch.randn(20, 5, generator=gen)
    big = sparsemax_neighbours(queries, keys, block_size=1000)
    small = sparsemax_neighbours(queries, keys, block_size=4)
    dense_big = torch.zeros(37, 20).scatter_add_(1, big[0].clamp_min(0), big[1])
    dense_small = torch.zeros(37, 20).scatter_add_(1, small[0].clamp_min(0), small[1])
    assert torch.allclose(dense_big, dense_small)
    assert torch.allclose(dense_big.sum(dim=1), torch.ones(37), atol=1e-5)


# -------------------------------------------------------------------------------------- wechsel
@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_wechsel_builds_a_valid_checkpoint(tmp_path, family, tiny_models, parallel_tokenizers, word_resources,
                                          parallel_corpus):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    out = tmp_path / "wechsel"
    model = initialize_embeddings(str(tiny_models[family]), str(parallel_tokenizers[family]), "wechsel",
                                  resources=word_resources, out=out).model
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert summary["notes"]["dictionary_pairs_used"] == len(parallel_corpus[2])
    # tokens spelling whole target words get neighbours
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    words = set(parallel_corpus[2].values())
    whole = [r for r in provenance if r["token"].lstrip("Ġ") in words]
    assert whole and all(r["kind"] == "neighbours" for r in whole)
    assert summary["counts"]["neighbours"] > 100
    auto = AutoModelForMaskedLM if family == "bert" else AutoModelForCausalLM
    loaded = auto.from_pretrained(out)
    assert loaded.get_input_embeddings().weight.shape[0] == summary["target_vocab_size"]
    assert torch.equal(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_wechsel_token_words_are_split_like_the_fasttext_text():
    """A token is looked up as the words its surface makes under the fastText text's split rule."""
    from langgraft.vocab.canonical import CanonicalToken
    from langgraft.vocab.init.wechsel import token_words

    def words(text: str, initial: bool) -> list[tuple[str, bool]]:
        return token_words(CanonicalToken(text.encode("utf-8"), initial))

    assert words("ana", False) == [("ana", False)] and words("ana", True) == [("ana", True)]
    # punctuation glued to a word (byte-level BPE's "," and ".”") is a word of its own there
    assert words(",", False) == [(",", True)]
    assert words(".\u201d", False) == [(".", True), ("\u201d", True)]
    assert words("'s", False) == [("'", True), ("s", True)]  # after punctuation a word starts
    assert words("a b", True) == [("a", True), ("b", True)]  # SentencePiece piece spanning a space
    assert words("\u0932\u094d\u0932\u0940", False) == [("\u0932\u094d\u0932\u0940", False)]  # one Devanagari run
    assert token_words(CanonicalToken(b"[CLS]", True, is_special=True)) == []
    assert token_words(CanonicalToken(b"\xe2", False, is_byte=True)) == []


def test_wechsel_neighbours_follow_the_dictionary(tiny_models, parallel_tokenizers, word_resources, parallel_corpus):
    outcome = transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "wechsel",
                       resources=word_resources)
    rows_follow_provenance(outcome, tiny_models["bert"])
    translation = {t: s for s, t in parallel_corpus[2].items()}
    whole_words = [r for r in outcome.provenance if r["token"] in translation and r["kind"] == "neighbours"]
    hits = sum(1 for r in whole_words if translation[r["token"]] in r["source_tokens"][:3])
    # chance of the translation being among 3 of ~170 source tokens is < 2%
    assert len(whole_words) >= 10 and hits >= 0.3 * len(whole_words)


@pytest.mark.slow
def test_wechsel_is_deterministic_and_trains_from_corpora(tmp_path, tiny_models, parallel_tokenizers,
                                                          parallel_corpus, word_resources):
    src, tgt, _ = parallel_corpus
    resources = TransferResources(source_corpus=[str(src)], target_corpus=[str(tgt)], parallel=(str(src), str(tgt)),
                                  workdir=str(tmp_path / "work"))
    options = dict(dim=12, epochs=3, bucket=20_000)
    first = transfer(str(tiny_models["xlmr"]), str(parallel_tokenizers["xlmr"]), "wechsel", resources=resources,
                     **options)
    cached = sorted(p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in (tmp_path / "work").iterdir()
                    if not p.name.endswith(".json"))
    assert cached == ["dictionary-" + cached[0].split("-")[1], "fasttext-source", "fasttext-target"]
    second = transfer(str(tiny_models["xlmr"]), str(parallel_tokenizers["xlmr"]), "wechsel", resources=resources,
                      **options)
    assert torch.equal(first.model.get_input_embeddings().weight, second.model.get_input_embeddings().weight)
    # as in the wechsel package, a token's decoded surface is looked up as a word: only surfaces too
    # short for any fastText n-gram (3+ characters with the <, > markers) and unknown as words get no
    # vector, so every piece of 3+ characters has neighbours, and those make most of the vocabulary
    surfaces = {r["token"]: r["token"].replace("\u2581", "").removeprefix("##") for r in first.provenance}
    fallback = [r["token"] for r in first.provenance if r["kind"] == "fallback"]
    assert all(len(surfaces[token]) < 3 for token in fallback), fallback
    assert first.summary["counts"]["neighbours"] > first.summary["counts"]["fallback"]


def test_wechsel_surface_rule_is_an_option(tiny_models, parallel_tokenizers, word_resources):
    """The package's lookup by default; langgraft's boundary-aware lookup on request: ``##`` pieces
    are then looked up without their marker, so rows differ, and special source tokens are never
    neighbours."""
    source_dir, target_dir = str(tiny_models["bert"]), str(parallel_tokenizers["bert"])
    package = transfer(source_dir, target_dir, "wechsel", resources=word_resources)
    boundary = transfer(source_dir, target_dir, "wechsel", resources=word_resources, surface="boundary")
    specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert not [(r["token"], specials & set(r["source_tokens"])) for r in boundary.provenance
                if r["kind"] == "neighbours" and specials & set(r["source_tokens"])]
    differing = [r["token"] for r, b in zip(package.provenance, boundary.provenance) if r["source_ids"] != b["source_ids"]]
    assert any(token.startswith("##") for token in differing)
    with pytest.raises(UserError, match="surface='words' is not one of package, boundary"):
        transfer(source_dir, target_dir, "wechsel", resources=word_resources, surface="words")


def test_wechsel_errors(tmp_path, tiny_models, parallel_tokenizers, word_resources, parallel_corpus):
    source_dir, target_dir = str(tiny_models["bert"]), str(parallel_tokenizers["bert"])
    with pytest.raises(UserError, match="--dictionary or --parallel"):
        transfer(source_dir, target_dir, "wechsel", resources=TransferResources(
            source_embeddings=word_resources.source_embeddings, target_embeddings=word_resources.target_embeddings))
    (tmp_path / "useless.tsv").write_text("zzz\tqqq\n")
    with pytest.raises(UserError, match="no dictionary pair"):
        transfer(source_dir, target_dir, "wechsel", resources=TransferResources(
            source_embeddings=word_resources.source_embeddings, target_embeddings=word_resources.target_embeddings,
            dictionary=str(tmp_path / "useless.tsv")))
    fasttext.train_fasttext([parallel_corpus[1]], tmp_path / "t8.bin", dim=8, epochs=3, bucket=20_000)
    with pytest.raises(UserError, match="dimensions differ"):
        transfer(source_dir, target_dir, "wechsel", resources=TransferResources(
            source_embeddings=word_resources.source_embeddings, target_embeddings=str(tmp_path / "t8.bin"),
            dictionary=word_resources.dictionary))


# ---------------------------------------------------------------------------------------- focus
@pytest.mark.slow
@pytest.mark.parametrize("family", ["xlmr", "llama"])
def test_focus_builds_a_valid_deterministic_checkpoint(tmp_path, family, tiny_models, parallel_tokenizers,
                                                       parallel_corpus):
    resources = TransferResources(target_corpus=[str(parallel_corpus[1])])
    options = dict(dim=12, bucket=20_000, epochs=5)
    first = transfer(str(tiny_models[family]), str(parallel_tokenizers[family]), "focus", resources=resources,
                     **options)
    second = transfer(str(tiny_models[family]), str(parallel_tokenizers[family]), "focus", resources=resources,
                      **options)
    assert torch.equal(first.model.get_input_embeddings().weight, second.model.get_input_embeddings().weight)
    counts = first.summary["counts"]
    assert counts["copied"] > 0 and counts["neighbours"] > 0
    rows_follow_provenance(first, tiny_models[family])
    for row in first.provenance:
        if row["kind"] == "neighbours":  # sparsemax weights: a convex combination of overlapping tokens
            assert abs(sum(row["weights"]) - 1) < 1e-4 and all(w > 0 for w in row["weights"])


def test_focus_with_a_prebuilt_token_model(tmp_path, tiny_models, parallel_tokenizers, parallel_corpus):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(parallel_tokenizers["bert"])
    fasttext.train_token_fasttext([parallel_corpus[1]], tokenizer, tmp_path / "tokens.bin", dim=12, epochs=5,
                                  bucket=20_000)
    assert "##a" in fasttext.load_fasttext(tmp_path / "tokens.bin").words or len(tokenizer) > 0
    outcome = transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "focus",
                       token_embeddings=str(tmp_path / "tokens.bin"))
    assert outcome.summary["counts"]["neighbours"] > 0
    combined = transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "focus",
                        token_embeddings=str(tmp_path / "tokens.bin"), fvt_fallback=True)
    filled = combined.summary["notes"]["fvt_fallback_tokens"]
    assert filled > 0
    assert combined.summary["counts"]["fallback"] == outcome.summary["counts"]["fallback"] - filled
    rows_follow_provenance(combined, tiny_models["bert"])
    with pytest.raises(UserError, match="focus needs --target-corpus"):
        transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "focus")


@pytest.mark.slow
def test_focus_mixed_with_transtok(tiny_models, parallel_tokenizers, parallel_corpus):
    src, tgt, _ = parallel_corpus
    resources = TransferResources(target_corpus=[str(tgt)], parallel=(str(src), str(tgt)))
    options = dict(dim=12, bucket=20_000, epochs=5)
    plain = transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "focus", resources=resources,
                     **options)
    mixed = transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "focus", resources=resources,
                     transtok_share=0.5, **options)
    assert mixed.summary["notes"]["mixed_rows"] > 0
    assert mixed.summary["counts"] == plain.summary["counts"]  # same tokens placed, rows mixed
    rows_follow_provenance(mixed, tiny_models["bert"])
    plain_rows = {r["id"]: r for r in plain.provenance}
    changed = [r for r in mixed.provenance if r["kind"] == "neighbours" and r != plain_rows[r["id"]]]
    assert len(changed) == mixed.summary["notes"]["mixed_rows"]
    for row in changed:  # half of the weight stays on FOCUS's neighbours, half moves to the aligned tokens
        assert abs(sum(row["weights"]) - 1) < 1e-4
        assert abs(sum(row["weights"][:len(plain_rows[row["id"]]["weights"])]) - 0.5) < 1e-4
    with pytest.raises(UserError, match="transtok_share needs --parallel"):
        transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "focus",
                 resources=TransferResources(target_corpus=[str(tgt)]), transtok_share=0.5)


# ------------------------------------------------------------------------------------- transtok
def test_top_k_rows_drops_rare_pairs_and_normalizes():
    counts = torch.sparse_coo_tensor(torch.tensor([[0, 0, 0, 1, 2], [3, 1, 2, 0, 1]]),
                                     torch.tensor([5.0, 3.0, 1.0, 1.5, 4.0]), (3, 4),
                                     check_invariants=True).coalesce()
    ids, probs, totals = top_k_rows(counts, min_count=2, top_k=2, n_rows=3, limit=4)
    assert ids.tolist() == [[3, 1], [-1, -1], [1, -1]]
    assert torch.allclose(probs[0], torch.tensor([5 / 8, 3 / 8])) and probs[1].sum() == 0
    assert totals.tolist() == [8.0, 0.0, 4.0]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_transtok_builds_a_valid_checkpoint(tmp_path, family, tiny_models, parallel_tokenizers, parallel_corpus):
    src, tgt, _ = parallel_corpus
    outcome = transfer(str(tiny_models[family]), str(parallel_tokenizers[family]), "transtok",
                       resources=TransferResources(parallel=(str(src), str(tgt))))
    notes = outcome.summary["notes"]
    assert notes["aligned_tokens"] > 20 and outcome.summary["coverage"] > 0.8
    rows_follow_provenance(outcome, tiny_models[family])
    period = [r for r in outcome.provenance if r["token"] in (".", "▁.")]
    # symbols in both vocabularies map to themselves
    assert period and any(r["kind"] == "copied" for r in period)


@pytest.mark.slow
def test_transtok_from_a_table_is_deterministic(tmp_path, tiny_models, parallel_tokenizers, parallel_corpus):
    src, tgt, mapping = parallel_corpus
    source_dir, target_dir = str(tiny_models["bert"]), str(parallel_tokenizers["bert"])
    assert cli(["resources", "align", "--parallel", str(src), str(tgt), "--source-tokenizer", source_dir,
                "--target-tokenizer", target_dir, "--out", str(tmp_path / "table.tsv")]) == 0
    runs = [transfer(source_dir, target_dir, "transtok", alignment_table=str(tmp_path / "table.tsv"))
            for _ in range(2)]
    assert torch.equal(runs[0].model.get_input_embeddings().weight, runs[1].model.get_input_embeddings().weight)
    translation = {t: s for s, t in mapping.items()}
    whole = [r for r in runs[0].provenance if r["token"] in translation and r["kind"] == "neighbours"]
    assert whole and sum(translation[r["token"]] == r["source_tokens"][0] for r in whole) >= 0.8 * len(whole)
    with pytest.raises(UserError, match="transtok needs --parallel"):
        transfer(source_dir, target_dir, "transtok")


@pytest.mark.slow
def test_transtok_inherits_from_longer_tokens(tiny_models, parallel_tokenizers, parallel_corpus):
    src, tgt, _ = parallel_corpus
    outcome = transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "transtok",
                       resources=TransferResources(parallel=(str(src), str(tgt))), min_count=90)
    # only pairs of the most frequent words survive min_count=90; pieces of them inherit
    counts = outcome.summary["counts"]
    assert outcome.summary["notes"]["inherited_tokens"] > 0 and counts["fallback"] > 0
    inherited = [r for r in outcome.provenance if r["kind"] == "neighbours" and r["token"] not in ("[CLS]",)]
    assert inherited and all(abs(sum(r["weights"]) - 1) < 1e-4 for r in inherited)
    with_fvt = transfer(str(tiny_models["bert"]), str(parallel_tokenizers["bert"]), "transtok",
                        resources=TransferResources(parallel=(str(src), str(tgt))), min_count=90, fvt_fallback=True)
    assert with_fvt.summary["counts"]["fallback"] < counts["fallback"]


# ------------------------------------------------------------------------------------------ CLI
def test_cli_init_with_resources(tmp_path, tiny_models, parallel_tokenizers, word_resources, capsys):
    out = tmp_path / "out"
    code = cli(["init", "--source", str(tiny_models["gpt2"]), "--tokenizer", str(parallel_tokenizers["gpt2"]),
                "--method", "wechsel", "--out", str(out), "--source-embeddings", word_resources.source_embeddings,
                "--target-embeddings", word_resources.target_embeddings, "--dictionary", word_resources.dictionary,
                "--option", "k=5", "--option", "temperature=0.2"])
    assert code == 0 and (out / "provenance.jsonl").is_file()
    assert json.loads((out / "transfer_summary.json").read_text())["options"]["k"] == 5
    code = cli(["init", "--source", str(tiny_models["gpt2"]), "--tokenizer", str(parallel_tokenizers["gpt2"]),
                "--method", "wechsel", "--out", str(tmp_path / "bad"), "--source-embeddings",
                word_resources.source_embeddings, "--target-embeddings", word_resources.target_embeddings])
    assert code == 2 and not (tmp_path / "bad").exists()
    assert "--dictionary or --parallel" in capsys.readouterr().err
