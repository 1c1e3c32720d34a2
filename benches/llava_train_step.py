#!/usr/bin/env python3
"""The reference side of `train bench step`: one LLaVA stage-1 training step in transformers.

LlavaForConditionalGeneration with random weights at the sizes of a preset (frozen vision tower and
LLM, trainable 2-layer GELU projector, AdamW, global-norm clipping at 1.0), on a synthetic batch of
the same shape as ours: `micro_batch` images and `text_len` caption tokens per sample after the
image tokens. Prints one JSON line with the median step time after the warm-up steps, samples/s,
tokens/s, peak CUDA memory (torch.cuda.max_memory_allocated) and MFU under the same FLOPs model as
`train bench step` (see docs/benchmarks.md).

    python benches/llava_train_step.py --preset llava-7b --micro-batch 16 --text-len 64 \
        --steps 12 --warmup 4 --device cuda --dtype bf16 --peak-tflops 989

Presets: `tiny` (anchorage's built-in tiny towers: CLIP 32 px / patch 4 / width 64 / 4 layers; Llama
width 64 / 2 layers / vocab 1024) and `llava-7b` (CLIP ViT-L/14-336 + a Llama-2-7B config). Or
`--towers DIR`: the configs of a `vision/` and an `llm/` Hugging Face folder, e.g. the demo's towers
(`train demo towers --out DIR`), so the step is timed at demo size beside

    train bench step recipes/bench/tiny_mlp2x_gelu.toml --set 'vision.model={ path = "DIR/vision" }' \
        --set 'llm.model={ path = "DIR/llm" }'
"""

import argparse
import json
import os
import statistics
import time

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration


def configs(preset):
    if preset == "tiny":
        vision = CLIPVisionConfig(image_size=32, patch_size=4, hidden_size=64, intermediate_size=256,
                                  num_hidden_layers=4, num_attention_heads=4, hidden_act="quick_gelu")
        text = LlamaConfig(vocab_size=1024, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5)
    elif preset == "llava-7b":
        vision = CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                                  num_hidden_layers=24, num_attention_heads=16, projection_dim=768,
                                  hidden_act="quick_gelu")
        text = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5,
                           max_position_embeddings=4096)
    else:
        raise SystemExit(f"unknown preset {preset}")
    return vision, text


def step_flops(vision, text, batch, text_len, select_layer=-2):
    """The FLOPs model shared with `train bench step` (multiply-adds x 2; frozen towers).

    vision forward up to the select layer + connector forward and backward (x3) + LLM forward and
    its backward to the inputs (x2, no weight gradients), each linear layer 2 * params * tokens and
    attention 4 * tokens^2 * width per layer (twice in the LLM's backward)."""
    patches = (vision.image_size // vision.patch_size) ** 2
    t_v = patches + 1
    d_v, m_v = vision.hidden_size, vision.intermediate_size
    layers_v = vision.num_hidden_layers + 1 + select_layer if select_layer < 0 else select_layer
    vis = batch * layers_v * (2 * (4 * d_v * d_v + 2 * d_v * m_v) * t_v + 4 * t_v * t_v * d_v)
    d = text.hidden_size
    conn_params = d_v * d + d + d * d + d
    conn = 3 * 2 * conn_params * patches * batch
    seq = 1 + patches + text_len
    head_dim = getattr(text, "head_dim", None) or d // text.num_attention_heads
    kv = text.num_key_value_heads * head_dim
    per_layer = 2 * (2 * d * d + 2 * d * kv + 3 * d * text.intermediate_size) * seq + 4 * seq * seq * d
    llm = batch * (text.num_hidden_layers * per_layer + 2 * d * text.vocab_size * seq)
    return vis + conn + 2 * llm


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="tiny")
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--text-len", type=int, default=32)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--peak-tflops", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--towers", default=None, help="folder with vision/ and llm/ Hugging Face configs (overrides --preset)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.towers:
        vision = CLIPVisionConfig.from_pretrained(os.path.join(a.towers, "vision"))
        text = LlamaConfig.from_pretrained(os.path.join(a.towers, "llm"))
        a.preset = f"towers:{a.towers}"
    else:
        vision, text = configs(a.preset)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=text.vocab_size - 1,
                         projector_hidden_act="gelu", vision_feature_layer=-2,
                         vision_feature_select_strategy="default")
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    # Built on the device: at 7B a host-side f32 build would need 28 GB of host memory and minutes
    # of CPU-side random initialisation before the copy.
    with torch.device(a.device):
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.to(dtype)
    model.model.language_model.to(dtype)
    model.lm_head.to(dtype)
    for name, param in model.named_parameters():
        param.requires_grad = "multi_modal_projector" in name
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(trainable, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    patches = (vision.image_size // vision.patch_size) ** 2
    b = a.micro_batch
    ids = torch.randint(3, text.vocab_size - 2, (b, 1 + patches + a.text_len), device=a.device)
    ids[:, 1:1 + patches] = config.image_token_index
    labels = ids.clone()
    labels[:, :1 + patches] = -100
    pixels = torch.randn(b, 3, vision.image_size, vision.image_size, device=a.device, dtype=dtype)

    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    if a.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(a.steps):
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device_type=a.device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            out = model(input_ids=ids, pixel_values=pixels, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    flops = step_flops(vision, text, b, a.text_len)
    result = {
        "impl": "transformers",
        "preset": a.preset,
        "connector": "mlp2x_gelu",
        "micro_batch": b,
        "seq_len": ids.shape[1],
        "step_s": step,
        "samples_per_s": b / step,
        "tokens_per_s": b * ids.shape[1] / step,
        "flops_per_step": flops,
        "mfu": flops / step / (a.peak_tflops * 1e12) if a.peak_tflops else None,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if a.device.startswith("cuda") else None,
        "loss": out.loss.item(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
