"""WikiANN (PAN-X): named entities (PER, ORG, LOC) in Wikipedia sentences, Rahimi et al.'s splits."""
from langgraft.eval.benchmarks.base import Benchmark, register_benchmark

WIKIANN = register_benchmark(Benchmark(
    name="wikiann", kind="token-cls", hub="unimelb-nlp/wikiann", config="{language}", source_language="en",
    train_split="train", test_split="test", columns={"tokens": "tokens", "tags": "ner_tags"},
    labels=("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"),
    metric="f1", description="named entity recognition; entity F1 (seqeval)",
    citation="Pan et al. 2017, Cross-lingual Name Tagging and Linking for 282 Languages (ACL); Rahimi et al. "
             "2019, Massively Multilingual Transfer for NER (ACL)",
    license="ODC-BY", languages_note="Wikipedia language codes: en, sw, yo, ..."))
