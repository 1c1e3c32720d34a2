"""Side-by-side CPU benchmark: forward + backward w.r.t. the input embeddings through a frozen
LLM (connector training's cost), anchorage (burn Autodiff<Flex>) vs transformers (PyTorch eager,
sdpa attention), same random checkpoint, same inputs' shapes, one run.

Versions: torch 2.15.0 (CPU), transformers 5.23.0. Run from the repository root:

    /work/venv-ref/bin/python crates/anchorage-llm/bench/bench_llm.py [--layers 8 --hidden 512 --seq 256 --batch 2]

Builds the Rust side with `cargo build -p anchorage-llm --example bench_fwd_bwd` (dev profile:
dependencies optimised) and prints both timings, the ratio, and both gradient norms (same
checkpoint, same loss `mean(logits^2)`; inputs are drawn by each side's RNG, so the norms agree
only in magnitude).
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=8)
p.add_argument("--hidden", type=int, default=512)
p.add_argument("--heads", type=int, default=8)
p.add_argument("--kv-heads", type=int, default=8)
p.add_argument("--intermediate", type=int, default=1376)
p.add_argument("--vocab", type=int, default=8192)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--batch", type=int, default=2)
p.add_argument("--iters", type=int, default=3)
p.add_argument("--rounds", type=int, default=3, help="alternate the two sides this many times (shared machines are noisy)")
p.add_argument("--threads", type=int, default=os.cpu_count())
a = p.parse_args()
torch.set_num_threads(a.threads)

root = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
subprocess.run(["cargo", "build", "-q", "-p", "anchorage-llm", "--example", "bench_fwd_bwd"], cwd=root, check=True)
exe = os.path.join(root, "target/debug/examples/bench_fwd_bwd")

torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                  max_position_embeddings=4096, tie_word_embeddings=False)
model = LlamaForCausalLM(cfg).eval()
for q in model.parameters():
    q.requires_grad_(False)

def torch_median(x0):
    times = []
    for _ in range(a.iters + 1):
        x = x0.clone().requires_grad_(True)
        t = time.perf_counter()
        logits = model(inputs_embeds=x).logits
        loss = logits.square().mean()
        loss.backward()
        times.append(time.perf_counter() - t)
    times = sorted(times[1:])
    return times[len(times) // 2], x.grad.norm().item()


with tempfile.TemporaryDirectory() as d:
    model.save_pretrained(d)
    x0 = torch.randn(a.batch, a.seq, a.hidden)
    rounds = []
    for r in range(a.rounds):
        torch_s, gnorm = torch_median(x0)
        out = subprocess.run([exe, d, str(a.batch), str(a.seq), str(a.iters)], capture_output=True, text=True, check=True)
        ours = json.loads(out.stdout.strip().splitlines()[-1])
        rounds.append((torch_s, ours["median_s"], ours["grad_norm"]))
        print(f"round {r}: transformers {torch_s:.3f} s, anchorage {ours['median_s']:.3f} s, "
              f"ratio {ours['median_s'] / torch_s:.2f}x", flush=True)

ratios = sorted(o / t for t, o, _ in rounds)
torch_best = min(t for t, _, _ in rounds)
ours_best = min(o for _, o, _ in rounds)
print(f"config: layers={a.layers} hidden={a.hidden} heads={a.heads}/{a.kv_heads} inter={a.intermediate} "
      f"vocab={a.vocab} batch={a.batch} seq={a.seq} iters={a.iters} rounds={a.rounds} threads={a.threads}")
print(f"transformers (torch {torch.__version__}): best round median {torch_best:.3f} s  grad_norm {gnorm:.4e}")
print(f"anchorage (burn Autodiff<Flex>):        best round median {ours_best:.3f} s  grad_norm {rounds[-1][2]:.4e}")
print(f"ratio anchorage / transformers: median over rounds {ratios[len(ratios) // 2]:.2f}x, "
      f"best vs best {ours_best / torch_best:.2f}x")
