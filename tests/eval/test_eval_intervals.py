"""Bootstrap intervals on generated data: they hold the estimate, shrink like 1/sqrt(n), cover, repeat."""
from __future__ import annotations

import numpy as np
import pytest

from langgraft.eval.intervals import macro_f1_interval, mean_interval, ratio_interval, seed_summary
from langgraft.eval.tasks import (classification_intervals, classification_metrics, entity_intervals,
                                  entity_metrics, sentence_entity_counts)


@pytest.mark.parametrize("n,rate", [(30, 0.5), (200, 0.1), (1000, 0.93)])
def test_interval_contains_the_point_estimate(n, rate):
    values = np.random.default_rng(n).random(n) < rate
    low, high = mean_interval(values, resamples=500, seed=1)
    assert low <= values.mean() <= high
    assert 0.0 <= low < high <= 1.0


def test_width_shrinks_like_one_over_sqrt_n_and_matches_the_normal_width():
    rng = np.random.default_rng(0)
    rate = 0.3
    widths = {}
    for n in (400, 6400):
        values = (rng.random(n) < rate).astype(float)
        low, high = mean_interval(values, resamples=2000, seed=2)
        widths[n] = high - low
        normal = 2 * 1.959964 * np.sqrt(values.mean() * (1 - values.mean()) / n)
        assert widths[n] == pytest.approx(normal, rel=0.12)  # percentile bootstrap ~ normal width at this n
    assert widths[400] / widths[6400] == pytest.approx(4.0, rel=0.15)  # sqrt(6400 / 400)


def test_coverage_near_95_percent():
    """Over 300 test sets drawn from a known rate, ~95% of the intervals hold the true rate."""
    rng = np.random.default_rng(5)
    rate, n, trials = 0.7, 200, 300
    covered = 0
    for trial in range(trials):
        values = rng.random(n) < rate
        low, high = mean_interval(values, resamples=400, seed=trial)
        covered += low <= rate <= high
    share = covered / trials
    sd = np.sqrt(0.95 * 0.05 / trials)  # binomial sd of the observed share
    assert abs(share - 0.95) <= 4 * sd


def test_deterministic_given_the_seed():
    values = np.random.default_rng(3).random(500)
    assert mean_interval(values, seed=7) == mean_interval(values, seed=7)
    assert mean_interval(values, seed=7) != mean_interval(values, seed=8)
    assert mean_interval(values, resamples=0) is None and mean_interval(values[:1]) is None


def test_ratio_with_equal_denominators_is_the_mean_of_the_ratios():
    """Same seed -> same resample indices, so sum(x)/sum(c) with constant c equals mean(x/c) per resample."""
    numerator = np.random.default_rng(4).random(300) * 10
    denominator = np.full(300, 4.0)
    assert ratio_interval(numerator, denominator, seed=9) == pytest.approx(mean_interval(numerator / 4.0, seed=9))


def test_ratio_interval_holds_the_ratio_of_sums():
    rng = np.random.default_rng(6)
    characters = rng.integers(1, 200, size=150)
    bits = characters * rng.uniform(1.0, 3.0, size=150)
    low, high = ratio_interval(bits, characters, seed=0)
    assert low <= bits.sum() / characters.sum() <= high


def test_macro_f1_interval_recomputes_macro_f1_per_resample():
    rng = np.random.default_rng(8)
    gold = rng.integers(0, 4, size=400)
    pred = np.where(rng.random(400) < 0.6, gold, rng.integers(0, 4, size=400))
    point = classification_metrics(gold, pred)
    intervals = classification_intervals(gold, pred, resamples=800, seed=0)
    assert intervals["macro_f1"][0] <= point["macro_f1"] <= intervals["macro_f1"][1]
    assert intervals["accuracy"][0] <= point["accuracy"] <= intervals["accuracy"][1]
    # a perfect classifier has macro-F1 1 in every resample
    assert macro_f1_interval(gold, gold, resamples=200) == [1.0, 1.0]


def _tags(rng: np.random.Generator, n: int) -> list[str]:
    tags, inside = [], False
    for draw in rng.random(n):
        tag = "B-PER" if draw < 0.2 else ("I-PER" if draw < 0.35 and inside else "O")
        inside = tag != "O"
        tags.append(tag)
    return tags


def test_entity_counts_per_sentence_sum_to_seqeval_scores():
    rng = np.random.default_rng(11)
    gold = [_tags(rng, int(rng.integers(3, 15))) for _ in range(120)]
    pred = [[g if rng.random() < 0.8 else str(rng.choice(["O", "B-PER", "I-PER"])) for g in sentence]
            for sentence in gold]
    true_pos, predicted, gold_count = sentence_entity_counts(gold, pred).sum(axis=0)
    scores = entity_metrics(gold, pred)
    assert scores["precision"] == pytest.approx(true_pos / predicted)
    assert scores["recall"] == pytest.approx(true_pos / gold_count)
    assert scores["f1"] == pytest.approx(2 * true_pos / (predicted + gold_count))
    intervals = entity_intervals(gold, pred, resamples=500, seed=0)
    for metric in ("f1", "precision", "recall"):
        assert intervals[metric][0] <= scores[metric] <= intervals[metric][1]


def test_seed_summary_is_mean_and_sample_sd():
    runs = [{"accuracy": 0.5, "examples": 10}, {"accuracy": 0.7, "examples": 10}, {"accuracy": 0.6, "examples": 10}]
    mean, sd = seed_summary(runs)
    assert mean == {"accuracy": pytest.approx(0.6), "examples": 10}
    assert sd == {"accuracy": pytest.approx(np.std([0.5, 0.7, 0.6], ddof=1))}


@pytest.mark.slow
def test_bpc_interval_resamples_documents(tiny_models, target_corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from langgraft.eval.bpc import compute_bpc

    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    texts = target_corpus.read_text(encoding="utf-8").splitlines()[:60]
    result = compute_bpc(model, tokenizer, texts, bootstrap=400)
    low, high = result.intervals["bpc"]
    assert low <= result.bpc <= high and low < high
    # every document the same: every resample has the same bits/characters ratio
    same = compute_bpc(model, tokenizer, [texts[0]] * 12, bootstrap=400)
    assert same.intervals["bpc"] == pytest.approx([same.bpc, same.bpc])
    assert compute_bpc(model, tokenizer, texts, bootstrap=0).intervals == {}


def test_retrieval_intervals_resample_pairs(tiny_models):
    from transformers import AutoModel, AutoTokenizer

    from langgraft.eval.retrieval import evaluate_retrieval
    from tiny import source_sentences, target_sentences

    side = (AutoModel.from_pretrained(tiny_models["bert"]), AutoTokenizer.from_pretrained(tiny_models["bert"]))
    pairs = list(zip(source_sentences(50, seed=2), target_sentences(50, seed=2)))
    result = evaluate_retrieval(side, side, pairs, bootstrap=300)
    names = [f"top{k}{d}" for k in (1, 10) for d in ("_src2tgt", "_tgt2src", "")]
    assert sorted(result["intervals"]) == sorted(names)
    for name in names:
        low, high = result["intervals"][name]
        assert low <= result[name] <= high
