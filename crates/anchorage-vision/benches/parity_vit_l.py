#!/usr/bin/env python3
"""Full-size parity check (not run in CI: writes a 1.2 GB checkpoint): a random ViT-L/14-336 CLIP
tower saved by transformers, run through `train inspect vision` and compared with transformers on
the same image. Exercises what the KB-sized fixtures cannot: 577 tokens (flex's tiled attention
path), 24 layers, a full-size safetensors file.

Run from the repository root after `cargo build`:
    /work/venv-ref/bin/python crates/anchorage-vision/benches/parity_vit_l.py [--aspect pad] [--keep DIR]

Versions: torch 2.15.0 (CPU), transformers 5.23.0 (the fixture generator's helpers are reused).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from safetensors.numpy import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures", "vision"))
import generate as g  # noqa: E402
from transformers import CLIPVisionModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aspect", default="pad", choices=["square", "pad"])
    ap.add_argument("--keep", default=None, help="folder to write the checkpoint into (default: a temp dir)")
    a = ap.parse_args()
    path = a.keep or tempfile.mkdtemp()
    os.makedirs(path, exist_ok=True)
    torch.manual_seed(5)
    cfg = g.vision_config(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                          num_hidden_layers=24, num_attention_heads=16)
    model = g.perturb(CLIPVisionModel(cfg).eval(), 105)
    g.save_vision_model(model, path)
    g.write_inspect(model, cfg, path, save_processor=False)
    out = os.path.join(path, "ours.safetensors")
    t = time.perf_counter()
    subprocess.run([os.path.join(ROOT, "target", "debug", "train"), "inspect", "vision", "--model", path,
                    "--image", os.path.join(ROOT, "tests", "fixtures", "vision", "image.png"),
                    "--aspect", a.aspect, "--out", out], check=True)
    secs = time.perf_counter() - t
    ours, theirs = load_file(out), load_file(os.path.join(path, f"inspect_{a.aspect}.safetensors"))
    assert sorted(ours) == sorted(theirs), (sorted(ours), sorted(theirs))
    diff = {k: float(np.abs(ours[k] - theirs[k]).max()) for k in theirs}
    worst_h = max(v for k, v in diff.items() if k.startswith("hidden_states"))
    worst_a = max(v for k, v in diff.items() if k.startswith("cls_attention"))
    print(f"train inspect vision: {secs:.1f} s (load + forward); max |diff| hidden {worst_h:.2e}, "
          f"cls attention {worst_a:.2e}, features {diff['features']:.2e}, pixels {diff['pixel_values']:.2e}")
    if not a.keep:
        shutil.rmtree(path)
    assert worst_h <= 1e-4 and worst_a <= 1e-4


if __name__ == "__main__":
    main()
