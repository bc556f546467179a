"""Record what the ``wechsel`` 0.0.4 and ``deepfocus`` 1.0.1 packages compute on the generated cases.

Builds every case of ``tests/anchor_cases.py`` (in this environment, where langgraft is
installed), runs the packages on each through ``benchmarks/anchor_runner.py`` in the anchor
environment that ``benchmarks/anchors.sh`` creates, and writes ``tests/data/anchor_reference.json``,
which ``tests/vocab/test_anchor_parity.py`` holds langgraft's ``wechsel`` and ``focus`` to. The
anchor environment is built under the ignored ``benchmarks/.anchors/`` on first use. Re-run whenever
the cases change:

    python benchmarks/record_anchor_reference.py --out tests/data/anchor_reference.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from anchor_cases import CASES, build_case  # noqa: E402  (the cases live with the test that uses them)
from anchor_env import anchor_python  # noqa: E402  (sibling benchmark module)

K, TEMPERATURE = 10, 0.1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write (tests/data/anchor_reference.json)")
    parser.add_argument("--anchor-python",
                        help="python of the anchor environment (default: the one benchmarks/anchors.sh builds "
                             "under benchmarks/.anchors, built on first use)")
    args = parser.parse_args()
    args.anchor_python = args.anchor_python or str(anchor_python())
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in CASES:
            built = build_case(spec, Path(tmp) / spec.name)
            result = subprocess.run([args.anchor_python, str(ROOT / "benchmarks" / "anchor_runner.py"),
                                     str(Path(tmp) / spec.name), str(K), str(TEMPERATURE)],
                                    capture_output=True, text=True)
            if result.returncode:
                sys.stderr.write(result.stderr)
                return result.returncode
            cases[spec.name] = {"fingerprint": built.fingerprint, **json.loads(result.stdout)}
            wechsel, focus = cases[spec.name]["wechsel"], cases[spec.name]["focus"]
            print(f"{spec.name}: wechsel {sum(v is None for v in wechsel.values())} of {len(wechsel)} without "
                  f"vector; focus {sum(v[0] == 'focus' for v in focus.values())} focus, "
                  f"{sum(v[0] == 'copied' for v in focus.values())} copied, "
                  f"{sum(v[0] == 'random' for v in focus.values())} random")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"k": K, "temperature": TEMPERATURE})[:-1] + ', "cases": {']
    for n, (name, case) in enumerate(cases.items()):
        lines.append(f' "{name}": {{"fingerprint": "{case["fingerprint"]}", "packages": {json.dumps(case["packages"])},')
        for method in ("wechsel", "focus"):
            rows = [f'  "{i}": {json.dumps(v)}' for i, v in case[method].items()]
            lines.append(f'  "{method}": {{\n' + ",\n".join(rows) + "\n  }" + ("," if method == "wechsel" else ""))
        lines.append(" }" + ("," if n < len(cases) - 1 else ""))
    lines.append("}}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json.loads(out.read_text(encoding="utf-8"))  # well-formed
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
