"""FLORES-200: sentence retrieval (bitext mining) between English and the target on the devtest split."""
from langgraft.eval.benchmarks.base import Benchmark, register_benchmark

FLORES200 = register_benchmark(Benchmark(
    name="flores200", kind="retrieval", hub="openlanguagedata/flores_plus", config="{language}",
    source_language="eng_Latn", train_split=None, test_split="devtest", columns={"id": "id", "text": "text"},
    metric="top1", description="sentence retrieval both directions (1012 aligned sentences); top-1/top-10 accuracy",
    citation="NLLB Team 2022, No Language Left Behind: Scaling Human-Centered Machine Translation",
    license="CC BY-SA 4.0 (gated on the hub: accept the terms, then log in once)",
    languages_note="FLORES-200 codes: nya_Latn, ..."))
