#!/usr/bin/env python3
"""Anchor selection on the CPU: anchorage's batched reference twin (burn flex) vs AcFormer's host loop.

Versions: torch 2.15.0 (CPU), Python 3.11. Run from the repository root after building the example:
  cargo build -p anchorage-connectors --example bench_anchors
  /work/venv-ref/bin/python crates/anchorage-connectors/bench/bench_anchors.py
AcFormer's loop (liuhaogeng/Anchor-Former clip_encoder.py l.42-58) is the transcription in
tests/fixtures/connectors/generate.py, timed on CPU tensors as upstream runs it (`.cpu().tolist()`).
Sides alternate per size. H 16, T 577 (CLIP ViT-L/14-336).
"""
import importlib.util
import json
import os
import subprocess
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
spec = importlib.util.spec_from_file_location("gen", os.path.join(ROOT, "tests/fixtures/connectors/generate.py"))
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)


def main():
    exe = os.path.join(ROOT, "target/debug/examples/bench_anchors")
    print(f"load average before: {os.getloadavg()}")
    print(f"{'B':>4}{'N':>5}{'host loop':>12}{'ours':>10}{'speed-up':>10}")
    for batch in (32, 128):
        for count in (144, 256):
            reps = 3
            r = json.loads(subprocess.run([exe, str(batch), str(count), str(reps)], check=True, capture_output=True, text=True).stdout)
            att = (torch.randn(batch, 16, 577) * 2).softmax(-1)
            gen.acformer_anchors(att, count)
            t = time.perf_counter()
            for _ in range(reps):
                gen.acformer_anchors(att, count)
            host = (time.perf_counter() - t) * 1000 / reps
            print(f"{batch:>4}{count:>5}{host:>10.1f}ms{r['ms']:>8.1f}ms{host / r['ms']:>9.1f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
