#!/usr/bin/env bash
# Build the anchor environment: the published WECHSEL and FOCUS packages, which langgraft's
# `wechsel` and `focus` are held to, in their own virtual environment (they are no langgraft
# dependency). Run from the repository root:
#     bash benchmarks/anchors.sh            # -> benchmarks/.anchors/venv (ignored by git)
# then record what they compute on the generated cases of tests/anchor_cases.py:
#     python benchmarks/record_anchor_reference.py --out tests/data/anchor_reference.json
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
"$PYTHON" -m venv benchmarks/.anchors/venv
benchmarks/.anchors/venv/bin/pip install -q -r benchmarks/anchors.txt
benchmarks/.anchors/venv/bin/python -c "import wechsel, deepfocus; print('anchors ready: wechsel', wechsel.__version__)"
