#!/usr/bin/env python3
"""Writes gpu-check-results.json and gpu-check-results.md from run.sh's part folders.

Each part folder holds `command`, `rc` (an exit status or `skipped`), `seconds`, `timeout`, `log`
(stdout and stderr) and `mem` (GPU memory used in MiB, polled by nvidia-smi while it ran). Exits 0
when every part passed, 1 otherwise. Standard library only (it runs on the GPU machine).
"""

import argparse
import datetime
import json
import os
import re
import sys

ORDER = ["parity", "allreduce", "matmul", "matmul_kernels", "kernels", "attention_memory", "step_mlp", "step_mlp_cublas",
         "step_anchor_former", "step_anchor_former_cublas", "step_transformers", "vision_tower", "vision_tower_cublas",
         "backend_parity", "backend_parity_cublas"]
TITLES = {
    "parity": "CUDA kernel parity tests",
    "allreduce": "NCCL all-reduce, every GPU (sums checked)",
    "matmul": "matrix products at the 7B step's shapes (burn, cuBLAS and PyTorch beside)",
    "matmul_kernels": "CubeCL's matmul kernels at the 7B step's shapes (opt-in part)",
    "kernels": "kernel benchmark, real sizes",
    "attention_memory": "LLM attention under autodiff, one 7B layer: memory held for the backward pass",
    "step_mlp": "train bench step, 7B, MLP (anchorage)",
    "step_mlp_cublas": "train bench step, 7B, MLP (anchorage, products on cuBLAS)",
    "step_anchor_former": "train bench step, 7B, Anchor Former (anchorage)",
    "step_anchor_former_cublas": "train bench step, 7B, Anchor Former (anchorage, products on cuBLAS; opt-in part)",
    "step_transformers": "training step, 7B, MLP (transformers)",
    "vision_tower": "vision tower ViT-L/14-336 (step with a tiny LLM)",
    "vision_tower_cublas": "vision tower ViT-L/14-336, products on cuBLAS (opt-in part)",
    "backend_parity": "stage 2 and answers on CUDA against the CPU (demo size, f32)",
    "backend_parity_cublas": "stage 2 and answers on CUDA with cuBLAS against the CPU (opt-in part)",
}


def read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def last_json(log):
    """The last line of the log that is a JSON object (the step benches print one)."""
    for line in reversed(log.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def parity_result(log):
    m = re.findall(r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored", log)
    if not m:
        return None, "no test summary"
    status, passed, failed, ignored = m[-1]
    data = {"passed": int(passed), "failed": int(failed), "ignored": int(ignored)}
    if int(passed) == 0 and int(failed) == 0:
        return data, "no test ran"
    return data, f"{passed} passed, {failed} failed"


def kernels_result(log):
    rows = [line.strip() for line in log.splitlines() if line.strip().startswith("|")]
    header = next((line.strip() for line in log.splitlines() if line.startswith("backend:")), "")
    data = {"backend_line": header, "table": rows}
    body = [r for r in rows[2:]] if len(rows) > 2 else []
    return data, f"{len(body)} rows (table below)" if body else "no table"


def step_result(log, mem_peak_mib):
    j = last_json(log)
    if j is None:
        return None, "no JSON line"
    parts = [f"{j['step_s']:.3f} s/step", f"{j['samples_per_s']:.2f} samples/s", f"{j['tokens_per_s']:.0f} tokens/s"]
    if j.get("mfu") is not None:
        parts.append(f"MFU {100 * j['mfu']:.1f}%")
    if j.get("peak_mem_gib") is not None:
        parts.append(f"peak allocated {j['peak_mem_gib']:.1f} GiB")
    if mem_peak_mib is not None:
        parts.append(f"peak used {mem_peak_mib / 1024:.1f} GiB (nvidia-smi)")
    if j.get("matmul") == "cublas":
        products, fallbacks = j.get("cublas_products") or 0, j.get("cublas_fallbacks") or 0
        if products == 0:
            # Every product fell back to burn's kernel: the time is not cuBLAS's.
            return None, f"no product ran on cuBLAS ({fallbacks} fell back to burn's; the log says why)"
        parts.append(f"{products} products on cuBLAS, {fallbacks} fell back to burn's")
    return j, ", ".join(parts)


def allreduce_result(log):
    j = last_json(log)
    if j is None or j.get("bench") != "allreduce":
        return None, "no JSON line"
    summary = (f"{j['ranks']} rank(s), {j['elements']} {j['dtype']} elements: sums exact, "
               f"NCCL {1e3 * j['nccl_s']:.2f} ms ("
               + (f"bus {j['nccl_busbw_gbs']:.1f} GB/s" if j["ranks"] > 1 else "one rank: a copy, no bandwidth")
               + "), "
               f"through the host {1e3 * j['host_s']:.2f} ms ({j['host_over_nccl']:.1f}x)")
    if "buckets_pipelined_s" in j:
        summary += (f"; as {j['buckets']} buckets (sums exact): launched back to back "
                    f"{1e3 * j['buckets_pipelined_s']:.2f} ms, one at a time "
                    f"{1e3 * j['buckets_one_by_one_s']:.2f} ms ({j['one_by_one_over_pipelined']:.2f}x)")
    return j, summary


def matmul_result(log):
    j = last_json(log)
    if j is None or j.get("bench") != "matmul":
        return None, "no JSON line"

    has_cublas = any("cublas" in p.get("kernels", {}) for p in j["products"])

    def one(p):
        s = f"{p['name']} {p['batch']}x{p['m']}x{p['k']}x{p['n']} {p['tflops']:.1f}"
        if has_cublas:
            c = p.get("kernels", {}).get("cublas", {})
            if c.get("wrong"):
                s += " / cuBLAS WRONG"
            elif "tflops" in c:
                s += f" / {c['tflops']:.1f}"
            else:
                s += " / cuBLAS did not run"
        if p.get("torch_tflops") is not None:
            s += f" vs {p['torch_tflops']:.1f}"
        return s

    summary = (f"{j['dtype']}, {j['checked_entries']} sampled entries checked against f64; all products "
               f"{j['tflops']:.1f} TFLOP/s")
    if j.get("torch_tflops") is not None:
        summary += f", PyTorch {j['torch_tflops']:.1f} (ours take {j['ours_over_torch']:.1f}x its time)"
    summary += ("; TFLOP/s burn" + (" / cuBLAS (ours)" if has_cublas else "")
                + (" vs PyTorch" if j.get("torch_tflops") is not None else "") + ": ")
    return j, summary + "; ".join(one(p) for p in j["products"])


def matmul_kernels_result(log):
    j = last_json(log)
    if j is None or j.get("bench") != "matmul" or not any(p.get("kernels") for p in j["products"]):
        return None, "no JSON line with kernels"
    rows = []
    for p in j["products"]:
        ran = {k: v for k, v in p["kernels"].items() if "tflops" in v and not v.get("wrong")}
        wrong = sorted(k for k, v in p["kernels"].items() if v.get("wrong"))
        row = f"{p['name']}: burn {p['tflops']:.1f}"
        if ran:
            best = max(ran, key=lambda k: ran[k]["tflops"])
            row += f", best {best} {ran[best]['tflops']:.1f}"
        row += f" ({len(ran)} of {len(p['kernels'])} kernels ran right"
        row += f"; wrong: {', '.join(wrong)})" if wrong else ")"
        rows.append(row)
    return j, f"TFLOP/s, {j['dtype']}: " + "; ".join(rows)


def backend_parity_result(log):
    j = last_json(log)
    if j is None or j.get("bench") != "parity":
        return None, "no JSON line"
    summary = (f"{len(j['runs'])} stage-2 runs: losses within {j['max_rel_diff']:.1e} (relative) of flex's, "
               f"tolerance {j['tolerance']:g}; answers {j['answers_same']} of {j['answers']} the same")
    if "weights_rel_diff" in j:
        summary += f"; trained connectors {100 * j['weights_rel_diff']:.2f}% of their update apart"
    return j, summary


def attention_result(log):
    j = last_json(log)
    if j is None or j.get("bench") != "recomputed_attention":
        return None, "no JSON line"
    b, h, l, d = j["shape"]
    summary = (f"[{b}, {h}, {l}, {d}] {j['dtype']} (one [B, H, L, L] tensor {j['scores_mib']:.1f} MiB): "
               f"burn's recorded op holds {j['held_mib_burn']:.1f} MiB, recomputed_attention "
               f"{j['held_mib_recomputed']:.1f} MiB ({j['held_mib_burn'] / max(j['held_mib_recomputed'], 1e-9):.1f}x less); "
               f"forward + backward {j['ms_burn']:.2f} ms vs {j['ms_recomputed']:.2f} ms "
               f"({j['ms_recomputed'] / max(j['ms_burn'], 1e-9):.2f}x)")
    return j, summary


def mem_peak(text):
    values = [int(v) for v in re.findall(r"^\s*(\d+)\s*$", text, re.M)]
    return max(values) if values else None


def one_part(folder, name):
    d = os.path.join(folder, name)
    rc_text = read(os.path.join(d, "rc")).strip()
    log = read(os.path.join(d, "log"))
    seconds = read(os.path.join(d, "seconds")).strip()
    timeout = read(os.path.join(d, "timeout")).strip()
    peak = mem_peak(read(os.path.join(d, "mem")))
    entry = {
        "part": name,
        "title": TITLES.get(name, name),
        "command": read(os.path.join(d, "command")).strip(),
        "seconds": int(seconds) if seconds.isdigit() else None,
        "timeout_s": int(timeout) if timeout.isdigit() else None,
        "gpu_mem_peak_mib": peak,
    }
    if rc_text == "skipped":
        entry.update(status="skipped", ok=False, summary="skipped: time budget spent")
        return entry
    rc = int(rc_text) if rc_text.lstrip("-").isdigit() else None
    entry["rc"] = rc
    if name == "parity":
        data, summary = parity_result(log)
    elif name == "kernels":
        data, summary = kernels_result(log)
    elif name == "allreduce":
        data, summary = allreduce_result(log)
    elif name == "matmul":
        data, summary = matmul_result(log)
    elif name == "matmul_kernels":
        data, summary = matmul_kernels_result(log)
    elif name in ("backend_parity", "backend_parity_cublas"):
        data, summary = backend_parity_result(log)
    elif name == "attention_memory":
        data, summary = attention_result(log)
    else:
        data, summary = step_result(log, peak)
    entry["data"] = data
    if rc == 0 and data is not None and summary not in ("no test ran", "no table"):
        entry.update(status="ok", ok=True, summary=summary)
    else:
        if rc in (124, 137):
            why = f"timed out after {timeout} s"
        elif rc == 0:
            why = f"exit 0 but {summary}"
        else:
            why = f"failed (exit {rc})"
        entry.update(status="failed", ok=False, summary=f"{why}; {summary}" if data is not None else why)
    entry["log_tail"] = log.splitlines()[-(15 if entry["ok"] else 60):]
    return entry


def markdown(result):
    when = result["date"]
    dev = result["device"]
    lines = [
        f"### GPU check (`gpu-check/run.sh`), {when[:10]}",
        "",
        f"- Device: {dev['name']} ({dev['memory']}, driver {dev['driver']}); "
        f"{result['seconds']} s for the whole check.",
        f"- Bundle: {', '.join(f'{k} {v}' for k, v in result['build'].items())}.",
        f"- Binaries, CUDA libraries and headers: {'; '.join(result['libraries'])}.",
        "",
        "| part | command | result | device | date |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in result["parts"]:
        status = "" if p["ok"] else f"**{p['status']}**: "
        secs = f" ({p['seconds']} s)" if p.get("seconds") is not None else ""
        cmd = p["command"].replace("|", "\\|")
        summary = p["summary"].replace("|", "\\|")
        lines.append(f"| {p['title']} | `{cmd}` | {status}{summary}{secs} | {dev['name']} | {when[:10]} |")
    kernels = next((p for p in result["parts"] if p["part"] == "kernels" and p.get("data")), None)
    if kernels and kernels["data"]["table"]:
        lines += ["", f"Kernel benchmark ({kernels['data']['backend_line']}):", ""] + kernels["data"]["table"]
    failed = [p for p in result["parts"] if not p["ok"]]
    for p in failed:
        lines += ["", f"{p['title']}: {p['summary']}; last lines of its output:", "", "```"]
        lines += p.get("log_tail", [])[-30:] + ["```"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", required=True)
    ap.add_argument("--libs", required=True)
    ap.add_argument("--build-info", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--memory", default="")
    ap.add_argument("--driver", default="")
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    names = [n for n in ORDER if os.path.isdir(os.path.join(a.parts, n))]
    build = dict(line.split("=", 1) for line in read(a.build_info).splitlines() if "=" in line)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": {"name": a.device, "memory": a.memory, "driver": a.driver},
        "seconds": a.seconds,
        "build": build,
        "libraries": [line for line in read(a.libs).splitlines() if line.strip()],
        "parts": [one_part(a.parts, n) for n in names],
    }
    result["ok"] = bool(result["parts"]) and all(p["ok"] for p in result["parts"])
    with open(os.path.join(a.out, "gpu-check-results.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(a.out, "gpu-check-results.md"), "w") as f:
        f.write(markdown(result))
    for p in result["parts"]:
        print(f"  {p['part']:20} {p['status']:8} {p['summary']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
