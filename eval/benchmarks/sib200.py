"""SIB-200: topic classification of FLORES-200 sentences in 205 languages (7 topics)."""
from langgraft.eval.benchmarks.base import Benchmark, register_benchmark

SIB200 = register_benchmark(Benchmark(
    name="sib200", kind="seq-cls", hub="Davlan/sib200", config="{language}", source_language="eng_Latn",
    train_split="train", test_split="test", columns={"text": "text", "label": "category"},
    labels=("science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"),
    metric="accuracy", description="topic classification, 7 classes; accuracy and macro-F1",
    citation="Adelani et al. 2024, SIB-200: A Simple, Inclusive, and Big Evaluation Dataset for Topic "
             "Classification in 200+ Languages and Dialects (EACL)",
    license="CC BY-SA 4.0", languages_note="FLORES-200 codes: nya_Latn, swh_Latn, ..."))
