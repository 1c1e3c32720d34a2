#!/usr/bin/env python3
"""Vision tower forward, side by side in one run: anchorage (burn flex, CPU) vs transformers
(torch CPU), same architecture, random weights, same batch, every layer run (hidden_states[-1]).

Run from the repository root (builds the example with the dev profile first):
    /work/venv-ref/bin/python crates/anchorage-vision/benches/vision_forward.py [--batch 1 2 4] [--iters 5] \
        [--dtype f32|bf16] [--preset vit_b16_224|vit_l14_336] [--parallel] [--torch-threads N] [--rounds 3]
Each measurement is the median of `iters` timed runs after one warm-up; implementations alternate
within each round and the table reports the median over rounds (the machine may be shared).

Versions: torch 2.15.0 (CPU), transformers 5.23.0; torch uses as many threads as cores
(torch.get_num_threads() is printed), flex uses its own thread pool over all cores.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

PRESETS = {
    "vit_b16_224": dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072,
                        num_hidden_layers=12, num_attention_heads=12),
    "vit_l14_336": dict(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                        num_hidden_layers=24, num_attention_heads=16),
}


def torch_forward(preset, batch, iters, dtype):
    cfg = CLIPVisionConfig(**PRESETS[preset])
    model = CLIPVisionModel(cfg).eval()
    tdtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    model = model.to(tdtype)
    s = cfg.image_size
    x = torch.randn(batch, 3, s, s).to(tdtype)
    times = []
    with torch.inference_mode():
        model(pixel_values=x)  # warm-up
        for _ in range(iters):
            t = time.perf_counter()
            model(pixel_values=x).last_hidden_state.float().sum().item()
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"impl": "transformers", "attn": model.config._attn_implementation,
            "median_ms": times[len(times) // 2], "min_ms": times[0]}


def cargo_args(parallel):
    return ["-p", "anchorage-vision", "--example", "vision_forward"] + (
        ["--features", "bench-flex-parallel"] if parallel else [])


def build(parallel, dest):
    """Builds the example and copies the binary away, so timed runs never wait on cargo's lock."""
    out = subprocess.run(["cargo", "build", "-q", "--message-format=json"] + cargo_args(parallel),
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            shutil.copy(msg["executable"], dest)
            return dest
    raise RuntimeError("no executable built")


def ours(binary, preset, batch, iters, dtype):
    cmd = [binary, str(batch), str(iters), dtype, preset]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--preset", default="vit_b16_224", choices=list(PRESETS))
    ap.add_argument("--parallel", action="store_true",
                    help="also time flex with rayon + SIMD (crate feature bench-flex-parallel)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads (default: torch's choice, one per core)")
    a = ap.parse_args()
    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    variants = [False, True] if a.parallel else [False]
    tmp = tempfile.mkdtemp()
    binaries = [build(p, os.path.join(tmp, f"vision_forward_{int(p)}")) for p in variants]
    print(f"preset {a.preset}, dtype {a.dtype}, iters {a.iters}, rounds {a.rounds}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    names = ["flex as built (no rayon/simd)"] + (["flex rayon+simd"] if a.parallel else []) + ["transformers"]
    results = {(b, n): [] for b in a.batch for n in names}
    for r in range(a.rounds):
        for b in a.batch:
            for exe, n in zip(binaries, names):
                results[(b, n)].append(ours(exe, a.preset, b, a.iters, a.dtype)["median_ms"])
            t = torch_forward(a.preset, b, a.iters, a.dtype)
            results[(b, "transformers")].append(t["median_ms"])
            print(f"round {r + 1} batch {b}: " + ", ".join(f"{n} {results[(b, n)][-1]:.0f} ms" for n in names)
                  + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    head = "| batch | " + " | ".join(f"{n} ms" for n in names) + " | " + " | ".join(
        f"{n} / transformers" for n in names[:-1]) + " |"
    print()
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for b in a.batch:
        tm = med(results[(b, "transformers")])
        cells = " | ".join(f"{med(results[(b, n)]):.0f}" for n in names)
        ratios = []
        for n in names[:-1]:
            per_round = [x / y for x, y in zip(results[(b, n)], results[(b, "transformers")])]
            ratios.append(f"{med(results[(b, n)]) / tm:.2f}x (rounds {min(per_round):.2f}–{max(per_round):.2f})")
        print(f"| {b} | {cells} | " + " | ".join(ratios) + " |", flush=True)

if __name__ == "__main__":
    main()
