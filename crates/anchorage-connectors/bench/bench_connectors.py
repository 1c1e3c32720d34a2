#!/usr/bin/env python3
"""Side-by-side CPU timing of the connectors: anchorage (burn flex) vs the PyTorch reference modules.

Versions: torch 2.15.0 (CPU), Python 3.11. Run from the repository root after building the example:
  cargo build -p anchorage-connectors --example bench_connectors
  /work/venv-ref/bin/python crates/anchorage-connectors/bench/bench_connectors.py [BATCH] [REPS]
The PyTorch modules are the reference connectors of tests/fixtures/connectors/generate.py (each cites
its upstream file), at LLaVA-1.5 sizes: CLIP ViT-L/14-336 (1024 wide, 576 patches + CLS) into a 7B
LLM (4096 wide). Anchor Former times include AcFormer's host-loop anchor selection.
"""
import importlib.util
import json
import os
import subprocess
import sys
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
spec = importlib.util.spec_from_file_location("gen", os.path.join(ROOT, "tests/fixtures/connectors/generate.py"))
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)


def torch_cases():
    pr = torch.nn.Sequential(gen.PerceiverResampler(1024, 6, 64, 8, 144, 4, kv_latents=False), torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096))
    return [
        ("mlp2x_gelu", gen.llava_mlp(1024, 4096, 2), 576, False),
        ("c_abstractor", gen.CAbstractor(1024, 1024, 4096, 576, 144, 3, 2, True, False), 576, False),
        ("resampler", pr, 577, False),
        ("anchor_former_145", gen.AnchorFormer(1024, 4096, 6, 64, 8, 4, 144), 577, True),
        ("anchor_former_257", gen.AnchorFormer(1024, 4096, 6, 64, 8, 4, 256), 577, True),
    ]


def time_torch(module, tokens, anchors, batch, reps, backward):
    x = torch.randn(batch, tokens, 1024)
    att = torch.rand(batch, 16, tokens).softmax(-1)
    run = (lambda: module(x, att)) if anchors else (lambda: module(x))

    def once():
        if backward:
            run().sum().backward()
        else:
            with torch.no_grad():
                run()

    once()
    t = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - t) * 1000 / reps


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(os.cpu_count())
    exe = os.path.join(ROOT, "target/debug/examples/bench_connectors")
    print(f"load average before: {os.getloadavg()}")
    print(f"batch {batch}, {reps} reps, torch {torch.__version__} ({torch.get_num_threads()} threads), anchorage flex (dev profile)")
    print(f"{'connector':<20}{'fwd torch':>11}{'fwd ours':>10}{'ratio':>8}{'f+b torch':>11}{'f+b ours':>10}{'ratio':>8}")
    # Alternate the two sides connector by connector, so that load from other work on the machine
    # hits both alike.
    for name, module, tokens, anchors in torch_cases():
        out = subprocess.run([exe, str(batch), str(reps), name], check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        f = time_torch(module, tokens, anchors, batch, reps, False)
        fb = time_torch(module, tokens, anchors, batch, reps, True)
        print(f"{name:<20}{f:>9.0f}ms{r['forward_ms']:>8.0f}ms{r['forward_ms'] / f:>7.2f}x"
              f"{fb:>9.0f}ms{r['forward_backward_ms']:>8.0f}ms{r['forward_backward_ms'] / fb:>7.2f}x")
    print("ratio = anchorage time / PyTorch time (below 1: anchorage is faster)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
