"""Continued pretraining at real scale on this machine: peak memory and tokens/s of ``pretrain()`` on a ~1B Llama.

Each configuration runs ``langgraft.adapt.pretrain.run.pretrain(PretrainOptions(...))`` (the real entry
point: loading, precision, new-rows-only, chunked loss, Trainer) in a fresh process, one at a
time (optionally under ``flock``), at sequence length 512 and batch 1. The model is built here
with seeded random weights and stored in bf16 like the published checkpoints:

- ``base``: Llama-shaped, hidden 2,048, 16 layers, 32 heads / 8 KV heads, FFN 5,632, vocabulary
  128,256, embeddings tied to the head (as Llama-3.2-1B): 0.985B parameters;
- ``extended``: the same model with 32,768 rows appended (161,024 rows), and a
  ``langgraft_extension.json`` recording ``original_vocab_size`` 128,256 as ``langgraft tokenizer
  extend`` writes it (what ``--train-new-rows-only`` reads). The new tokens are placeholders that
  the English text never produces: memory and speed do not depend on which ids the data hits.

The tokenizer is a 32k byte-level BPE trained on the English Bible (the training text), its
vocabulary padded with never-produced placeholder tokens to the embedding's row count.

What a :class:`Probe` callback measures in each run (Linux ``/proc/self``): the resident-set high
water mark is reset (``clear_refs`` 5) at each step's start and read at the end of the
forward/backward pass and after the optimizer step; the RSS at the end of the model's forward pass
minus the RSS at the step's start is the **activation memory** (what the forward pass keeps for
backward; no gradients exist yet); the optimizer's state bytes are summed from the optimizer's own
tensors. The process peak is the maximum of all high-water marks (so it includes loading and the
final save). Children run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors leave the
resident set at once (glibc otherwise keeps freed mid-sized blocks, hiding a step's own peak).
Trainer's checkpoint at the last step is skipped (a full 1B run would write 12 GB of weights and
optimizer state); the final ``save_pretrained`` still runs. Tokens/s covers steps 2..N (wall).

    python benchmarks/training_scale.py build --dir runs/scale
    python benchmarks/training_scale.py all --dir runs/scale [--only NAME ...]

``all`` prints a Markdown table and writes ``results.json`` into ``--dir``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

SEQ = 512
BASE_ROWS, NEW_ROWS, BPE_SIZE = 128_256, 32_768, 32_000
SHAPE = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
             intermediate_size=5632, max_position_embeddings=8192, tie_word_embeddings=True, rope_theta=500_000.0)
CHUNK = 128  # scored rows per loss chunk; the default (1,024) is one chunk at 511 scored rows

# name: (checkpoint, stage, options). stage "embeddings": embedding_steps = max_steps (body frozen).
CONFIGS: dict[str, tuple[str, str, dict]] = {
    "fp32 full": ("base", "full", {"loss_chunk_tokens": CHUNK}),
    "fp32 full + grad. ckpt": ("base", "full", {"loss_chunk_tokens": CHUNK, "gradient_checkpointing": True}),
    "fp32 full, full logits": ("base", "full", {"loss_chunk_tokens": 0}),
    "fp32 embeddings": ("base", "embeddings", {"loss_chunk_tokens": CHUNK}),
    "fp32 embeddings, full logits": ("base", "embeddings", {"loss_chunk_tokens": 0}),
    "fp32 embeddings (extended)": ("extended", "embeddings", {"loss_chunk_tokens": CHUNK}),
    "fp32 new rows only (extended)": ("extended", "embeddings", {"loss_chunk_tokens": CHUNK,
                                                                 "train_new_rows_only": True}),
    "fp32 new rows only, full logits (extended)": ("extended", "embeddings", {"loss_chunk_tokens": 0,
                                                                             "train_new_rows_only": True}),
    "bf16 mixed embeddings": ("base", "embeddings", {"loss_chunk_tokens": CHUNK, "bf16": True}),
}


# ----------------------------------------------------------------------------- build

def _tokenizer(corpus: Path, rows: int):
    """32k byte-level BPE trained on ``corpus``, padded with placeholder tokens to ``rows`` entries."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.train([str(corpus)], trainers.BpeTrainer(vocab_size=BPE_SIZE, special_tokens=["<|end_of_text|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    spec = json.loads(tk.to_str())
    vocab = spec["model"]["vocab"]
    for index in range(len(vocab), rows):  # never produced: no merge leads to them
        vocab[f"<|placeholder_{index}|>"] = index
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                   bos_token="<|end_of_text|>", eos_token="<|end_of_text|>")


def build(directory: Path, smoke: bool = False) -> None:
    """Corpus, ``base`` and ``extended`` checkpoints in ``directory`` (``smoke``: a tiny shape to test this script)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from langgraft.corpora.bible import bible_verses
    from langgraft.vocab.tokenizers import EXTENSION_FILE

    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(v.text for v in islice(bible_verses("eng"), 8000)) + "\n", encoding="utf-8")
    base_rows, new_rows = (BPE_SIZE + 256, 1024) if smoke else (BASE_ROWS, NEW_ROWS)
    shape = {**SHAPE, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2} if smoke else SHAPE
    base_tok = _tokenizer(corpus, base_rows)
    config = LlamaConfig(vocab_size=base_rows, bos_token_id=base_tok.bos_token_id, eos_token_id=base_tok.eos_token_id,
                         **shape)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}", flush=True)
    model.save_pretrained(directory / "base")
    base_tok.save_pretrained(directory / "base")
    torch.manual_seed(1)  # the appended rows: transformers' own resize, new rows drawn by the model's init
    model.resize_token_embeddings(base_rows + new_rows, mean_resizing=False)
    model.save_pretrained(directory / "extended")
    _tokenizer(corpus, base_rows + new_rows).save_pretrained(directory / "extended")
    info = {"source": str(directory / "base"), "original_vocab_size": base_rows,
            "new_vocab_size": base_rows + new_rows, "num_new_tokens": new_rows,
            "new_token_ids": [base_rows, base_rows + new_rows],
            "note": "benchmark placeholder tokens (benchmarks/training_scale.py)"}
    (directory / "extended" / EXTENSION_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")


# ----------------------------------------------------------------------------- one configuration

def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, bytes."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def _probe_class():
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """Per-step memory (see the module docstring), optimizer state bytes, step times."""

        def __init__(self) -> None:
            self.peak, self.steps, self.current = 0, [], {}
            self.trainable = self.trainable_bytes = 0

        def reset(self) -> int:
            """High-water mark since the last reset; then reset it to the current RSS."""
            hwm = _status()["VmHWM"]
            self.peak = max(self.peak, hwm)
            Path("/proc/self/clear_refs").write_text("5")
            return hwm

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            trainable = [p for p in model.parameters() if p.requires_grad]
            self.trainable = sum(p.numel() for p in trainable)
            self.trainable_bytes = sum(p.numel() * p.element_size() for p in trainable)
            model.register_forward_hook(lambda module, inputs, output: self.current.__setitem__(
                "forward_end_rss", _status()["VmRSS"]))

        def on_step_begin(self, args, state, control, **kwargs):
            self.reset()
            self.current = {"start_rss": _status()["VmRSS"], "start": time.perf_counter()}

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.current["forward_backward_hwm"] = self.reset()

        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            self.current["optimizer_hwm"] = self.reset()
            self.current["end"] = time.perf_counter()
            inner = getattr(optimizer, "optimizer", optimizer)
            self.current["optimizer_state_bytes"] = sum(
                t.numel() * t.element_size() for s in inner.state.values() for t in s.values() if hasattr(t, "numel"))
            self.steps.append(self.current)
            if state.global_step >= state.max_steps:
                control.should_save = False  # no 12 GB Trainer checkpoint; the final save_pretrained still runs

    return Probe


def run_one(directory: Path, name: str, steps: int, result_file: Path) -> None:
    import torch

    from langgraft.adapt.pretrain.run import PretrainOptions, pretrain

    checkpoint, stage, options = CONFIGS[name]
    out = directory / "runs" / name.replace(" ", "_").replace(",", "").replace("+", "").replace(".", "")
    shutil.rmtree(out, ignore_errors=True)
    probe = _probe_class()()
    load = os.getloadavg()
    began = time.perf_counter()
    config = PretrainOptions(model=str(directory / checkpoint), corpus=[str(directory / "corpus.txt")], out=str(out),
                            max_steps=steps, embedding_steps=steps if stage == "embeddings" else 0,
                            per_device_train_batch_size=1, max_seq_length=SEQ, learning_rate=1e-5,
                            save_steps=10 * steps, logging_steps=1, seed=0, use_cpu=True, report_to=["none"],
                            **options)
    pretrain(config, callbacks=[probe])
    total = time.perf_counter() - began
    probe.reset()
    shutil.rmtree(out, ignore_errors=True)
    timed = probe.steps[1:]
    wall = timed[-1]["end"] - probe.steps[0]["end"] if timed else float("nan")
    result = {
        "name": name, "checkpoint": checkpoint, "stage": stage, "options": options, "steps": steps,
        "tokens_per_s": len(timed) * SEQ / wall if timed else None,
        "seconds_per_step": [round(s["end"] - s["start"], 1) for s in probe.steps],
        "process_peak_rss": probe.peak, "trainable_parameters": probe.trainable,
        "trainable_bytes": probe.trainable_bytes,
        # steps 2..N (step 1 also allocates the optimizer state); the largest of them
        "step_start_rss": max(s["start_rss"] for s in timed or probe.steps),
        "activation_memory": max(s["forward_end_rss"] - s["start_rss"] for s in timed or probe.steps),
        "forward_backward_over_start": max(s["forward_backward_hwm"] - s["start_rss"] for s in timed or probe.steps),
        "forward_backward_hwm": max(s["forward_backward_hwm"] for s in probe.steps),
        "optimizer_hwm": max(s["optimizer_hwm"] for s in probe.steps),
        "optimizer_state_bytes": probe.steps[-1]["optimizer_state_bytes"],
        "total_seconds": round(total, 1), "loadavg_before": load, "loadavg_after": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
    }
    result_file.write_text(json.dumps(result, indent=2), encoding="utf-8")


# ----------------------------------------------------------------------------- all, table

def _gib(value: float) -> str:
    return f"{value / 2**30:.2f}"


def table(results: list[dict]) -> str:
    lines = ["| configuration | trainable params | tokens/s | peak RSS (GiB) | RSS at step start | activation memory "
             "| fwd+bwd peak over step start | optimizer state | s/step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        speed = f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] else "(1 step only)"
        lines.append(f"| {r['name']} | {r['trainable_parameters'] / 1e6:,.1f}M | {speed} "
                     f"| {_gib(r['process_peak_rss'])} | {_gib(r['step_start_rss'])} | {_gib(r['activation_memory'])} "
                     f"| {_gib(r['forward_backward_over_start'])} | {_gib(r['optimizer_state_bytes'])} "
                     f"| {' / '.join(str(s) for s in r['seconds_per_step'])} |")
    return "\n".join(lines)


def run_all(directory: Path, names: list[str], steps: int, bf16_steps: int, lock: str | None) -> None:
    results_file = directory / "results.json"
    results = {r["name"]: r for r in json.loads(results_file.read_text())} if results_file.exists() else {}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    for name in names:
        one_file = directory / "one.json"
        one_file.unlink(missing_ok=True)
        command = [sys.executable, __file__, "one", "--dir", str(directory), "--name", name,
                   "--steps", str(bf16_steps if name.startswith("bf16") else steps), "--result", str(one_file)]
        print(f"== {name} ({time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True)
        code = subprocess.run(["flock", lock, *command] if lock else command, env=env).returncode
        if code != 0:  # e.g. killed for memory: recorded, the others still run
            print(f"{name}: exit status {code}", flush=True)
            continue
        results[name] = json.loads(one_file.read_text())
        results_file.write_text(json.dumps(list(results.values()), indent=2), encoding="utf-8")
        print(json.dumps(results[name]), flush=True)
    ordered = [results[n] for n in CONFIGS if n in results]
    print(f"\n{platform.platform()}, {os.cpu_count()} CPUs\n\n{table(ordered)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["build", "one", "all", "table"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--name", choices=list(CONFIGS))
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="configurations to run (default: all)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--bf16-steps", type=int, default=2, help="bf16 is emulated on CPUs without AVX512-BF16/AMX")
    parser.add_argument("--result", type=Path)
    parser.add_argument("--lock", help="run each configuration under `flock LOCK`")
    parser.add_argument("--smoke", action="store_true", help="build: a tiny model of the same kind (tests the script)")
    args = parser.parse_args()
    if args.action == "build":
        build(args.dir, args.smoke)
    elif args.action == "one":
        run_one(args.dir, args.name, args.steps, args.result)
    elif args.action == "all":
        run_all(args.dir, args.only or list(CONFIGS), args.steps, args.bf16_steps, args.lock)
    else:
        print(table([r for r in json.loads((args.dir / "results.json").read_text())]))


if __name__ == "__main__":
    main()
