"""``langgraft demo``: the embedded pipeline ``demo.yaml`` (English MiniLM -> Chichewa), end to end.

Everything it reads is installed (the MiniLM package, the two Bible packages); it writes the run,
the report and the published folder under one output folder and prints where the report is.
``quick`` shrinks every budget (corpus, vocabulary, steps, evaluation sizes) for smoke tests.
"""
from __future__ import annotations

import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from langgraft.outputs import check_output, clear_output

DEMO_FILE = "demo.yaml"


def demo_yaml() -> str:
    """The text of the embedded demo pipeline (``langgraft demo --print-config``)."""
    return resources.files("langgraft.adapt.pipeline").joinpath(DEMO_FILE).read_text(encoding="utf-8")


def demo_config(quick: bool = False) -> dict[str, Any]:
    """The embedded demo pipeline as a raw mapping (``quick``: tiny budgets)."""
    config = yaml.safe_load(demo_yaml())
    if quick:
        config["name"] = config["name"] + "-quick"
        config["corpora"]["max_documents"] = 1500
        config["tokenizer"]["vocab_size"] = 2000
        config["head"]["max_steps"] = 10
        config["init"]["dev_documents"] = 40
        config["pretrain"].update(max_steps=10, embedding_steps=10, save_steps=5, eval_steps=5, max_seq_length=64,
                                  eval_documents=40)
        for module in config["modules"]:
            module["max_steps"] = 10
        config["evaluation"].update(max_documents=40)
        config["evaluation"]["retrieval"]["max_pairs"] = 100
        for task in config["evaluation"]["tasks"]:
            task["max_examples"] = 200
    return config


def run_demo(out: str | Path = "langgraft-demo", quick: bool = False,
             overrides: dict[str, Any] | None = None, overwrite: bool = False) -> dict[str, Path]:
    """Run the demo under ``out``; returns stage -> output folder and prints the report path.

    An ``out`` holding this demo's run continues it (finished stages are kept); any other
    non-empty ``out`` is refused unless ``overwrite``, which starts afresh in an emptied ``out``.
    """
    from langgraft.adapt.pipeline.runner import Pipeline  # planning loads torch: `demo --print-config` stays light

    out = Path(out).resolve()
    started = time.time()
    pipeline = Pipeline.from_dict(demo_config(quick), base_dir=out, overrides=overrides)
    resuming = pipeline.ledger_path.is_file() and not overwrite
    check_output(out, overwrite=overwrite or resuming)
    if overwrite:
        clear_output(out)
    outputs = pipeline.run()
    minutes = (time.time() - started) / 60
    print(f"langgraft demo finished in {minutes:.1f} min", file=sys.stderr)
    print(f"report: {pipeline.run_dir / 'report' / 'report.md'}")
    if pipeline.config.publish.out:
        print(f"published: {pipeline.publish_dir}")
    return outputs
