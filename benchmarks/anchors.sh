#!/usr/bin/env bash
# Build the anchor environment: the published WECHSEL and FOCUS packages, which langgraft's
# `wechsel` and `focus` are held to, in their own virtual environment (they are no langgraft
# dependency), pinned by benchmarks/anchors.txt to the versions of langgraft's own environment.
# The benchmarks that need it build it themselves on first use (benchmarks/anchor_env.py); to
# build it by hand, from the repository root:
#     bash benchmarks/anchors.sh            # -> benchmarks/.anchors/venv (ignored by git)
# PYTHON=... picks the interpreter (default: .venv/bin/python, else python3). Its minor version must
# be langgraft's: the benchmarks put this environment's site-packages on langgraft's import path.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
VENV=benchmarks/.anchors/venv
rm -f "$VENV/anchors-ready"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -r benchmarks/anchors.txt
"$VENV/bin/python" -c "import wechsel, deepfocus; print('anchors ready: wechsel', wechsel.__version__)"
touch "$VENV/anchors-ready"
