"""Vocabulary transfer on a Llama-3-8B-shaped checkpoint without loading the body (issue 14).

``prepare`` builds, under ``--root``:

- a byte-level BPE source tokenizer the Llama-3 way (regex ``Split`` + ByteLevel, ``ignore_merges``,
  256 special tokens after the learned pieces, a chat template) with as many pieces as the offline
  text gives (``--source-vocab``, at least 32k): the English and Chichewa Bibles of the installed
  packages, the vim documentation and Python sources of the virtualenv;
- ``src-32l``: a Llama-3-8B-shaped bf16 checkpoint (32 layers, hidden 4096, FFN 14336, 32 heads,
  8 KV heads, untied embeddings), body weights zero (norms one), embeddings and head random
  (seeded), rows padded to a multiple of 256 past the tokenizer, shards of at most ``--shard-gb``;
  ``src-2l``: its 2-layer twin with the same embeddings, written the same way;
- a Chichewa target tokenizer (``langgraft tokenizer train``, ``--target-vocab`` pieces) and each
  method's resources, built once so the measured runs only read them: word-level fastText for
  both Bibles and a dictionary induced from the aligned verses (wechsel, ofa), token-level
  fastText on the Chichewa Bible (focus), a token alignment table (transtok), and a 2-layer
  helper model that uses the target tokenizer (clp).

``run`` then measures, each as a fresh process under ``/usr/bin/time`` (wall, peak RSS), one at a
time: ``langgraft init --method fvt`` and ``--method wechsel`` (``--runs`` adds the other methods)
on both checkpoints, and the baseline a user would otherwise run (``AutoModelForCausalLM.from_pretrained`` +
``resize_token_embeddings`` with mean init + ``save_pretrained``, one process). It reports bytes
written (new bytes on disk; hard-linked shards are not new), verifies the 32-layer output (index
against the shard headers, sha256 of every shard against transfer_summary.json and, for carried
shards, against the source) with plain ``safetensors``/``hashlib``, and loads the 2-layer output in
stock transformers in a process that never imports langgraft. Outputs of the 32-layer runs are
deleted once verified (disk).

    nice -n 10 python benchmarks/lazy_transfer.py prepare --root runs/lazy-inputs
    nice -n 10 python benchmarks/lazy_transfer.py run --root runs/lazy-inputs --out runs/lazy
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocab_transfer import timed_process  # noqa: E402  (sibling benchmark script)

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                 "{{ m['content'] }}<|eot_id|>{% endfor %}")
HIDDEN, FFN, HEADS, KV_HEADS = 4096, 14336, 32, 8
PAD_ROWS_TO = 256
GB = 1 << 30


# ------------------------------------------------------------------------------------- prepare
def write_text(root: Path, python_mb: int) -> dict[str, Path]:
    """Bible text per language, aligned verses, and the mixed text the source tokenizer learns from."""
    from langgraft.corpora.bible import bible_parallel, bible_verses

    text = root / "text"
    text.mkdir(parents=True, exist_ok=True)
    files = {lang: text / f"{lang}.txt" for lang in ("eng", "nya")}
    for lang, path in files.items():
        if not path.is_file():
            path.write_text("".join(v.text.replace("\n", " ") + "\n" for v in bible_verses(lang)), encoding="utf-8")
    files["eng-aligned"], files["nya-aligned"] = text / "eng-aligned.txt", text / "nya-aligned.txt"
    if not files["eng-aligned"].is_file():
        pairs = list(bible_parallel("eng", "nya"))
        files["eng-aligned"].write_text("".join(s.replace("\n", " ") + "\n" for _, s, _ in pairs), encoding="utf-8")
        files["nya-aligned"].write_text("".join(t.replace("\n", " ") + "\n" for _, _, t in pairs), encoding="utf-8")
    files["other"] = text / "other.txt"
    if not files["other"].is_file():  # whatever else is installed here: vim's manual, Python sources
        budget = python_mb << 20
        with open(files["other"], "w", encoding="utf-8") as out:
            sources = sorted(Path("/usr/share/vim").rglob("*.txt")) + sorted(Path(sys.prefix).rglob("*.py"))
            for path in sources:
                try:
                    content = path.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                out.write(content)
                budget -= len(content)
                if budget <= 0:
                    break
    return files


def train_source_tokenizer(files: dict[str, Path], out: Path, pieces: int) -> int:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if (out / "tokenizer.json").is_file():
        return len(PreTrainedTokenizerFast.from_pretrained(out))
    backend = Tokenizer(models.BPE(ignore_merges=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()

    def lines():
        for name in ("eng", "nya", "other"):
            with open(files[name], encoding="utf-8") as handle:
                yield from handle

    backend.train_from_iterator(lines(), trainers.BpeTrainer(
        vocab_size=pieces, min_frequency=2, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(256 - len(SPECIALS))]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=SPECIALS[0], eos_token=SPECIALS[1])
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS[2:] + reserved})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    return len(tokenizer)


def tensor_specs(layers: int, rows: int) -> list[tuple[str, tuple[int, ...]]]:
    """Llama's tensors in the order transformers saves them."""
    specs = [("model.embed_tokens.weight", (rows, HIDDEN))]
    head_dim = HIDDEN // HEADS
    for i in range(layers):
        p = f"model.layers.{i}."
        specs += [(p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
                  (p + "self_attn.k_proj.weight", (KV_HEADS * head_dim, HIDDEN)),
                  (p + "self_attn.v_proj.weight", (KV_HEADS * head_dim, HIDDEN)),
                  (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
                  (p + "mlp.gate_proj.weight", (FFN, HIDDEN)), (p + "mlp.up_proj.weight", (FFN, HIDDEN)),
                  (p + "mlp.down_proj.weight", (HIDDEN, FFN)),
                  (p + "input_layernorm.weight", (HIDDEN,)), (p + "post_attention_layernorm.weight", (HIDDEN,))]
    return specs + [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (rows, HIDDEN))]


def write_checkpoint(out: Path, layers: int, tokenizer_dir: Path, embeddings: dict, shard_bytes: int) -> None:
    """Shards packed greedily up to ``shard_bytes`` (as save_pretrained does), written by the streaming writer."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig

    from langgraft.vocab.checkpoint import write_safetensors

    if (out / "model.safetensors.index.json").is_file():
        return
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    rows = embeddings["model.embed_tokens.weight"].shape[0]
    shards, current, size = [], [], 0
    for name, shape in tensor_specs(layers, rows):
        nbytes = 2 * int(torch.Size(shape).numel())
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for number, shard in enumerate(shards, start=1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        tensors = []
        for name, shape in shard:
            if name in embeddings:
                tensor = embeddings[name]
            elif name.endswith("norm.weight"):
                tensor = torch.ones(shape, dtype=torch.bfloat16)
            else:
                tensor = torch.zeros(shape, dtype=torch.bfloat16)
            tensors.append((name, tensor))
            weight_map[name] = file
            total += tensor.numel() * 2
        write_safetensors(partial / file, tensors, {"format": "pt"})
        del tensors
    (partial / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=rows, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=layers,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=8192,
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         architectures=["LlamaForCausalLM"], dtype="bfloat16")
    config.save_pretrained(partial)
    GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, do_sample=True,
                     temperature=0.6, top_p=0.9).save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out)


def langgraft_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "langgraft", *args]


def prepare(args: argparse.Namespace) -> None:
    import torch

    root = args.root
    files = write_text(root, args.python_mb)
    tokenizer_dir = root / "tok-src"
    started = time.perf_counter()
    tokens = train_source_tokenizer(files, tokenizer_dir, args.source_vocab - 256)
    print(f"source tokenizer: {tokens} tokens ({time.perf_counter() - started:.0f} s)", flush=True)
    if tokens < 32_000:
        raise SystemExit(f"only {tokens} tokens: give more text (--python-mb)")
    rows = -(-tokens // PAD_ROWS_TO) * PAD_ROWS_TO
    generator = torch.Generator().manual_seed(0)
    embeddings = {name: (0.02 * torch.randn(rows, HIDDEN, generator=generator)).to(torch.bfloat16)
                  for name in ("model.embed_tokens.weight", "lm_head.weight")}
    for layers in (2, 32):
        started = time.perf_counter()
        write_checkpoint(root / f"src-{layers}l", layers, tokenizer_dir, embeddings, int(args.shard_gb * GB))
        print(f"src-{layers}l written ({time.perf_counter() - started:.0f} s)", flush=True)
    del embeddings
    steps = [
        (root / "tok-nya" / "tokenizer.json",
         langgraft_command("tokenizer", "train", "--source", str(root / "src-2l"), "--corpus", str(files["nya"]),
                           "--vocab-size", str(args.target_vocab), "--out", str(root / "tok-nya"))),
        (root / "ft" / "eng.bin",
         langgraft_command("resources", "fasttext", "--corpus", str(files["eng"]), "--out", str(root / "ft" / "eng.bin"))),
        (root / "ft" / "nya.bin",
         langgraft_command("resources", "fasttext", "--corpus", str(files["nya"]), "--out", str(root / "ft" / "nya.bin"))),
        (root / "dict.tsv",
         langgraft_command("resources", "dictionary", "--parallel", str(files["eng-aligned"]),
                           str(files["nya-aligned"]), "--out", str(root / "dict.tsv"))),
        (root / "ft" / "nya-tokens.bin",
         langgraft_command("resources", "fasttext", "--tokenizer", str(root / "tok-nya"), "--corpus",
                           str(files["nya"]), "--out", str(root / "ft" / "nya-tokens.bin"), "--model", "cbow",
                           "--epochs", "3", "--min-count", "10")),
        (root / "align.tsv",
         langgraft_command("resources", "align", "--parallel", str(files["eng-aligned"]), str(files["nya-aligned"]),
                           "--source-tokenizer", str(root / "tok-src"), "--target-tokenizer", str(root / "tok-nya"),
                           "--out", str(root / "align.tsv"))),
    ]
    for done, command in steps:
        if not done.is_file():
            started = time.perf_counter()
            subprocess.run(command, check=True)
            print(f"{done.relative_to(root)} ({time.perf_counter() - started:.0f} s)", flush=True)
    write_helper(root / "helper-nya", root / "tok-nya")


def write_helper(out: Path, tokenizer_dir: Path) -> None:
    """clp's helper: a small random Llama that uses the target tokenizer (its embeddings are what clp reads)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (out / "config.json").is_file():
        return
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


# ------------------------------------------------------------------------------------- run
BASELINE = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
source, tokenizer_dir, out, shard = sys.argv[1:5]
model = AutoModelForCausalLM.from_pretrained(source)
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
model.resize_token_embeddings(len(tokenizer))  # mean_resizing=True: new rows from the old rows' mean and covariance
model.save_pretrained(out, max_shard_size=shard)
tokenizer.save_pretrained(out)
assert "langgraft" not in sys.modules
"""

LOAD_STOCK = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model, info = AutoModelForCausalLM.from_pretrained(sys.argv[1], output_loading_info=True)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
batch = tokenizer(["Mulungu adalenga kumwamba ndi dziko lapansi."], return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
assert "langgraft" not in sys.modules
print(json.dumps({"dtype": str(model.dtype), "rows": model.get_input_embeddings().weight.shape[0],
                  "vocab_size": model.config.vocab_size, "tokens": len(tokenizer), "logits": list(logits.shape),
                  "finite": bool(torch.isfinite(logits.float()).all()),
                  "chat_template": tokenizer.chat_template is not None}))
"""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(16 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def new_bytes(out: Path, source: Path) -> tuple[int, int]:
    """(bytes newly written, bytes shared with the source by hard links) under ``out``."""
    source_inodes = {p.stat().st_ino for p in source.iterdir()}
    written = shared = 0
    for path in out.rglob("*"):
        if path.is_file():
            stat = path.stat()
            if stat.st_ino in source_inodes:
                shared += stat.st_size
            else:
                written += stat.st_size
    return written, shared


def verify(out: Path, source: Path) -> dict:
    """Index against shard headers and every shard's sha256, with plain safetensors and hashlib."""
    from safetensors import safe_open

    itemsize = {"BF16": 2, "F16": 2, "F32": 4}
    index = json.loads((out / "model.safetensors.index.json").read_text())
    summary = json.loads((out / "transfer_summary.json").read_text())
    source_index = json.loads((source / "model.safetensors.index.json").read_text())
    total, checked = 0, 0
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(out / shard), "pt") as handle:
            keys = set(handle.keys())
            for name in keys:
                piece = handle.get_slice(name)
                count = 1
                for dim in piece.get_shape():
                    count *= dim
                total += count * itemsize[piece.get_dtype()]
        assert {n for n, s in index["weight_map"].items() if s == shard} == keys, shard
        recorded = summary["output_files"][shard]
        digest = sha256(out / shard)
        assert digest == recorded["sha256"], shard
        if recorded["written"] != "rewritten":
            assert digest == sha256(source / shard), shard
        checked += 1
    assert total == index["metadata"]["total_size"]
    assert index["weight_map"] == source_index["weight_map"]  # every tensor in the shard the source has it in
    with safe_open(str(out / index["weight_map"]["lm_head.weight"]), "pt") as handle:
        head = handle.get_slice("lm_head.weight")
        assert head.get_dtype() == "BF16"
        shape = head.get_shape()
    return {"shards_checked": checked, "total_size": total, "head_shape": shape,
            "rewritten": sorted(s for s, r in summary["output_files"].items() if r["written"] == "rewritten"),
            "carried": sorted(s for s, r in summary["output_files"].items() if r["written"] != "rewritten")}


def changed_tensor_bytes(source: Path) -> int:
    """Bytes of the tensors vocabulary transfer changes in ``source`` (input embeddings + untied head)."""
    from safetensors import safe_open

    index = json.loads((source / "model.safetensors.index.json").read_text())
    total = 0
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        with safe_open(str(source / index["weight_map"][name]), "pt") as handle:
            rows, width = handle.get_slice(name).get_shape()
            total += rows * width * 2
    return total


def run(args: argparse.Namespace) -> None:
    root, out = args.root, args.out
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, " \
                         f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GB:.0f} GiB, no GPU"
    static = ["--source-embeddings", str(root / "ft" / "eng.bin"), "--target-embeddings", str(root / "ft" / "nya.bin"),
              "--dictionary", str(root / "dict.tsv")]
    method_inputs = {"wechsel": static, "ofa": static,
                     "focus": ["--option", f"token_embeddings={root / 'ft' / 'nya-tokens.bin'}"],
                     "transtok": ["--option", f"alignment_table={root / 'align.tsv'}"],
                     "clp": ["--helper", str(root / "helper-nya")]}
    for layers in (2, 32):
        source = root / f"src-{layers}l"
        results.setdefault("changed_tensor_bytes", changed_tensor_bytes(source))
        results.setdefault(f"source_{layers}l_bytes", sum(p.stat().st_size for p in source.iterdir()))
        for run_name in args.runs:
            key = f"{run_name}-{layers}l"
            if key in results:
                continue
            target = root / "runs" / key
            shutil.rmtree(target, ignore_errors=True)
            if run_name == "baseline":
                available = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemAvailable")))
                needed = sum(p.stat().st_size for p in source.glob("*.safetensors")) * 1.25
                if available * 1024 < needed:
                    results[key] = {"skipped": f"{available / (1 << 20):.1f} GiB available, about "
                                               f"{needed / GB:.1f} GiB needed"}
                    continue
                command = ["nice", "-n", "10", sys.executable, "-c", BASELINE, str(source), str(root / "tok-nya"),
                           str(target), f"{args.shard_gb:g}GB"]
            else:
                command = ["nice", "-n", "10", *langgraft_command(
                    "init", "--source", str(source), "--tokenizer", str(root / "tok-nya"), "--method", run_name,
                    "--out", str(target), *method_inputs.get(run_name, []))]
            measured = timed_process(command, out / f"{key}.log")
            written, shared = new_bytes(target, source)
            record = {**measured, "bytes_written": written, "bytes_hard_linked": shared,
                      "command": " ".join(command[3:] if command[0] == "nice" else command)}
            if run_name != "baseline":
                summary = json.loads((target / "transfer_summary.json").read_text())
                record["embedding_rows"] = summary["embedding_rows"]
                record["whole_model_loaded"] = summary["whole_model_loaded"]
                record["coverage"] = summary["coverage"]
                if layers == 32:
                    record["verified"] = verify(target, source)
                else:
                    loaded = subprocess.run([sys.executable, "-c", LOAD_STOCK, str(target)], capture_output=True,
                                            text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
                    if loaded.returncode != 0:
                        raise RuntimeError(loaded.stderr[-3000:])
                    record["stock_load"] = json.loads(loaded.stdout.strip().splitlines()[-1])
            if layers == 32:
                shutil.rmtree(target)
            results[key] = record
            results_path.write_text(json.dumps(results, indent=2))
            print(key, json.dumps(record), flush=True)
    print(markdown(results))


def markdown(results: dict) -> str:
    changed = results["changed_tensor_bytes"]
    lines = [f"changed tensors (input embeddings + head, bf16): {changed / GB:.2f} GiB; fvt goal: peak RSS <= "
             f"{(1.5 * changed + GB) / GB:.2f} GiB", "",
             "| run | layers | source on disk GiB | wall s | peak RSS GiB | RSS vs 2 layers | new bytes written GiB "
             "| hard-linked GiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    runs = sorted({key.rsplit("-", 1)[0] for key in results if key.endswith(("-2l", "-32l"))},
                  key=lambda name: (name == "baseline", name not in ("fvt", "wechsel"), name))
    for run_name in runs:
        for layers in (2, 32):
            record = results.get(f"{run_name}-{layers}l")
            if record is None:
                continue
            source = results[f"source_{layers}l_bytes"] / GB
            if "skipped" in record:
                lines.append(f"| {run_name} | {layers} | {source:.1f} | not run: {record['skipped']} | | | | |")
                continue
            two = results.get(f"{run_name}-2l", {})
            ratio = f"{record['peak_rss_mb'] / two['peak_rss_mb'] - 1:+.1%}" if layers == 32 and "peak_rss_mb" in two else ""
            lines.append(f"| {run_name} | {layers} | {source:.1f} | {record['wall_s']:.0f} | "
                         f"{record['peak_rss_mb'] / 1024:.2f} | {ratio} | {record['bytes_written'] / GB:.2f} | "
                         f"{record['bytes_hard_linked'] / GB:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare")
    prep.add_argument("--root", type=Path, required=True)
    prep.add_argument("--source-vocab", type=int, default=128_256, help="source tokens incl. 256 specials, if the text allows")
    prep.add_argument("--target-vocab", type=int, default=32_000)
    prep.add_argument("--python-mb", type=int, default=96, help="MB of other installed text for the source tokenizer")
    prep.add_argument("--shard-gb", type=float, default=2.0)
    measure = commands.add_parser("run")
    measure.add_argument("--root", type=Path, required=True)
    measure.add_argument("--out", type=Path, required=True)
    measure.add_argument("--runs", nargs="+", default=["fvt", "wechsel", "baseline"])
    measure.add_argument("--shard-gb", type=float, default=2.0)
    table = commands.add_parser("table")
    table.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args)
    elif args.command == "run":
        run(args)
    else:
        print(markdown(json.loads((args.out / "results.json").read_text())))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
