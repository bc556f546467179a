"""Tiny copies of the named benchmarks with their hub schemas (configs, splits, columns, label sets).

``cache_like_hub`` stores a dataset in a ``datasets`` cache folder exactly where ``load_dataset(hub,
config)`` looks for it offline, so tests load the fixtures through the same call as the real data.
``write_like_hub`` writes the hub's parquet layout (``<config>/<split>-00000-of-00001.parquet``) for
``--data-dir``. Text is synthetic (``tiny.source_sentences`` / ``target_sentences``).
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import datasets
from datasets import ClassLabel, Features, List, Value

from tiny import source_sentences, target_sentences

WIKIANN_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
UPOS = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ", "PROPN", "PRON", "X", "_",
        "ADV", "INTJ", "VERB", "AUX"]
SIB_TOPICS = ["science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"]
TARGET = {"sib200": "nya_Latn", "belebele": "nya_Latn", "flores200": "nya_Latn", "tatoeba": "nya",
          "wikiann": "ny", "ud": "ny_tiny"}
SOURCE = {"sib200": "eng_Latn", "belebele": "eng_Latn", "flores200": "eng_Latn", "wikiann": "en", "ud": "en_ewt"}


def _texts(language_is_source: bool, n: int, seed: int) -> list[str]:
    return source_sentences(n, seed) if language_is_source else target_sentences(n, seed)


def sib200(config: str, split: str, n: int, seed: int) -> datasets.Dataset:
    texts = _texts(config.startswith("eng"), n, seed)
    rng = random.Random(seed)
    return datasets.Dataset.from_dict({
        "index_id": list(range(n)),
        "category": [SIB_TOPICS[0] if "lord" in t.lower() else rng.choice(SIB_TOPICS[1:3]) for t in texts],
        "text": texts}, features=Features({"index_id": Value("int64"), "category": Value("string"),
                                           "text": Value("string")}))


def wikiann(config: str, split: str, n: int, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    tokens = [t.rstrip(".").split() for t in _texts(config == "en", n, seed)]
    tags = [[1] + [5 if rng.random() < 0.2 else 0 for _ in s[1:]] for s in tokens]  # B-PER first, some B-LOC
    return datasets.Dataset.from_dict(
        {"tokens": tokens, "ner_tags": tags, "langs": [[config] * len(s) for s in tokens],
         "spans": [[] for _ in tokens]},
        features=Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=WIKIANN_TAGS)),
                           "langs": List(Value("string")), "spans": List(Value("string"))}))


def ud(config: str, split: str, n: int, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    tokens = [t.rstrip(".").split() + ["."] for t in _texts(config.startswith("en"), n, seed)]
    upos = [[UPOS.index("PUNCT") if w == "." else rng.choice([0, 2, 8, 16]) for w in s] for s in tokens]
    strings = {name: [["_"] * len(s) for s in tokens] for name in ("lemmas", "xpos", "head", "deprel", "deps", "misc")}
    return datasets.Dataset.from_dict(
        {"idx": [f"{config}-{split}-{i}" for i in range(n)], "text": [" ".join(s) for s in tokens], "tokens": tokens,
         "lemmas": strings["lemmas"], "upos": upos, "xpos": strings["xpos"], "feats": [["_"] * len(s) for s in tokens],
         "head": strings["head"], "deprel": strings["deprel"], "deps": strings["deps"], "misc": strings["misc"]},
        features=Features({"idx": Value("string"), "text": Value("string"), "tokens": List(Value("string")),
                           "lemmas": List(Value("string")), "upos": List(ClassLabel(names=UPOS)),
                           "xpos": List(Value("string")), "feats": List(Value("string")),
                           "head": List(Value("string")), "deprel": List(Value("string")),
                           "deps": List(Value("string")), "misc": List(Value("string"))}))


def flores200(config: str, split: str, n: int, seed: int) -> datasets.Dataset:
    texts = _texts(config.startswith("eng"), n, 7)  # the same sentence ids in every language
    order = list(range(n))
    random.Random(seed).shuffle(order)  # rows in another order per language: pairs join on id
    iso, script = config.split("_")
    return datasets.Dataset.from_dict({
        "id": [i + 1 for i in order], "iso_639_3": [iso] * n, "iso_15924": [script] * n, "glottocode": ["none1234"] * n,
        "text": [texts[i] for i in order], "url": ["https://example.org"] * n, "domain": ["wikinews"] * n,
        "topic": ["science"] * n, "has_image": [0] * n, "has_hyperlink": [0] * n, "last_updated": ["2.0"] * n})


def tatoeba(config: str, split: str, n: int, seed: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"sentence1": target_sentences(n, seed), "sentence2": source_sentences(n, seed)})


def belebele(config: str, split: str, n: int, seed: int) -> datasets.Dataset:
    english = config.startswith("eng")
    passages = _texts(english, n, 21)
    rng = random.Random(5)  # the same answers in every language (a parallel benchmark)
    answers = [rng.randint(1, 4) for _ in range(n)]
    choices = [_texts(english, 4, 100 + i) for i in range(n)]
    return datasets.Dataset.from_dict({
        "link": [f"https://example.org/passage/{i // 2}" for i in range(n)], "question_number": [1 + i % 2 for i in range(n)],
        "flores_passage": passages, "question": [f"{p.split()[0]}?" for p in passages],
        **{f"mc_answer{k}": [c[k - 1] for c in choices] for k in range(1, 5)},
        "correct_answer_num": [str(a) for a in answers], "dialect": [config] * n, "ds": ["2023-05-03"] * n})


HUB = {"sib200": ("Davlan/sib200", sib200, ("train", "validation", "test")),
       "wikiann": ("unimelb-nlp/wikiann", wikiann, ("train", "validation", "test")),
       "ud": ("universal-dependencies/universal_dependencies", ud, ("train", "validation", "test")),
       "flores200": ("openlanguagedata/flores_plus", flores200, ("dev", "devtest")),
       "tatoeba": ("mteb/tatoeba-bitext-mining", tatoeba, ("test",)),
       "belebele": ("facebook/belebele", belebele, ("test",))}


def configs(name: str) -> list[str]:
    if name == "tatoeba":
        return [f"{TARGET[name]}-eng"]
    return [SOURCE[name], TARGET[name]]


def fixture(name: str, config: str, split: str, n: int = 16) -> datasets.Dataset:
    return HUB[name][1](config, split, n, seed=sum(map(ord, config + split)))


def cache_like_hub(cache: Path, name: str) -> None:
    """Store every config and split of benchmark ``name`` where an offline ``load_dataset(hub, config)`` finds it."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    hub, _, splits = HUB[name]
    namespace, dataset = hub.split("/")
    staging = cache / "staging"
    for config in configs(name):
        files = {}
        for split in splits:
            path = staging / name / config / f"{split}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            fixture(name, config, split).to_parquet(str(path))
            files[split] = [str(path)]
        builder = Parquet(cache_dir=str(staging / "build"), dataset_name=dataset, config_name=config, hash="0" * 40,
                          data_files=files)
        builder.download_and_prepare()
        destination = cache / f"{namespace}___{dataset}" / config
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(builder.cache_dir).parents[1]), str(destination))
    shutil.rmtree(staging)


def write_like_hub(root: Path, name: str) -> Path:
    """The hub's parquet layout, ``<config>/<split>-00000-of-00001.parquet``, for ``--data-dir``."""
    for config in configs(name):
        for split in HUB[name][2]:
            path = root / config / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            fixture(name, config, split).to_parquet(str(path))
    return root

