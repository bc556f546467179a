"""The anchor environment on demand: the published packages langgraft is held to (``wechsel``,
``deepfocus``; pinned in ``benchmarks/anchors.txt``) live in ``benchmarks/.anchors/venv`` (ignored
by git), which ``benchmarks/anchors.sh`` builds. Every benchmark that runs a package calls
:func:`anchor_site_packages`, so a fresh clone needs no separate set-up step."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "benchmarks" / ".anchors" / "venv"
READY = VENV / "anchors-ready"  # anchors.sh writes it last, once both packages import


def anchor_python() -> Path:
    """The anchor environment's python, building the environment first if it is not ready. It is
    built from the running interpreter, so its compiled packages also fit this process's path."""
    if not READY.is_file():
        print("building the anchor environment (benchmarks/anchors.sh; once) ...", file=sys.stderr, flush=True)
        subprocess.run(["bash", str(ROOT / "benchmarks" / "anchors.sh")], check=True,
                       env={**os.environ, "PYTHON": sys.executable})
    return VENV / "bin" / "python"


def anchor_site_packages() -> Path:
    """The anchor environment's site-packages (built first if needed): what a package process puts first
    on its ``PYTHONPATH``, on top of langgraft's environment (same torch/transformers/numpy versions)."""
    anchor_python()
    (site,) = VENV.glob("lib/python*/site-packages")
    return site


def use_anchor_packages() -> None:
    """Put the anchor environment first on this process's import path (``import wechsel`` / ``deepfocus``)."""
    sys.path.insert(0, str(anchor_site_packages()))
