"""``python -m langgraft`` (and ``torchrun -m langgraft``) is the same CLI as ``langgraft``."""
from langgraft.adapt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
