"""Floor of an exact cosine top-k on this CPU: how long the dense product and ``torch.topk`` take alone.

The `wechsel` transfer computation must score every target token against every source token
(exact top-k neighbours, as the package does). This times the two unavoidable kernels on
random unit vectors of the demo case's shape (16,000 queries × 28,242 keys × 100 dims, blocks of
1,024 rows) in float32, bfloat16, float16 and int8, so the speed target can be read against what
the hardware allows:

    python benchmarks/similarity_floor.py --repeats 5
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=16_000)
    parser.add_argument("--keys", type=int, default=28_242)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(args.block, args.dim, generator=generator), dim=1)
    keys_t = torch.nn.functional.normalize(torch.randn(args.keys, args.dim, generator=generator), dim=1).T.contiguous()
    blocks = args.queries / args.block  # every timing below is one block, scaled to all queries
    scores = torch.empty(args.block, args.keys)
    results = {"threads": torch.get_num_threads(), "shape": [args.queries, args.keys, args.dim],
               "gflop": round(2 * args.queries * args.keys * args.dim / 1e9, 1)}
    results["float32 product s"] = blocks * best_of(args.repeats, lambda: torch.mm(queries, keys_t, out=scores))
    for name, dtype in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        q, kt = queries.to(dtype), keys_t.to(dtype)
        results[f"{name} product s"] = blocks * best_of(args.repeats, lambda: torch.mm(q, kt))
    q8, k8 = (queries * 127).round().to(torch.int8), (keys_t * 127).round().to(torch.int8).contiguous()
    results["int8 product s"] = blocks * best_of(args.repeats, lambda: torch._int_mm(q8, k8))
    torch.mm(queries, keys_t, out=scores)
    results[f"topk {args.k} s"] = blocks * best_of(args.repeats, lambda: torch.topk(scores, args.k, dim=1))
    results["float32 GFLOP/s"] = results["gflop"] / results["float32 product s"]
    print(json.dumps({key: round(value, 3) if isinstance(value, float) else value for key, value in results.items()},
                     indent=2))


if __name__ == "__main__":
    main()
