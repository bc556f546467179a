"""Belebele: multiple-choice reading comprehension on FLORES-200 passages in 122 language variants."""
from langgraft.eval.benchmarks.base import Benchmark, register_benchmark

BELEBELE = register_benchmark(Benchmark(
    name="belebele", kind="multiple-choice", hub="facebook/belebele", config="{language}", source_language="eng_Latn",
    train_split=None, test_split="test",
    columns={"context": "flores_passage", "question": "question", "label": "correct_answer_num",
             "choices": ["mc_answer1", "mc_answer2", "mc_answer3", "mc_answer4"]},
    first_choice=1, group="link", held_out=0.5,
    metric="accuracy", description="4-way multiple choice (900 questions per language); accuracy",
    citation="Bandarkar et al. 2024, The Belebele Benchmark: a Parallel Reading Comprehension Dataset in 122 "
             "Language Variants (ACL)",
    license="CC BY-SA 4.0", languages_note="FLORES-200 codes: nya_Latn, ..."))
