"""Does extending a byte-level BPE tokenizer change how the source language tokenizes? (issue 14)

An 8k Llama-3-style tokenizer (regex ``Split`` + ByteLevel, ``ignore_merges``) is trained on the
English Bible's train books (the demo split); ``langgraft tokenizer extend`` adds 4,000 Chichewa
pieces learned from the Chichewa train books, once plainly and once with ``--source-sample`` (the
first N English train verses). English lines whose ids change are counted on the whole sample,
on the first 3,000 train verses (the plain run's sample-sized reference) and on 3,000 held-out
English verses (test books, never seen by either step).

    nice -n 10 python benchmarks/extension_guarantee.py --out runs/extension
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lazy_transfer import LLAMA3_SPLIT, SPECIALS  # noqa: E402  (sibling benchmark script)


def split_text(out: Path) -> dict[str, Path]:
    from langgraft.corpora.bible import bible_verses, demo_split

    files = {name: out / f"{name}.txt" for name in ("eng-train", "eng-test", "nya-train")}
    if not all(path.is_file() for path in files.values()):
        lines: dict[str, list[str]] = {name: [] for name in files}
        for lang in ("eng", "nya"):
            for verse in bible_verses(lang):
                name = f"{lang}-{demo_split(verse.book_code)}"
                if name in lines:
                    lines[name].append(verse.text.replace("\n", " "))
        for name, path in files.items():
            path.write_text("\n".join(lines[name]) + "\n", encoding="utf-8")
    return files


def train_source(corpus: Path, out: Path, vocab_size: int) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(ignore_merges=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(corpus.read_text(encoding="utf-8").splitlines(), trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIALS), show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=SPECIALS[0], eos_token=SPECIALS[1])
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS[2:]})
    tokenizer.save_pretrained(out)


def changed_lines(source: Path, extended: Path, lines: list[str]) -> int:
    from transformers import AutoTokenizer

    old, new = AutoTokenizer.from_pretrained(source), AutoTokenizer.from_pretrained(extended)
    before = old(lines, add_special_tokens=False)["input_ids"]
    after = new(lines, add_special_tokens=False)["input_ids"]
    return sum(a != b for a, b in zip(before, after))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source-vocab", type=int, default=8000)
    parser.add_argument("--new-tokens", type=int, default=4000)
    parser.add_argument("--sample-lines", type=int, nargs="+", default=[3000, 20000])
    parser.add_argument("--held-out-lines", type=int, default=3000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files = split_text(args.out)
    source = args.out / "eng-8k"
    if not (source / "tokenizer.json").is_file():
        train_source(files["eng-train"], source, args.source_vocab)
    english_train = files["eng-train"].read_text(encoding="utf-8").splitlines()
    held_out = files["eng-test"].read_text(encoding="utf-8").splitlines()[:args.held_out_lines]
    results = {}
    for sample_lines in [0, *args.sample_lines]:
        name = f"sample-{sample_lines}" if sample_lines else "plain"
        extended = args.out / name
        command = [sys.executable, "-m", "langgraft", "tokenizer", "extend", "--source", str(source), "--corpus",
                   str(files["nya-train"]), "--new-tokens", str(args.new_tokens), "--out", str(extended),
                   "--overwrite"]  # a rerun replaces this script's own earlier outputs
        sample = english_train[:sample_lines]
        if sample_lines:
            (args.out / f"{name}.txt").write_text("\n".join(sample) + "\n", encoding="utf-8")
            command += ["--source-sample", str(args.out / f"{name}.txt")]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        info = json.loads((extended / "langgraft_extension.json").read_text())
        results[name] = {
            "seconds": round(time.perf_counter() - started, 1),
            "new_pieces": info["num_new_tokens"],
            "new_pieces_used_on_chichewa_sample": info["new_tokens_used_on_corpus_sample"],
            "rejected_pieces": info.get("source_sample", {}).get("rejected_pieces", 0),
            "sample_lines_changed": changed_lines(source, extended, sample) if sample else None,
            "sample_lines": len(sample),
            "first_3000_train_lines_changed": changed_lines(source, extended, english_train[:3000]),
            "held_out_lines_changed": changed_lines(source, extended, held_out),
            "held_out_lines": len(held_out),
        }
        print(name, json.dumps(results[name]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
