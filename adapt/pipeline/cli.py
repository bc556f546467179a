"""``langgraft run``, ``langgraft demo`` and ``langgraft publish``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from langgraft.adapt.pipeline.demo import demo_yaml, run_demo
from langgraft.adapt.pipeline.publish import publish
from langgraft.options import parse_pairs
from langgraft.outputs import add_output_arguments


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set pretrain.max_steps=100`` pairs; values are read as YAML scalars/lists."""
    return parse_pairs(items or (), "--set", "pretrain.max_steps=100")


def _run(args: argparse.Namespace) -> int:
    from langgraft.adapt.pipeline.runner import run_pipelines  # planning loads torch: `langgraft --help` stays light

    for pipeline in run_pipelines(args.pipelines, parse_overrides(args.set)):
        print(f"report: {pipeline.run_dir / 'report' / 'report.md'}")
        if pipeline.publish_dir is not None:
            print(f"published: {pipeline.publish_dir}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.print_config:
        print(demo_yaml(), end="")
        return 0
    run_demo(Path(args.out), quick=args.quick, overrides=parse_overrides(args.set), overwrite=args.overwrite)
    return 0


def _publish(args: argparse.Namespace) -> int:
    for folder in publish(args.run_dir, args.out, push=args.push, overwrite=args.overwrite):
        print(f"published: {folder}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    set_help = "override a pipeline key, e.g. --set pretrain.max_steps=100 (repeatable; value read as YAML)"
    run = subparsers.add_parser("run", help="run per-language pipelines from YAML files",
                                description="Run every stage of each pipeline in order; finished stages "
                                            "(same config and inputs) are skipped, a crashed run resumes.")
    run.add_argument("pipelines", nargs="+", metavar="PIPELINE.yaml",
                     help="one YAML per language (or one YAML holding a list of languages)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    run.set_defaults(handler=_run)

    demo = subparsers.add_parser("demo", help="English MiniLM -> Chichewa on the installed Bibles, end to end",
                                 description="The embedded default pipeline (langgraft/adapt/pipeline/demo.yaml): "
                                             "corpus, tokenizer, head recovery, init, pretraining, a language "
                                             "module, zero-shot genre task, retrieval, report, published folder.")
    add_output_arguments(demo, "output folder (default: ./langgraft-demo); a folder holding the demo's run "
                               "continues it", required=False, default="langgraft-demo")
    demo.add_argument("--quick", action="store_true", help="a tiny version (minutes less; for smoke tests)")
    demo.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    demo.add_argument("--print-config", action="store_true",
                      help="print the embedded pipeline YAML (a template for your own language) and exit")
    demo.set_defaults(handler=_demo)

    pub = subparsers.add_parser("publish", help="hub-ready folder(s) from a finished run",
                                description="Model + tokenizer, modules, model card with hub metadata and "
                                            "metrics, manifest.json with sha256 of every file.")
    pub.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (<output>/<name>) or a folder of runs")
    add_output_arguments(pub, "folder to create; one sub-folder per run when RUN_DIR holds several")
    pub.add_argument("--push", metavar="REPO", help="also upload to this hub model repo (needs a network and a token)")
    pub.set_defaults(handler=_publish)
