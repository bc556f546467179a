"""Why chunking the LM loss through autograd costs memory when the head trains, and what the fused path saves.

A diagnostic beside ``training_scale.py``: backward peak of one trainable ``128,256 x H`` head + loss
on 511 scored rows, three ways: full logits; ``chunk`` rows at a time, each chunk under
non-reentrant activation checkpointing (what :class:`langgraft.training.LMLoss` does for a head it
cannot fuse); and langgraft's fused path (:class:`langgraft.training.loss.LinearCrossEntropy`, one
float32 weight-gradient buffer accumulated in place).
Prints, per hidden size, the resident-set peak of the backward pass over its start (Linux
``/proc/self``; run with ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors leave the resident set).

    MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/chunked_loss_memory.py --hidden 64 512 1024
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from langgraft.training.loss import LinearCrossEntropy

VOCAB, ROWS = 128_256, 511


def _status(key: str) -> int:
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def backward_peak(hidden: int, chunk: int, fused: bool = False) -> int:
    """Bytes the resident set grows by during forward + backward (second of two identical steps)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(VOCAB, hidden, generator=generator) * 0.02)
    states = torch.randn(ROWS, hidden, generator=generator, requires_grad=True)
    targets = torch.randint(0, VOCAB, (ROWS,), generator=generator)

    def loss_sum(rows: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(torch.nn.functional.linear(rows, weight), wanted, reduction="sum")

    for _ in range(2):
        weight.grad = states.grad = None
        Path("/proc/self/clear_refs").write_text("5")
        start = _status("VmRSS")
        if fused:
            loss = LinearCrossEntropy.apply(states, weight, None, targets, chunk)
        elif chunk:
            loss = sum(checkpoint(loss_sum, states[b:b + chunk], targets[b:b + chunk], use_reentrant=False)
                       for b in range(0, ROWS, chunk))
        else:
            loss = loss_sum(states, targets)
        loss.backward()
        grown = _status("VmHWM") - start
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 512, 1024])
    parser.add_argument("--chunk", type=int, default=128)
    args = parser.parse_args()
    mib = 2 ** 20
    print("| hidden | head weight (MiB) | full logits (MiB) | backward peak, full (MiB) "
          "| chunked, checkpointed (MiB) | chunked, fused (MiB) |")
    print("|---|---|---|---|---|---|")
    for hidden in args.hidden:
        full, chunked = backward_peak(hidden, 0), backward_peak(hidden, args.chunk)
        fused = backward_peak(hidden, args.chunk, fused=True)
        print(f"| {hidden} | {VOCAB * hidden * 4 / mib:.0f} | {ROWS * VOCAB * 4 / mib:.0f} | {full / mib:.0f} "
              f"| {chunked / mib:.0f} | {fused / mib:.0f} |")


if __name__ == "__main__":
    main()
