"""Convergence: steps of continued pretraining each initialisation needs to reach random's final bpc.

Give one initialised checkpoint per method (made with ``langgraft init --method M``; the random
one is the reference). Each is pretrained with the same command, data, seed and budget, held-out
bpc is recorded every ``--eval-steps``, and the table reports, per method, the step-0 bpc (init
quality), the final bpc and the first evaluated step whose bpc is at or below the final bpc of
the random run, with its ratio to random's steps (goal: best init <= 1/5).

    nice -n 10 python benchmarks/convergence.py --init random=init-random fvt=init-fvt \\
        focus=init-focus wechsel=init-wechsel --corpus nya/train.txt --eval-corpus nya/dev.txt \\
        --max-steps 2000 --eval-steps 100 --out runs/convergence

Extra ``langgraft pretrain`` options go after ``--``. Writes ``convergence.json`` and
``convergence.png`` (bpc curves) in ``--out`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def bpc_curve(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["eval_bpc"]) for r in records if "eval_bpc" in r]


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((step for step, bpc in curve if bpc <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", nargs="+", required=True, metavar="NAME=DIR",
                        help="initialised checkpoints; one must be named random")
    parser.add_argument("--corpus", nargs="+", required=True)
    parser.add_argument("--eval-corpus", required=True)
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--eval-steps", type=int, default=100)
    parser.add_argument("--compare-steps", type=int, default=None,
                        help="budget of the non-random inits (default --max-steps); e.g. max-steps/5 "
                             "answers the 1/5 goal at a fraction of the compute")
    parser.add_argument("--embeddings-only", action="store_true",
                        help="the demo's recipe: every step trains only the embeddings (and untied head rows, "
                             "output bias) with the body frozen (--embedding-steps = each run's budget)")
    parser.add_argument("--out", type=Path, default=Path("runs/convergence"))
    parser.add_argument("pretrain_options", nargs=argparse.REMAINDER, help="after --: more langgraft pretrain options")
    args = parser.parse_args()
    inits = dict(item.split("=", 1) for item in args.init)
    if "random" not in inits:
        parser.error("one --init must be random=DIR (the reference)")
    extra = [a for a in args.pretrain_options if a != "--"]

    from langgraft.adapt.cli import main as langgraft

    curves = {}
    for name in sorted(inits, key=lambda n: n != "random"):
        model, run = inits[name], args.out / name
        budget = args.max_steps if name == "random" else (args.compare_steps or args.max_steps)
        stage = ["--embedding-steps", str(budget)] if args.embeddings_only else []
        if not (run / "metrics.jsonl").exists() or "--resume" in extra:
            code = langgraft(["pretrain", "--model", model, "--corpus", *args.corpus, "--eval-corpus", args.eval_corpus,
                              "--out", str(run), "--max-steps", str(budget), "--eval-steps",
                              str(args.eval_steps), "--save-steps", str(args.eval_steps), *stage, *extra])
            if code != 0:
                raise SystemExit(code)
        curves[name] = bpc_curve(run)

    target = curves["random"][-1][1]
    random_steps = steps_to_reach(curves["random"], target)
    rows = {}
    for name, curve in curves.items():
        steps = steps_to_reach(curve, target)
        rows[name] = {"step0_bpc": curve[0][1], "final_bpc": curve[-1][1], "steps_to_random_final": steps,
                      "ratio_to_random": steps / random_steps if steps is not None else None}
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "max_steps": args.max_steps, "embeddings_only": args.embeddings_only, "compare_steps": args.compare_steps or args.max_steps, "eval_steps": args.eval_steps, "target_bpc": target, "methods": rows,
              "curves": curves}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "convergence.json").write_text(json.dumps(result, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        axis.plot(*zip(*curve), marker=".", label=name)
    axis.axhline(target, color="grey", linestyle="--", label="random, final")
    axis.set_xlabel("step")
    axis.set_ylabel("held-out bits per character")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.out / "convergence.png", dpi=100)

    print(f"target: random's final bpc {target:.4f} after {args.max_steps} steps\n")
    print("| init | step-0 bpc | final bpc | steps to random's final | ratio to random |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        steps = row["steps_to_random_final"]
        budget = args.max_steps if name == "random" else (args.compare_steps or args.max_steps)
        ratio = f"{row['ratio_to_random']:.2f}" if row["ratio_to_random"] is not None else f"not reached in {budget}"
        print(f"| {name} | {row['step0_bpc']:.4f} | {row['final_bpc']:.4f} | {steps if steps is not None else '-'} | {ratio} |")


if __name__ == "__main__":
    main()
