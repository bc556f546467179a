"""Tokens/s of ``langgraft pretrain`` vs a plain HF Trainer script: same model, data, batch, steps.

The plain script is what the transformers examples do (run_mlm.py / run_clm.py): tokenize and
group texts with ``datasets.map`` (before the clock starts), ``DataCollatorForLanguageModeling``,
the model's own loss over the full vocabulary projection. langgraft streams and packs on the fly
(its tokenization time is inside the measured time) and computes the LM head only at the scored
positions. The clock (:class:`StepClock`) covers steps 2..N of each run, wall and CPU time.

MLM: MiniLM-L6 (the installed ``minilm``) with a BERT MLM head; CLM: a 6-layer, 384-wide GPT-2
with a 16k byte-level BPE trained on the same text. Text: the English Bible (BSB).

    nice -n 10 python benchmarks/pretrain_throughput.py --steps 12 --repeats 2 --out runs/throughput

Prints a Markdown table and writes ``throughput.json`` in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from itertools import islice
from pathlib import Path

import torch
from transformers import TrainerCallback

SEQ_LEN = 128


class StepClock(TrainerCallback):
    """Wall and process-CPU seconds from the end of step 1 to the end of the last step.

    That covers steps 2..N whole (data loading, forward, backward, optimizer) but neither the
    first, warm-up step nor the final checkpoint. CPU seconds are the steadier figure on a shared
    machine (other jobs stretch the wall clock, not the work done).
    """

    def __init__(self) -> None:
        self.start = self.end = (0.0, 0.0)
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs) -> None:
        now = (time.perf_counter(), time.process_time())
        if state.global_step == 1:
            self.start = now
        self.end, self.steps = now, state.global_step - 1

    def result(self, batch: int) -> dict:
        tokens = self.steps * batch * SEQ_LEN
        wall, cpu = self.end[0] - self.start[0], self.end[1] - self.start[1]
        return {"wall_s": wall, "cpu_s": cpu, "tokens_per_s": tokens / wall, "tokens_per_cpu_s": tokens / cpu}


def write_corpus(path: Path, verses: int) -> Path:
    from langgraft.corpora.bible import bible_verses

    path.write_text("\n".join(v.text for v in islice(bible_verses("eng"), verses)) + "\n", encoding="utf-8")
    return path


def mlm_model(out: Path) -> Path:
    from transformers import AutoTokenizer, BertForMaskedLM

    from langgraft.models import resolve_model_path

    source = resolve_model_path("minilm")
    BertForMaskedLM.from_pretrained(source).save_pretrained(out)  # head initialised: fine for speed
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def clm_model(out: Path, corpus: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.train([str(corpus)], trainers.BpeTrainer(vocab_size=16000, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = GPT2Tokenizer(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                              unk_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=384, n_layer=6, n_head=6,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def plain_trainer(model_dir: Path, corpus: Path, objective: str, steps: int, batch: int, out: Path) -> dict:
    """The transformers examples' recipe, unchanged."""
    import datasets
    from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer,
                              DataCollatorForLanguageModeling, Trainer, TrainingArguments)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    model = auto.from_pretrained(model_dir)
    raw = datasets.load_dataset("text", data_files=str(corpus), split="train")
    tokenized = raw.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])

    def group_texts(examples: dict) -> dict:
        concatenated = {k: sum(examples[k], []) for k in examples}
        total = len(concatenated["input_ids"]) // SEQ_LEN * SEQ_LEN
        return {k: [v[i:i + SEQ_LEN] for i in range(0, total, SEQ_LEN)] for k, v in concatenated.items()}

    grouped = tokenized.map(group_texts, batched=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=objective == "mlm", mlm_probability=0.15)
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch,
                             learning_rate=5e-5, save_strategy="steps", save_steps=steps, report_to=[],
                             logging_steps=steps,
                             use_cpu=True, dataloader_pin_memory=False, disable_tqdm=True, seed=0)
    clock = StepClock()
    trainer = Trainer(model=model, args=args, train_dataset=grouped, data_collator=collator, callbacks=[clock])
    trainer.train()
    batches = [collator([grouped[i] for i in range(j, j + batch)]) for j in range(0, min(len(grouped) - batch, batch * 10), batch)]
    real = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel() for b in batches)
    return {**clock.result(batch), "non_padding": real / sum(b["input_ids"].numel() for b in batches)}


def langgraft_run(model_dir: Path, corpus: Path, objective: str, steps: int, batch: int, out: Path) -> dict:
    from langgraft.adapt.pretrain.data import PackedLMCollator, PackedLMStream
    from langgraft.adapt.pretrain.run import PretrainOptions, pretrain
    from langgraft.models import load_tokenizer

    config = PretrainOptions(model=str(model_dir), corpus=[str(corpus)], out=str(out), max_steps=steps,
                            per_device_train_batch_size=batch, max_seq_length=SEQ_LEN, save_steps=10 * steps,
                            logging_steps=steps, seed=0, use_cpu=True, report_to=["none"])
    clock = StepClock()
    pretrain(config, callbacks=[clock])
    tokenizer = load_tokenizer(model_dir)
    stream = iter(PackedLMStream(tokenizer, [corpus], objective, SEQ_LEN))
    collator = PackedLMCollator(tokenizer, objective)
    batches = [collator([next(stream) for _ in range(batch)]) for _ in range(10)]
    pad = tokenizer.pad_token_id
    real = sum(int((b["input_ids"] != pad).sum()) if pad is not None else b["input_ids"].numel() for b in batches)
    return {**clock.result(batch), "non_padding": real / sum(b["input_ids"].numel() for b in batches)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per method; the best is kept")
    parser.add_argument("--verses", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("runs/throughput"))
    parser.add_argument("--objectives", nargs="+", default=["mlm", "clm"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(args.out / "eng.txt", args.verses)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
               "threads": torch.get_num_threads(), "steps": args.steps, "batch": args.batch, "seq_len": SEQ_LEN}
    for objective in args.objectives:
        model_dir = args.out / f"model-{objective}"
        if not model_dir.exists():
            mlm_model(model_dir) if objective == "mlm" else clm_model(model_dir, corpus)
        runs: dict[str, list[dict]] = {"plain": [], "langgraft": []}
        for repeat in range(args.repeats):
            for name, run in (("plain", plain_trainer), ("langgraft", langgraft_run)):
                work = args.out / f"{objective}-{name}-{repeat}"
                runs[name].append(run(model_dir, corpus, objective, args.steps, args.batch, work))
        results[objective] = {"runs": runs, "non_padding_plain": runs["plain"][0]["non_padding"],
                              "non_padding_langgraft": runs["langgraft"][0]["non_padding"]}
        for key in ("tokens_per_s", "tokens_per_cpu_s"):
            best = {name: max(r[key] for r in rs) for name, rs in runs.items()}
            results[objective][f"plain_{key}"] = best["plain"]
            results[objective][f"langgraft_{key}"] = best["langgraft"]
            results[objective][f"ratio_{key}"] = best["langgraft"] / best["plain"]
    (args.out / "throughput.json").write_text(json.dumps(results, indent=2))
    print("| objective | plain tokens/s (wall) | langgraft tokens/s (wall) | ratio (wall) | plain tokens/CPU-s | "
          "langgraft tokens/CPU-s | ratio (CPU) | non-padding (plain / langgraft) |")
    print("|---|---|---|---|---|---|---|---|")
    for objective in args.objectives:
        r = results[objective]
        print(f"| {objective} | {r['plain_tokens_per_s']:.0f} | {r['langgraft_tokens_per_s']:.0f} | "
              f"{r['ratio_tokens_per_s']:.2f} | {r['plain_tokens_per_cpu_s']:.0f} | {r['langgraft_tokens_per_cpu_s']:.0f} | "
              f"{r['ratio_tokens_per_cpu_s']:.2f} | {r['non_padding_plain']:.3f} / {r['non_padding_langgraft']:.3f} |")

if __name__ == "__main__":
    main()
