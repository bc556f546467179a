"""Tiny, deterministic models and tokenizers built in-process (seconds), one per family.

Families covered: BERT (WordPiece, MLM), GPT-2 (byte-level BPE, CLM), XLM-R (SentencePiece
Unigram, MLM) and Llama (SentencePiece BPE with byte fallback, CLM). Text is synthetic: an
English-like "source" language and an invented agglutinative "target" language.
"""
from __future__ import annotations

import random
from pathlib import Path

SOURCE_WORDS = (
    "the of and to in he that for his with they was not is all be shall said unto lord god "
    "people king land house son day man came city word father made before come went hand "
    "earth heaven water light name men life children spirit law sea voice fire bread"
).split()
TARGET_STEMS = "nd ku mu ba ka li ta pa wa ma chi zi yi lo ne so gwe mbo nthu dza".split()
TARGET_AFFIXES = "a o e i u ana eni ulu ira ako idwa".split()


def source_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(SOURCE_WORDS) for _ in range(rng.randint(5, 14))]
        out.append(" ".join(words).capitalize() + ".")
    return out


def target_sentences(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(4, 11)):
            stems = "".join(rng.choice(TARGET_STEMS) for _ in range(rng.randint(1, 3)))
            words.append(stems + rng.choice(TARGET_AFFIXES))
        out.append(" ".join(words).capitalize() + ".")
    return out


def write_labelled_tsv(path: Path, n: int, seed: int = 3, labels: tuple[str, str] = ("holy", "plain")) -> Path:
    """A ``text<TAB>label`` file of source sentences: the first label where a sentence says "lord"."""
    rows = "".join(f"{s}\t{labels[0] if 'lord' in s.lower() else labels[1]}\n" for s in source_sentences(n, seed))
    path.write_text("text\tlabel\n" + rows, encoding="utf-8")
    return path


def _wrap_and_save(tokenizer_object, cls, out: Path, **special) -> None:
    tok = cls(tokenizer_object=tokenizer_object, **special)
    tok.save_pretrained(out)


def build_bert_tokenizer(out: Path, texts: list[str], vocab_size: int = 300) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    tk.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tk.token_to_id("[CLS]")), ("[SEP]", tk.token_to_id("[SEP]"))],
    )
    _wrap_and_save(tk, BertTokenizer, out, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                   sep_token="[SEP]", mask_token="[MASK]", do_lower_case=True)


def build_gpt2_tokenizer(out: Path, texts: list[str], vocab_size: int = 400) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Tokenizer

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    _wrap_and_save(tk, GPT2Tokenizer, out, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                   unk_token="<|endoftext|>")


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_llama3_tokenizer(out: Path, texts: list[str], vocab_size: int = 400) -> Path:
    """Byte-level BPE the Llama-3 way: a regex ``Split`` before a ByteLevel step without its own regex,
    ``ignore_merges`` (a whole pre-token in the vocabulary is emitted as is)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(ignore_merges=True))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    _wrap_and_save(tk, PreTrainedTokenizerFast, out, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")
    return out


def build_xlmr_tokenizer(out: Path, texts: list[str], vocab_size: int = 300) -> None:
    from tokenizers import SentencePieceUnigramTokenizer, processors
    from transformers import XLMRobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    tk = sp._tokenizer
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tk.token_to_id("<s>")), ("</s>", tk.token_to_id("</s>"))],
    )
    _wrap_and_save(tk, XLMRobertaTokenizer, out, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def build_llama_tokenizer(out: Path, texts: list[str], vocab_size: int = 400) -> None:
    """A real SentencePiece BPE model with byte fallback, wrapped via from_pretrained on its folder."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    out.mkdir(parents=True, exist_ok=True)
    text_file = out / "train.txt"
    text_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(out / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, minloglevel=2, num_threads=1, seed_sentencepiece_size=1000000,
    )
    text_file.unlink()
    (out / "tokenizer.vocab").unlink()
    tok = LlamaTokenizer.from_pretrained(out)
    tok.save_pretrained(out)


def build_model(family: str, tokenizer_dir: Path, out: Path, seed: int = 0) -> None:
    """Random tiny model whose vocabulary matches the tokenizer in ``tokenizer_dir``."""
    import torch
    from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, BertConfig,
                              GPT2Config, LlamaConfig, XLMRobertaConfig)

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if family == "bert":
        config = BertConfig(vocab_size=len(tok), max_position_embeddings=128, pad_token_id=tok.pad_token_id, **size)
        model = AutoModelForMaskedLM.from_config(config)
    elif family == "xlmr":
        config = XLMRobertaConfig(vocab_size=len(tok), max_position_embeddings=130,
                                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, **size)
        model = AutoModelForMaskedLM.from_config(config)
    elif family == "gpt2":
        config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = AutoModelForCausalLM.from_config(config)
    elif family == "llama":
        config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=128, tie_word_embeddings=False,
                             num_key_value_heads=2, bos_token_id=tok.bos_token_id,
                             eos_token_id=tok.eos_token_id, **size)
        model = AutoModelForCausalLM.from_config(config)
    else:
        raise ValueError(family)
    model.save_pretrained(out)
    tok.save_pretrained(out)


TOKENIZER_BUILDERS = {
    "bert": build_bert_tokenizer,
    "gpt2": build_gpt2_tokenizer,
    "xlmr": build_xlmr_tokenizer,
    "llama": build_llama_tokenizer,
}


def build_source_model(family: str, out: Path) -> Path:
    """Tokenizer trained on the source language + a random tiny model, saved in ``out``."""
    TOKENIZER_BUILDERS[family](out, source_sentences(400, seed=0))
    build_model(family, out, out)
    return out
