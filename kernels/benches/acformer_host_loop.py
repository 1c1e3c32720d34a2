#!/usr/bin/env python3
"""AcFormer's host-loop anchor selection (and PyTorch top-k gathers) timed in PyTorch.

Third column of the `anchor_gather` benchmark (kernels/benches/anchor_gather.rs runs this script
with `--acformer-python`); it can also run alone. Prints one JSON object per line:
{"op": ..., "batch": B, "n": N_or_k, "ms": mean milliseconds per call}.

The anchor loop follows liuhaogeng/Anchor-Former `clip_encoder.py` l.42-58 (commit 2359d305), as
described in AcFormer's paper (section 4.2) and released code, written fresh: per sample
and head, argsort the CLS-row attention on the device, bring it to the host (`.tolist()`), grow the
head's window until it adds `p` new tokens, then gather the anchors on the device and stack them.
The key/value gather column is PyTorch's usual path: `topk` indices, sorted, then `gather`.

Versions: torch 2.x (tested here with the CPU build of torch 2.15 in /work/venv-ref; on a GPU
machine use the torch installed there). Rerun alone:
    python kernels/benches/acformer_host_loop.py --device cuda --sizes real
"""

import argparse
import json
import sys
import time

import torch


def acformer_select(attention_cls, num_count):
    """attention_cls [B, H, T] (CLS row of the select layer) -> list of B sorted index lists."""
    batch, heads, _ = attention_cls.shape
    p = num_count // heads
    out = []
    for b in range(batch):
        chosen = []
        for h in range(heads):
            order = (torch.argsort(attention_cls[b, h, 1:]) + 1).tolist()
            c = 0
            while True:
                cand = set(chosen) | set(order[len(order) - (p + c):]) | {0}
                if len(cand) >= h * p + p + 1:
                    break
                c += 1
            chosen = sorted(cand)
        out.append(chosen)
    return out


def acformer_select_gather(attention_cls, features, num_count):
    selected = acformer_select(attention_cls, num_count)
    return torch.stack([features[b, idx, :] for b, idx in enumerate(selected)])


def topk_gather(scores, rows, k):
    idx = torch.topk(scores, k, dim=-1).indices.sort(dim=-1).values
    return torch.gather(rows, 2, idx.unsqueeze(-1).expand(-1, -1, -1, rows.shape[-1]))


def timed(fn, device, iters, warmup):
    """Mean milliseconds per call; one timed call when a warm-up call took over a second (the host
    loop at batch 256 does), so that the whole table fits the GPU check's time."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        sync()
        if time.perf_counter() - start > 1.0:
            iters = 1
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) * 1000.0 / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", choices=["small", "real"], default="real")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=0.0,
                    help="stop starting anchor cases once this many seconds have passed (0: no limit)")
    args = ap.parse_args()
    started = time.perf_counter()
    device = torch.device(args.device)
    # Inputs drawn on the device: drawn on the host and copied, the key/value cases (268 M values
    # each at batch 256) used up the whole 30 s budget on an H200 machine, Python's start included.
    gen = torch.Generator(device=device).manual_seed(0)

    if args.sizes == "real":
        anchor_cases = [(b, n) for b in (32, 64, 128, 256) for n in (144, 256)]
        heads, tokens, width = 16, 577, 1024
        kv_cases = [(b, k) for b in (32, 64, 128, 256) for k in (512, 1024)]
        kv_heads, length, head_dim = 32, 2048, 128
    else:
        anchor_cases = [(2, 144), (2, 256)]
        heads, tokens, width = 16, 577, 64
        kv_cases = [(1, 64)]
        kv_heads, length, head_dim = 4, 256, 128

    # The key/value top-k first (PyTorch ops, fast), then AcFormer's host loop by growing batch:
    # its Python loop runs per sample and head, seconds a call at batch 256 on any device.
    for batch, k in kv_cases:
        scores = torch.rand(batch, kv_heads, length, generator=gen, device=device)
        rows = torch.rand(batch, kv_heads, length, head_dim, generator=gen, device=device)
        ms = timed(lambda: topk_gather(scores, rows, k), device, args.iters, args.warmup)
        print(json.dumps({"op": "kv_topk_gather", "batch": batch, "n": k, "ms": ms}), flush=True)
        del scores, rows
    for batch, n in anchor_cases:
        if args.budget_s and time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: no host-loop timing from batch {batch}, N {n} on",
                  file=sys.stderr, flush=True)
            break
        att = torch.rand(batch, heads, tokens, generator=gen, device=device)
        feats = torch.rand(batch, tokens, width, generator=gen, device=device)
        ms = timed(lambda: acformer_select(att, n), device, args.iters, args.warmup)
        print(json.dumps({"op": "anchor_select", "batch": batch, "n": n, "ms": ms}), flush=True)
        ms = timed(lambda: acformer_select_gather(att, feats, n), device, args.iters, args.warmup)
        print(json.dumps({"op": "anchor_select_gather", "batch": batch, "n": n, "ms": ms}), flush=True)
        del att, feats


if __name__ == "__main__":
    main()
