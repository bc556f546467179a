"""sentence-transformers' multilingual knowledge distillation (Reimers & Gurevych 2020) as an anchor.

Runs inside its own environment (sentence-transformers pinned by benchmarks/distill_demo.py under the
ignored benchmarks/.anchors/). The recipe of its make_multilingual example: the teacher embeds each
English sentence; the student is trained with ``losses.MSELoss`` so that its embedding of the English
sentence and of its translation both match the teacher's. Student = a transformers checkpoint (here
the demo's Chichewa init) with mean pooling; everything local, CPU, seeded. Saves the student's
transformer as a plain transformers folder (what langgraft's evaluator loads).
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers import losses, models


def read_pairs(source: str, target: str, limit: int) -> tuple[list[str], list[str]]:
    """Line-aligned TSV files (id<TAB>...<TAB>text); pairs kept where both sides share an id."""
    def read(path: str) -> dict[str, str]:
        rows = {}
        for line in open(path, encoding="utf-8"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[-1].strip() and parts[0] != "id":  # header row skipped
                rows[parts[0]] = parts[-1]
        return rows
    src, tgt = read(source), read(target)
    ids = [i for i in src if i in tgt][:limit]
    return [src[i] for i in ids], [tgt[i] for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="sentence-transformers folder")
    parser.add_argument("--student", required=True, help="transformers checkpoint with the target tokenizer")
    parser.add_argument("--parallel", nargs=2, required=True, metavar=("SRC_TSV", "TGT_TSV"))
    parser.add_argument("--max-pairs", type=int, default=20000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    teacher = SentenceTransformer(args.teacher, device="cpu")
    body = models.Transformer(args.student, max_seq_length=args.max_length)
    student = SentenceTransformer(modules=[body, models.Pooling(body.get_word_embedding_dimension(), "mean")],
                                  device="cpu")
    english, chichewa = read_pairs(*args.parallel, args.max_pairs)
    labels = teacher.encode(english, batch_size=64, convert_to_numpy=True)
    data = Dataset.from_dict({"english": english, "non_english": chichewa, "label": [row.tolist() for row in labels]})
    training = SentenceTransformerTrainingArguments(
        output_dir=str(Path(args.out).with_name("st-checkpoints")), num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate, warmup_ratio=0.1,
        seed=args.seed, save_strategy="no", logging_steps=50, report_to="none", use_cpu=True)
    trainer = SentenceTransformerTrainer(model=student, args=training, train_dataset=data,
                                         loss=losses.MSELoss(model=student))
    trainer.train()
    body.auto_model.save_pretrained(args.out)
    body.tokenizer.save_pretrained(args.out)


if __name__ == "__main__":
    main()
