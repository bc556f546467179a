"""Distilled embeddings in the demo (issue 20): MiniLM -> Chichewa with and without a parallel-teacher distill step.

Runs the embedded demo (``langgraft demo``) twice in one folder: as shipped, then with the distill
settings given by ``--distill-set`` (pipeline keys, as ``langgraft demo --set``); stages whose settings do
not change (corpus, head, tokenizer, evaluation data, the English task module) are reused. For each
variant it reads the evaluation (bpc, retrieval top-1/top-10, zero-shot genre macro-F1) and adds the
in-language reference: the same English genre task module on the English model, scored on English
test verses (same books, same sampling as the Chichewa test set). The distill step's cost is measured
as a whole ``langgraft distill`` process on the demo's own init checkpoint (wall time, peak RSS).

Anchor (``--anchor``): sentence-transformers' multilingual distillation recipe (Reimers & Gurevych 2020,
``losses.MSELoss``) in its own environment under the ignored ``benchmarks/.anchors/``: teacher = the
installed MiniLM sentence-transformer, student = the demo's init checkpoint (Chichewa tokenizer), trained
on the same train-book verse pairs, scored by langgraft's retrieval evaluator on the demo's held-out pairs.

    nice -n 10 python benchmarks/distill_demo.py --out runs/distill-bench/demo --anchor \\
        --distill-set distill.teacher_text=parallel

``--quick`` uses the demo's smoke-test budgets (every number is then far from the full demo's).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ANCHORS = HERE / ".anchors"
sys.path.insert(0, str(HERE))
from distill_known_language import run_measured  # noqa: E402  (the benchmark next to this one)

ST_VERSION = "6.2.0"


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_variant(out: Path, quick: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    from langgraft.adapt.pipeline.demo import run_demo

    started, cpu = time.time(), cpu_seconds()
    outputs = run_demo(out, quick=quick, overrides=overrides or None)
    record: dict[str, Any] = {"wall_s": round(time.time() - started, 1), "cpu_s": round(cpu_seconds() - cpu, 1),
                              "outputs": {k: str(v) for k, v in outputs.items()}}
    evaluation = json.loads((outputs["evaluate"] / "evaluation.json").read_text())
    metrics: dict[str, dict[str, float]] = {}
    for row in evaluation["rows"]:
        metrics.setdefault(row["setup"], {})[f"{row['task']}.{row['metric']}"] = row["value"]
    record["metrics"] = metrics
    run_dir = Path(next(iter(outputs.values()))).parent.parent
    ledger = json.loads((run_dir / "stages.json").read_text())["stages"]
    record["stages"] = {name: {"seconds": e.get("seconds"), "cpu_seconds": e.get("cpu_seconds"),
                               "skipped": e.get("skipped", False)} for name, e in ledger.items()}
    return record


def english_reference(outputs: dict[str, str], quick: bool, out: Path) -> dict[str, Any]:
    """The English genre task module on the English model, scored on English test verses (in-language)."""
    from langgraft.adapt.pipeline.demo import demo_config
    from langgraft.corpora.prepare import read_prepared
    from langgraft.eval.harness import evaluate
    from langgraft.adapt.pipeline.stages import sample

    seed = demo_config(quick)["seed"]
    task = next(t for t in demo_config(quick)["evaluation"]["tasks"] if t["name"] == "genre")
    corpus = Path(outputs["corpus"])
    train_labels = {json.loads(line)["label"] for line in
                    open(Path(outputs["eval-data"]) / "tasks" / "genre" / "train.jsonl", encoding="utf-8")}
    test = sample((r for r in read_prepared(corpus / "source", "test") if r.label in train_labels),
                  task["max_examples"], seed)
    path = out / "genre-english-test.jsonl"
    path.write_text("".join(json.dumps({"text": r.text, "label": r.label}, ensure_ascii=False) + "\n" for r in test),
                    encoding="utf-8")
    model = str(Path(outputs["head"]) / "model")
    module = str(Path(outputs["module-genre-lora"]) / "module")
    run = evaluate(model, [f"genre=seq-cls:{path}"], modules=[module], name="english-in-language")
    return {f"{r['name']}.{m}": v for r in run["results"] for m, v in r["metrics"].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def distill_cost(outputs: dict[str, str], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """A whole ``langgraft distill`` process (parallel teacher) on the demo's init checkpoint and train verses."""
    if (out / "cost.json").exists():
        return json.loads((out / "cost.json").read_text())
    corpus = Path(outputs["corpus"])
    command = [str(Path(sys.executable).parent / "langgraft"), "distill", "--model", str(Path(outputs["init"]) / "model"),
               "--teacher", str(Path(outputs["head"]) / "model"),
               "--parallel", str(corpus / "source" / "train.tsv"), str(corpus / "target" / "train.tsv"),
               "--teacher-text", "parallel", "--out", str(out / "model"), "--overwrite", *args.distill_arg]
    cost = run_measured(command, out / "log.txt")
    cost["command"] = " ".join(command)
    (out / "cost.json").write_text(json.dumps(cost, indent=1))
    return cost


def evaluate_checkpoint(model: str, outputs: dict[str, str], args: argparse.Namespace, name: str,
                        layer: int | None = None, with_head: bool = True) -> dict[str, float]:
    """The demo's held-out evaluation of one checkpoint with no pretraining: bpc, retrieval, genre (task module)."""
    from langgraft.eval.harness import evaluate

    evaluation = Path(outputs["evaluate"])
    # the jobs name files in the stage's temporary folder (``<stage>.partial``), renamed when it finished
    text = (evaluation / "evaluation.json").read_text().replace(f"{evaluation.resolve()}.partial", str(evaluation.resolve()))
    jobs = json.loads(text)["jobs"]
    bpc_task = next((t for job in jobs for t in job["tasks"] if t.startswith("bpc=")), None)
    retrieval_task = next((t for job in jobs for t in job["tasks"] if t.startswith("retrieval=")), None)
    genre_task = next((t for job in jobs for t in job["tasks"] if t.startswith("genre=")), None)
    source = str(Path(outputs["head"]) / "model")
    metrics: dict[str, float] = {}
    tasks = [t for t in (bpc_task if with_head else None, retrieval_task) if t]
    runs = [evaluate(model, tasks, source_model=source, layer=layer, max_pairs=args.max_pairs, name=name)]
    if genre_task and with_head:
        module = str(Path(outputs["module-genre-lora"]) / "module")
        runs.append(evaluate(model, [genre_task], modules=[module], source_model=source, name=name))
    for run in runs:
        metrics.update({f"{r['name']}.{m}": v for r in run["results"] for m, v in r["metrics"].items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return metrics


def st_python() -> Path:
    """sentence-transformers==6.2.0 in its own venv (pip, PyPI); torch/transformers are langgraft's (a .pth file)."""
    venv = ANCHORS / "st-venv"
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        theirs = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
        Path(theirs, "zz-langgraft-env.pth").write_text(
            "\n".join(entry for entry in sys.path if entry.endswith("site-packages")) + "\n")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", f"sentence-transformers=={ST_VERSION}"],
                       check=True)
        (venv / "ready").write_text("ok\n")
    return python


def st_anchor(outputs: dict[str, str], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The recipe's student, then langgraft's retrieval evaluator on the demo's held-out pairs."""
    from langgraft.models import resolve_model_path

    corpus = Path(outputs["corpus"])
    student = out / "student"
    if not (out / "cost.json").exists():
        command = [str(st_python()), str(HERE / "anchors" / "st_multilingual.py"),
                   "--teacher", resolve_model_path(args.teacher), "--student", str(Path(outputs["init"]) / "model"),
                   "--parallel", str(corpus / "source" / "train.tsv"), str(corpus / "target" / "train.tsv"),
                   "--max-pairs", str(args.anchor_pairs), "--epochs", str(args.anchor_epochs),
                   "--batch-size", "32", "--max-length", "128", "--seed", "0", "--out", str(student)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
        cost = run_measured(command, out / "log.txt", env=env)
        (out / "cost.json").write_text(json.dumps(cost, indent=1))
    result: dict[str, Any] = {"cost": json.loads((out / "cost.json").read_text())}
    for label, layer in (("middle layer (demo protocol)", None), ("last layer (the recipe's pooled layer)", -1)):
        result[label] = evaluate_checkpoint(str(student), outputs, args, "st-anchor", layer=layer, with_head=False)
    return result


def table(data: dict[str, Any]) -> str:
    lines = ["| variant | setup | bpc | retrieval top-1 | retrieval top-10 | genre macro-F1 |", "|---|---|---|---|---|---|"]
    for variant in ("base", "distill"):
        if variant not in data:
            continue
        for setup, m in data[variant]["metrics"].items():
            def get(*keys: str) -> str:
                for key in keys:
                    if key in m:
                        return f"{m[key]:.3f}"
                return "—"
            lines.append(f"| {variant} | {setup} | {get('bpc.bpc')} | {get('retrieval.top1', 'retrieval.top1_mean')} | "
                         f"{get('retrieval.top10', 'retrieval.top10_mean')} | {get('genre.macro_f1')} |")
    for name, m in data.get("step0", {}).items():
        lines.append(f"| step 0 | {name} | {m.get('bpc.bpc', float('nan')):.3f} | "
                     f"{m.get('retrieval.top1', m.get('retrieval.top1_mean', float('nan'))):.3f} | "
                     f"{m.get('retrieval.top10', m.get('retrieval.top10_mean', float('nan'))):.3f} | "
                     f"{m.get('genre.macro_f1', float('nan')):.3f} |")
    for label, m in data.get("anchor", {}).items():
        if label != "cost":
            lines.append(f"| step 0 | sentence-transformers MSELoss student, {label} | | "
                         f"{m.get('retrieval.top1', m.get('retrieval.top1_mean', float('nan'))):.3f} | "
                         f"{m.get('retrieval.top10', m.get('retrieval.top10_mean', float('nan'))):.3f} | |")
    if "english" in data:
        lines.append(f"| English in-language reference | source + genre module on English test verses | | | | "
                     f"{data['english'].get('genre.macro_f1', float('nan')):.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/distill-bench/demo")
    parser.add_argument("--quick", action="store_true", help="the demo's smoke-test budgets")
    parser.add_argument("--distill-set", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline keys that turn the distill step on (as langgraft demo --set)")
    parser.add_argument("--distill-arg", action="append", default=[], help="extra argument of the cost run's distill")
    parser.add_argument("--anchor", action="store_true", help="sentence-transformers' MSELoss recipe as anchor")
    parser.add_argument("--teacher", default="minilm", help="the anchor's teacher sentence-transformer (path or alias)")
    parser.add_argument("--anchor-pairs", type=int, default=20000)
    parser.add_argument("--anchor-epochs", type=float, default=1.0)
    parser.add_argument("--max-pairs", type=int, help="retrieval pairs (default: the demo's)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("base", "distill", "cost", "anchor", "step0"))
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    from langgraft.adapt.pipeline.cli import parse_overrides

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    data = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.table:
        print(table(data))
        return 0
    demo = out / "demo"

    def save() -> None:
        results_path.write_text(json.dumps(data, indent=1))

    if "base" not in args.skip:
        data["base"] = run_variant(demo, args.quick, {})
        save()
        data["english"] = english_reference(data["base"]["outputs"], args.quick, out)
        save()
    if args.max_pairs is None:
        from langgraft.adapt.pipeline.demo import demo_config
        args.max_pairs = demo_config(args.quick)["evaluation"]["retrieval"]["max_pairs"]
    if args.anchor and "anchor" not in args.skip:
        data["anchor"] = st_anchor(data["base"]["outputs"], args, out / "st-anchor")
        save()
    if args.distill_set and "distill" not in args.skip:
        data["distill"] = run_variant(demo, args.quick, parse_overrides(args.distill_set))
        data["distill"]["overrides"] = args.distill_set
        save()
    if "cost" not in args.skip:
        data["distill_cost"] = distill_cost(data["base"]["outputs"], args, out / "distill-cost")
        save()
    if "step0" not in args.skip:
        outputs = data["base"]["outputs"]
        step0 = {"init (demo's transtok, step 0)": evaluate_checkpoint(str(Path(outputs["init"]) / "model"), outputs,
                                                                    args, "init")}
        if (out / "distill-cost" / "model").is_dir():
            step0["init + langgraft distill (parallel teacher)"] = evaluate_checkpoint(
                str(out / "distill-cost" / "model"), outputs, args, "distill")
        data["step0"] = step0
        save()
    print(table(data))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
