"""Universal Dependencies: part-of-speech tagging (UPOS) on one treebank per language."""
from langgraft.eval.benchmarks.base import Benchmark, register_benchmark

UD = register_benchmark(Benchmark(
    name="ud", kind="token-cls", hub="universal-dependencies/universal_dependencies", config="{language}",
    source_language="en_ewt", train_split="train", test_split="test", columns={"tokens": "tokens", "tags": "upos"},
    labels=("NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ", "PROPN", "PRON", "X", "_",
            "ADV", "INTJ", "VERB", "AUX"),
    metric="accuracy", description="UPOS tagging; word accuracy",
    citation="Nivre et al. 2020, Universal Dependencies v2: An Evergrowing Multilingual Treebank Collection (LREC)",
    license="per treebank (see each treebank's LICENSE)",
    languages_note="treebank names: en_ewt, pcm_nsc, ...; or local CoNLL-U files (--data-dir)"))
