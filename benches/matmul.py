#!/usr/bin/env python3
"""The PyTorch side of `train bench matmul`: torch.matmul at the 7B stage-1 step's shapes.

`train bench matmul --torch-python PYTHON` runs this after timing burn's products on the same
device and prints both side by side; it can also run alone. Prints one JSON object per line:
{"name": ..., "ms": mean milliseconds per product}. The shapes are those of
src/cli/bench_matmul.rs `shapes` (kept in step by hand; a test compares the two lists).

    python benches/matmul.py --device cuda --dtype bf16 --shapes llava7b
"""

import argparse
import json
import time


def shapes(name):
    """(name, batch, m, k, n, rhs_transposed, rhs_broadcast) for each product."""
    if name == "llava7b":
        t, v, heads, samples = 16 * 641, 16 * 577, 16 * 32, 16
        d, ff, vocab, seq, hd, vd, vff = 4096, 11008, 32000, 641, 128, 1024, 4096
    elif name == "small":
        t, v, heads, samples = 96, 80, 4, 4
        d, ff, vocab, seq, hd, vd, vff = 64, 96, 160, 24, 16, 32, 64
    else:
        raise SystemExit(f"--shapes {name}: give llava7b or small")
    return [
        ("llm q/k/v/o projection", 1, t, d, d, False, False),
        ("llm gate/up projection", 1, t, d, ff, False, False),
        ("llm down projection", 1, t, ff, d, False, False),
        ("llm down projection, backward to its input", 1, t, d, ff, True, False),
        ("lm head", 1, t, d, vocab, False, False),
        ("attention q k^T", heads, seq, hd, seq, True, False),
        ("attention p v", heads, seq, seq, hd, False, False),
        ("vision mlp up", 1, v, vd, vff, False, False),
        # The weight broadcast over the samples: here a 2-D weight, which torch.matmul (as
        # torch.nn.functional.linear) folds into one product over every row.
        ("llm gate/up projection with the weight broadcast over samples", samples, t // samples, d, ff, False, True),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--shapes", default="llava7b")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--list", action="store_true", help="print the shapes as JSON and exit (no torch needed)")
    a = ap.parse_args()
    if a.list:
        print(json.dumps(shapes(a.shapes)))
        return
    import torch  # here, so that --list runs without PyTorch

    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[a.dtype]
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    for name, batch, m, k, n, rhs_transposed, rhs_broadcast in shapes(a.shapes):
        lhs = (torch.rand(batch, m, k, generator=gen, device=device) * 2 - 1).to(dtype)
        stored = (n, k) if rhs_transposed else (k, n)
        stored = stored if rhs_broadcast else (batch, *stored)
        rhs = (torch.rand(*stored, generator=gen, device=device) * 2 - 1).to(dtype)
        rhs = rhs.transpose(-1, -2) if rhs_transposed else rhs
        for _ in range(a.warmup):
            torch.matmul(lhs, rhs)
        sync()
        start = time.perf_counter()
        for _ in range(a.iters):
            torch.matmul(lhs, rhs)
        sync()
        ms = (time.perf_counter() - start) * 1e3 / a.iters
        print(json.dumps({"name": name, "ms": ms}), flush=True)
        del lhs, rhs


if __name__ == "__main__":
    main()
