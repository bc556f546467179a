"""Tatoeba: bitext mining between English and 112 languages (up to 1000 pairs each)."""
from langgraft.eval.benchmarks.base import Benchmark, register_benchmark

TATOEBA = register_benchmark(Benchmark(
    name="tatoeba", kind="retrieval", hub="mteb/tatoeba-bitext-mining", config="{language}-eng",
    source_language="eng", train_split=None, test_split="test",
    revision="9080400076fbadbb4c4dcb136ff4eddc40b42553",  # the revision MTEB evaluates
    columns={"source": "sentence2", "target": "sentence1"},
    metric="top1", description="bitext mining both directions; top-1/top-10 accuracy",
    citation="Artetxe & Schwenk 2019, Massively Multilingual Sentence Embeddings for Zero-Shot Cross-Lingual "
             "Transfer and Beyond (TACL); sentences from tatoeba.org",
    license="CC BY 2.0 FR", languages_note="ISO 639-3 codes paired with English: the config is <language>-eng"))
