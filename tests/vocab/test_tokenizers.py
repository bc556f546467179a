"""Tokenizer training, extension and statistics on every family (tiny fixtures) and the MiniLM dir."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import build_llama3_tokenizer, source_sentences, target_sentences
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from langgraft.adapt.cli import main
from langgraft.errors import UserError
from langgraft.vocab.canonical import backend_json, detect_family
from langgraft.vocab.tokenizers import (EXTENSION_FILE, extend_tokenizer, plain_backend, read_extension_info,
                                        train_tokenizer, trainable_family)
from langgraft.vocab.tokstats import format_stats_table, tokenizer_stats

FAMILIES = ("bert", "gpt2", "xlmr", "llama")
FAMILY_NAMES = {"bert": "wordpiece", "gpt2": "byte-level-bpe", "xlmr": "sentencepiece-unigram",
                "llama": "sentencepiece-bpe"}
# byte-level and byte-fallback vocabularies hold 256 byte pieces on top of the learned ones
TRAIN_SIZES = {"bert": 250, "gpt2": 500, "xlmr": 250, "llama": 500}


def _backend(tok) -> dict:
    return json.loads(tok.backend_tokenizer.to_str())


def _auto(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def trained(tiny_models, target_corpus, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trained")
    for family in FAMILIES:
        train_tokenizer(tiny_models[family], [target_corpus], TRAIN_SIZES[family], root / family)
    return {family: root / family for family in FAMILIES}


# ----------------------------------------------------------------------------- train


@pytest.mark.parametrize("family", FAMILIES)
def test_train_keeps_the_source_pipeline_and_specials(family, tiny_models, trained):
    source, new = _auto(tiny_models[family]), _auto(trained[family])
    assert type(new) is type(source)
    assert detect_family(new).name == FAMILY_NAMES[family]
    assert len(new) == TRAIN_SIZES[family]
    assert new.special_tokens_map == source.special_tokens_map
    special_ids = sorted(set(new.all_special_ids))
    assert special_ids == list(range(len(special_ids))), "special tokens come first"
    src_json, new_json = _backend(source), _backend(new)
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        assert new_json[part] == src_json[part], part
    assert new_json["post_processor"]["type"] == src_json["post_processor"]["type"]
    for token, entry in (new_json["post_processor"].get("special_tokens") or {}).items():
        assert entry["ids"] == [new.convert_tokens_to_ids(token)]
    text = target_sentences(1, seed=99)[0]
    assert new.decode(new(text)["input_ids"], skip_special_tokens=True) == (
        text.lower() if family == "bert" else text)


@pytest.mark.parametrize("family", FAMILIES)
def test_trained_tokenizer_fits_the_target_language_better(family, tiny_models, trained):
    rows = tokenizer_stats({"source": tiny_models[family], "new": trained[family]},
                           texts=target_sentences(200, seed=5))
    assert rows[1]["fertility"] < 0.85 * rows[0]["fertility"]
    assert rows[1]["unk_rate"] == 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_training_and_extension_are_reproducible(family, tiny_models, target_corpus, trained, extended_tokenizers, tmp_path):
    # the Rust trainers break ties in per-process hash-map order; a second run must still match
    train_tokenizer(tiny_models[family], [target_corpus], TRAIN_SIZES[family], tmp_path / "again")
    extend_tokenizer(tiny_models[family], [target_corpus], tmp_path / "again-ext", new_tokens=40)
    for first, second in ((trained[family], tmp_path / "again"), (extended_tokenizers[family], tmp_path / "again-ext")):
        assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()


def test_sentencepiece_bpe_keeps_byte_fallback_and_word_boundaries(trained):
    new = _auto(trained["llama"])
    vocab = new.get_vocab()
    specials = len(set(new.all_special_ids))
    assert [vocab[f"<0x{byte:02X}>"] for byte in range(256)] == list(range(specials, specials + 256))
    assert not [token for token in vocab if "▁" in token[1:]], "no piece spans two words"
    text = "mu€ ndiza"  # "€" never occurs in the corpus: it must become byte pieces, not <unk>
    tokens = new.tokenize(text)
    assert ["<0xE2>", "<0x82>", "<0xAC>"] == [token for token in tokens if token.startswith("<0x")]
    assert new.decode(new(text)["input_ids"], skip_special_tokens=True) == text
    assert new.unk_token_id not in new(text)["input_ids"]


@pytest.mark.slow
def test_saved_tokenizers_load_without_langgraft(trained, extended_tokenizers):
    dirs = [str(path) for path in [*trained.values(), *extended_tokenizers.values()]]
    script = (
        "import sys, json\nfrom transformers import AutoTokenizer\n"
        "print(json.dumps([type(AutoTokenizer.from_pretrained(d)).__name__ for d in sys.argv[1:]]))\n"
        "assert 'langgraft' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *dirs], capture_output=True, text=True, check=True)
    names = json.loads(result.stdout.strip().splitlines()[-1])
    assert names == ["BertTokenizer", "GPT2Tokenizer", "XLMRobertaTokenizer", "LlamaTokenizer"] * 2


# ----------------------------------------------------------------------------- extend


@pytest.mark.parametrize("family", FAMILIES)
def test_extend_keeps_every_id_and_uses_new_pieces(family, tiny_models, extended_tokenizers):
    source, new = _auto(tiny_models[family]), _auto(extended_tokenizers[family])
    assert type(new) is type(source)
    assert len(new) == len(source) + 40
    vocab = new.get_vocab()
    assert all(vocab[token] == index for token, index in source.get_vocab().items())
    assert new.special_tokens_map == source.special_tokens_map
    info = read_extension_info(extended_tokenizers[family])
    assert info["original_vocab_size"] == len(source)
    assert info["new_token_ids"] == [len(source), len(source) + 40]
    assert info["family"] == FAMILY_NAMES[family]
    new_ids = set(range(len(source), len(new)))
    assert not new_ids & set(new.added_tokens_decoder), "new pieces live in the model vocabulary"
    used = {index for text in target_sentences(100, seed=7) for index in new(text)["input_ids"]} & new_ids
    assert len(used) >= 10
    rows = tokenizer_stats({"source": source, "extended": new}, texts=target_sentences(200, seed=5))
    if family == "bert":  # the tiny BERT maps whole unseen words to one [UNK]; new pieces spell them out
        assert rows[1]["unk_rate"] < 0.5 * rows[0]["unk_rate"]
    else:
        assert rows[1]["fertility"] < rows[0]["fertility"]



@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_bpe_extension_merges_build_on_existing_pieces_and_every_new_piece_is_emitted(family, tiny_models,
                                                                                       extended_tokenizers):
    """Continued BPE training: each appended merge joins two pieces that exist before it fires, and the
    tokenizer splits every new piece's own text into that one piece."""
    source, new = _auto(tiny_models[family]), _auto(extended_tokenizers[family])
    source_merges = _backend(source)["model"]["merges"]
    model = _backend(new)["model"]
    assert model["merges"][:len(source_merges)] == source_merges
    new_pieces = {piece for piece, index in model["vocab"].items() if index >= len(source)}
    pieces = set(source.get_vocab()) | {piece for piece in new_pieces if len(piece) == 1}  # new characters
    for left, right in model["merges"][len(source_merges):]:
        assert left in pieces and right in pieces
        pieces.add(left + right)
    assert new_pieces <= pieces
    backend = plain_backend(new)
    assert [piece for piece in sorted(new_pieces)
            if [token.value for token in backend.model.tokenize(piece)] != [piece]] == []
    used = {index for text in target_sentences(200, seed=5) for index in new(text)["input_ids"]}
    assert len(used & set(range(len(source), len(new)))) >= 0.9 * len(new_pieces)


def test_bpe_extension_merges_pieces_the_source_merged_first(tmp_path):
    """A target merge of parts the source merges away first (``b c`` after the source's ``a b``) could never
    fire; continued training merges what the source left (``ab c``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2TokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: index for index, char in enumerate(sorted(alphabet))}
    vocab["ab"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab, [("a", "b")]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    GPT2TokenizerFast(tokenizer_object=backend).save_pretrained(tmp_path / "source")
    (tmp_path / "target.txt").write_text("abc xabc abcd\n" * 20, encoding="utf-8")
    extended = extend_tokenizer(tmp_path / "source", [tmp_path / "target.txt"], tmp_path / "extended", new_tokens=3)
    new_merges = _backend(extended)["model"]["merges"][1:]
    assert new_merges[0] == ["ab", "c"], new_merges  # the commonest pair over the source's own segmentation
    assert extended.tokenize("abc") == ["abc"]
    assert len(extended("xabc abcd")["input_ids"]) < len(_auto(tmp_path / "source")("xabc abcd")["input_ids"])


def test_extend_by_total_vocab_size(tiny_models, target_corpus, tmp_path):
    source = _auto(tiny_models["bert"])
    tok = extend_tokenizer(tiny_models["bert"], [target_corpus], tmp_path / "out", vocab_size=len(source) + 25)
    assert len(tok) == len(source) + 25
    assert (tmp_path / "out" / EXTENSION_FILE).is_file()


@pytest.mark.parametrize("family", ["bert", "xlmr"])
def test_extend_by_fewer_pieces_than_the_alphabet(family, tiny_models, target_corpus, tmp_path):
    # the helper target tokenizer must still hold the whole corpus alphabet
    source = _auto(tiny_models[family])
    tok = extend_tokenizer(tiny_models[family], [target_corpus], tmp_path / "out", new_tokens=3)
    assert len(tok) == len(source) + 3
    assert read_extension_info(tmp_path / "out")["source"] == str(tiny_models[family])


# ----------------------------------------------------------------------------- MiniLM


def test_minilm_train_and_extend(target_corpus, tmp_path):
    from langgraft.models import resolve_model_path

    minilm = _auto(resolve_model_path("minilm"))
    new = train_tokenizer("minilm", [target_corpus], 300, tmp_path / "train")
    assert type(new).__name__ == "BertTokenizer" and len(new) == 300
    assert new.special_tokens_map == minilm.special_tokens_map
    assert new.model_max_length == minilm.model_max_length
    assert new.tokenize("NDIZA") == new.tokenize("ndiza"), "uncased like the source"
    saved = json.loads((tmp_path / "train" / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["padding"]["pad_id"] == new.pad_token_id  # MiniLM's tokenizer.json pads to 128
    ext = extend_tokenizer("minilm", [target_corpus], tmp_path / "extend", new_tokens=30)
    assert len(ext) == len(minilm) + 30
    vocab = ext.get_vocab()
    assert all(vocab[token] == index for token, index in minilm.get_vocab().items())


# ----------------------------------------------------------------------------- statistics


def _hand_wordpiece(vocab_tokens: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: index for index, token in enumerate(specials + vocab_tokens)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return BertTokenizer(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                         sep_token="[SEP]", mask_token="[MASK]")


def test_stats_match_hand_counts():
    first = _hand_wordpiece(["ab", "##c", "d", "x"])
    second = _hand_wordpiece(["ab", "c", "##d", "zz"])
    texts = ["ab abc d", "q abc"]
    rows = tokenizer_stats({"first": first, "second": second}, texts=texts)
    # first: "ab"->ab, "abc"->ab ##c, "d"->d, "q"->[UNK], "abc"->ab ##c : 7 tokens, 5 words, 2 split, 1 unk
    assert rows[0]["words"] == 5 and rows[0]["tokens"] == 7
    assert rows[0]["fertility"] == pytest.approx(7 / 5)
    assert rows[0]["split_share"] == pytest.approx(2 / 5)
    assert rows[0]["unk_rate"] == pytest.approx(1 / 7)
    # second: "ab"->ab, "abc"->[UNK] (no ##c), "d"->[UNK], "q"->[UNK], "abc"->[UNK]
    assert rows[1]["tokens"] == 5 and rows[1]["split_share"] == 0.0
    assert rows[1]["unk_rate"] == pytest.approx(4 / 5)
    # overlap against first: ab (yes), c (word-initial c: no, first has only ##c), ##d (no), zz (no)
    assert rows[1]["overlap"] == pytest.approx(1 / 4)
    assert rows[0]["overlap"] == 1.0
    table = format_stats_table(rows)
    assert "| first | wordpiece | 9 | 1.400 | 40.0% | 14.29% | 100.0% |" in table


@pytest.mark.parametrize("family", FAMILIES)
def test_stats_agree_with_direct_encoding(family, tiny_models):
    tok = _auto(tiny_models[family])
    texts = source_sentences(30, seed=3) + target_sentences(30, seed=4)
    row = tokenizer_stats({"t": tok}, texts=texts, batch_size=7)[0]
    tokens = sum(len(tok(text, add_special_tokens=False)["input_ids"]) for text in texts)
    words = [word for text in texts for word in text.split()]
    assert (row["tokens"], row["words"]) == (tokens, len(words))
    if family == "bert":  # BERT pre-tokenizes each whitespace word on its own, so words can be encoded alone
        split = sum(len(tok.tokenize(word)) >= 2 for word in words)
        assert row["split_share"] == pytest.approx(split / len(words))


def test_stats_ignore_truncation_in_tokenizer_json():
    from langgraft.models import resolve_model_path

    long_text = " ".join(["ndizakuona"] * 300)  # MiniLM's tokenizer.json truncates/pads to 128
    row = tokenizer_stats({"minilm": resolve_model_path("minilm")}, texts=[long_text])[0]
    assert row["tokens"] == 300 * len(_auto(resolve_model_path("minilm")).tokenize("ndizakuona"))


def test_extend_with_a_source_sample_keeps_the_source_tokenization(target_corpus, tmp_path, capsys):
    """Llama-3-style byte-level BPE with few merges: new target merges fire inside source words unless guarded."""
    source = build_llama3_tokenizer(tmp_path / "source", source_sentences(400, seed=0), vocab_size=290)
    sample, held_out = source_sentences(300, seed=10), source_sentences(300, seed=12)
    (tmp_path / "sample.txt").write_text("\n".join(sample) + "\n", encoding="utf-8")
    plain = extend_tokenizer(source, [target_corpus], tmp_path / "plain", new_tokens=40)
    assert main(["tokenizer", "extend", "--source", str(source), "--corpus", str(target_corpus), "--new-tokens", "40",
                 "--source-sample", str(tmp_path / "sample.txt"), "--out", str(tmp_path / "guarded")]) == 0
    assert "300 documents, 0 tokenized differently" in capsys.readouterr().out
    guarded, old = _auto(tmp_path / "guarded"), _auto(source)

    def changed(tokenizer, texts):
        return sum(old(text)["input_ids"] != tokenizer(text)["input_ids"] for text in texts)

    assert changed(plain, sample) > 0  # the failure the option exists for
    assert changed(guarded, sample) == 0 and len(guarded) == len(plain) == len(old) + 40
    backend = plain_backend(guarded)  # retrained without the rejected pieces: every merge still fires
    assert all([token.id for token in backend.model.tokenize(backend.id_to_token(index))] == [index]
               for index in range(len(old), len(guarded)))
    assert all(guarded.get_vocab()[token] == index for token, index in old.get_vocab().items())
    info = read_extension_info(tmp_path / "guarded")
    record = info["source_sample"]
    assert record["documents"] == 300 and record["documents_changed"] == 0 and record["rejected_pieces"] > 0
    assert info["new_tokens_used_on_corpus_sample"] > 0
    # outside the sample nothing is guaranteed, only measured: held-out source text of the same words fares better
    assert changed(guarded, held_out) < changed(plain, held_out)


def test_extend_keeps_the_ids_of_special_tokens_stored_after_the_pieces(target_corpus, tmp_path):
    """Llama-3 keeps its special tokens as added tokens after the learned pieces (ids 128000+), not in the model."""
    trained = build_llama3_tokenizer(tmp_path / "trained", source_sentences(400, seed=0), vocab_size=290)
    source = _auto(trained)
    source.add_special_tokens({"additional_special_tokens": [f"<|reserved_special_token_{i}|>" for i in range(3)]})
    source.save_pretrained(tmp_path / "source")
    assert source.convert_tokens_to_ids("<|reserved_special_token_0|>") not in _backend(source)["model"]["vocab"].values()
    extended = extend_tokenizer(tmp_path / "source", [target_corpus], tmp_path / "extended", new_tokens=40)
    assert len(extended) == len(source) + 40
    assert all(extended.get_vocab()[token] == index for token, index in source.get_vocab().items())
    text = "<|begin_of_text|>kale<|reserved_special_token_2|>"
    assert extended(text, add_special_tokens=False)["input_ids"] == source(text, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------- CLI and errors


@pytest.mark.slow
def test_cli_train_extend_stats(tiny_models, target_corpus, tmp_path, capsys):
    assert main(["tokenizer", "train", "--source", str(tiny_models["xlmr"]), "--corpus", str(target_corpus),
                 "--vocab-size", "200", "--out", str(tmp_path / "new")]) == 0
    assert main(["tokenizer", "extend", "--source", str(tiny_models["xlmr"]), "--corpus", str(target_corpus),
                 "--new-tokens", "20", "--out", str(tmp_path / "ext")]) == 0
    capsys.readouterr()
    assert main(["tokenizer", "stats", "--source", f"src={tiny_models['xlmr']}", "--tokenizer", str(tmp_path / "new"),
                 "--tokenizer", f"ext={tmp_path / 'ext'}", "--corpus", str(target_corpus), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["tokenizer"] for row in rows] == ["src", "new", "ext"]
    assert rows[1]["vocab_size"] == 200 and rows[2]["vocab_size"] == rows[0]["vocab_size"] + 20
    assert all(row["reference"] == "src" for row in rows)


def _word_level_dir(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(path)
    return path


@pytest.mark.parametrize("case", ["missing", "empty", "family", "too-small", "alphabet", "utf8", "extend-zero"])
def test_cli_errors_exit_2_with_one_line_and_no_output(case, tiny_models, target_corpus, tmp_path, capsys):
    source, corpus, size, action = str(tiny_models["bert"]), str(target_corpus), "300", "train"
    if case == "missing":
        corpus = str(tmp_path / "nope.txt")
    elif case == "empty":
        (tmp_path / "empty.txt").write_text("\n  \n\n", encoding="utf-8")
        corpus = str(tmp_path / "empty.txt")
    elif case == "family":
        source = str(_word_level_dir(tmp_path / "wordlevel"))
    elif case == "too-small":
        size = "4"
    elif case == "alphabet":
        size = "12"
    elif case == "utf8":
        (tmp_path / "bad.txt").write_bytes(b"ndiza kuona\nmu\xff\xfeana\n")
        corpus = str(tmp_path / "bad.txt")
    out = tmp_path / "out"
    args = ["tokenizer", action, "--source", source, "--corpus", corpus, "--vocab-size", size, "--out", str(out)]
    if case == "extend-zero":
        args = ["tokenizer", "extend", "--source", source, "--corpus", corpus, "--new-tokens", "0", "--out", str(out)]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("langgraft: error: ") and "\n" not in err
    if case == "utf8":
        assert "bad.txt:2" in err
    assert not out.exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out")], "no temp dir left"


def test_cli_on_decode_error_skip(tiny_models, tmp_path):
    lines = "\n".join(target_sentences(100, seed=2)).encode() + b"\nmu\xff\xfeana\n"
    (tmp_path / "bad.txt").write_bytes(lines)
    assert main(["tokenizer", "train", "--source", str(tiny_models["bert"]), "--corpus", str(tmp_path / "bad.txt"),
                 "--vocab-size", "150", "--out", str(tmp_path / "out"), "--on-decode-error", "skip"]) == 0
    assert len(_auto(tmp_path / "out")) == 150


def test_one_family_detector_names_other_tokenizers_and_training_refuses_them():
    """A WordLevel tokenizer is family "other" (no boundary marker); training refuses it with one error line."""
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    family = detect_family(word_level)
    assert (family.name, family.model, family.marker) == ("other", "WordLevel", "plain")
    with pytest.raises(UserError, match="cannot train"):
        trainable_family(word_level)
    with pytest.raises(UserError, match="no fast"):
        backend_json(object())
