"""Time `langgraft demo` end to end and per stage (wall and CPU seconds), as Markdown and JSON.

    nice -n 10 python benchmarks/pipeline_demo.py --out runs/demo [--quick]

CPU seconds are reported next to wall time because the 2-core machine is shared: on a busy machine
the wall time overstates what the demo needs, the CPU time does not.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="langgraft-demo")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    from langgraft.adapt.pipeline.demo import run_demo

    started, cpu_started = time.time(), cpu_seconds()
    outputs = run_demo(args.out, quick=args.quick)
    wall, cpu = time.time() - started, cpu_seconds() - cpu_started
    run_dir = next(iter(outputs.values())).parent.parent
    ledger = json.loads((run_dir / "stages.json").read_text())["stages"]
    rows = [(name, entry.get("seconds", 0.0), entry.get("cpu_seconds", 0.0), entry.get("skipped", False))
            for name, entry in ledger.items()]
    lines = ["| stage | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {name} | {seconds:.0f}{' (cached)' if skipped else ''} | {cpu_s:.0f} |"
              for name, seconds, cpu_s, skipped in rows]
    lines.append(f"| **total (incl. publish)** | **{wall:.0f}** | **{cpu:.0f}** |")
    print("\n".join(lines))
    print(f"load average at the end: {os.getloadavg()}")
    evaluation = json.loads((outputs["evaluate"] / "evaluation.json").read_text())
    headline = [r for r in evaluation["rows"] if r["metric"] in ("bpc", "top1", "top10", "macro_f1", "accuracy")]
    for row in headline:
        print(f"{row['setup']:>18} {row['task']:>10} {row['metric']:>9} {row['value']:.4f}")
    Path(args.out, "benchmark.json").write_text(json.dumps(
        {"wall_seconds": wall, "cpu_seconds": cpu, "stages": rows, "metrics": headline,
         "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
