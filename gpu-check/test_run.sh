#!/usr/bin/env bash
# CPU test of run.sh's orchestration on a fake machine: a fake nvidia-smi (an H100), fake binaries
# standing in for the three prebuilt executables (xz-compressed shell scripts printing what the real
# ones print), and a python3 wrapper that fakes benches/llava_train_step.py. One part fails and one
# hangs past its timeout; the test checks that every part still runs and that the JSON and Markdown
# report each part's result. Also checks the no-GPU exit. Run: gpu-check/test_run.sh
# shellcheck disable=SC2016 # the fakes' scripts and the expected Markdown are literal text
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# No nvidia-smi on PATH: exit 2 with the clear message.
set +e
msg=$(PATH=/usr/bin:/bin bash "$here/run.sh" 2>&1)
rc=$?
set -e
[[ $rc == 2 ]] || fail "no-GPU exit status $rc"
grep -q "NO NVIDIA GPU" <<<"$msg" || fail "no-GPU message: $msg"
# nvidia-smi present but failing (driver not loaded): also exit 2.
mkdir -p "$tmp/badsmi"
printf '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2\nexit 9\n' >"$tmp/badsmi/nvidia-smi"
chmod +x "$tmp/badsmi/nvidia-smi"
set +e
msg=$(PATH="$tmp/badsmi:/usr/bin:/bin" bash "$here/run.sh" 2>&1)
rc=$?
set -e
[[ $rc == 2 ]] || fail "failing nvidia-smi: exit status $rc"
grep -q "nvidia-smi failed: NVIDIA-SMI has failed" <<<"$msg" || fail "failing nvidia-smi message: $msg"

# The fake bundle.
b="$tmp/bundle/gpu-check"
mkdir -p "$b/bin" "$tmp/fakebin" "$tmp/out"
cp "$here/run.sh" "$here/libs.sh" "$here/report.py" "$here/nvrtc_check.py" "$b/"
# The bundle's CUDA headers (fetch_cuda_headers.py's layout), and a machine whose CUDA headers
# (CUDA_PATH) lack crt/mma.h and CCCL, as PyTorch's pip wheels do.
mkdir -p "$tmp/headers/12/include/crt" "$tmp/headers/12/include/cuda" "$tmp/headers/12/include/nv" "$tmp/machine/include/cooperative_groups"
touch "$tmp/headers/12/include/crt/mma.h" "$tmp/headers/12/include/cuda/pipeline" "$tmp/headers/12/include/cuda/barrier" \
    "$tmp/headers/12/include/cuda/ptx" "$tmp/headers/12/include/nv/target"
tar -C "$tmp/headers" -cJf "$b/cuda-headers.tar.xz" .
for h in cuda_runtime.h cuda_fp16.h cuda_bf16.h cuda_fp8.h mma.h cooperative_groups.h cooperative_groups/memcpy_async.h; do
    touch "$tmp/machine/include/$h"
done
echo '#define CUDART_VERSION 12080' >"$tmp/machine/include/cuda_runtime_api.h"
printf 'commit=abc123\nbuilt=2026-12-01T00:00:00Z\n' >"$b/BUILD_INFO"
cat >"$tmp/fakebin/nvidia-smi" <<'EOF'
#!/bin/sh
case "$*" in
    *memory.used*) while true; do echo 40960; sleep 0.1; done ;;
    *compute_cap*) echo "9.0" ;;
    *) echo "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15" ;;
esac
EOF
fake() { printf '#!/bin/sh\n%s\n' "$2" >"$b/bin/$1"; xz "$b/bin/$1"; }
fake kernels-tests '[ "$ANCHORAGE_REQUIRE_CUDA" = 1 ] || { echo "REQUIRE not set"; exit 3; }; echo "running 9 tests"; echo "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 4.2s"'
fake recomputed_attention 'case "$*" in *"--batch 8 "*) ;; *) echo "expected --batch 8: $*"; exit 3 ;; esac; echo "| path | held |"; echo "{\"bench\": \"recomputed_attention\", \"shape\": [8, 32, 641, 128], \"dtype\": \"BF16\", \"scores_mib\": 200.6, \"held_mib_burn\": 651.8, \"held_mib_recomputed\": 40.1, \"ms_burn\": 9.5, \"ms_recomputed\": 10.2}"'
fake anchor_gather 'echo "backend: cuda (CudaDevice 0); kernels used: true"; echo "| op | B | N or k | kernel ms |"; echo "| --- | --- | --- | --- |"; echo "| anchor_select (H 16, T 577) | 32 | 144 | 0.05 |"'
fake train 'case "$1" in --version) echo "train 0.1.0"; exit 0 ;; esac
case "$2" in
  parity) echo "{\"bench\": \"parity\", \"backend\": \"cuda\", \"device\": 0, \"runs\": [{}, {}, {}, {}, {}], \"max_rel_diff\": 0.00002, \"tolerance\": 0.001, \"weights_rel_diff\": 0.0055, \"weights_tolerance\": 0.1, \"answers\": 16, \"answers_same\": 16, \"ok\": true}"; exit 0 ;;
  matmul) case "$*" in *"--backend cuda --dtype bf16 --iters 5 --warmup 1 --kernels all --peak-tflops 989"*)
      echo "{\"bench\": \"matmul\", \"dtype\": \"bf16\", \"products\": [{\"name\": \"lm head\", \"tflops\": 40.0, \"kernels\": {\"auto\": {\"tflops\": 40.0, \"wrong\": null}, \"double_tma_mma\": {\"tflops\": 610.5, \"wrong\": null}, \"simple_unit\": {\"tflops\": 900.0, \"wrong\": \"entry [0, 0, 0] is 1\"}, \"simple_tma_mma\": {\"error\": \"Unavailable\"}}}]}"; exit 0 ;; esac
    case "$*" in *"--backend cuda --dtype bf16 --kernels cublas --torch-python "*"--torch-script benches/matmul.py --peak-tflops 989"*) ;; *) echo "unexpected: $*"; exit 3 ;; esac
    echo "{\"bench\": \"matmul\", \"backend\": \"cuda\", \"dtype\": \"bf16\", \"checked_entries\": 32, \"tflops\": 40.0, \"torch_tflops\": 600.0, \"ours_over_torch\": 15.0, \"products\": [{\"name\": \"llm gate/up projection\", \"batch\": 1, \"m\": 10256, \"k\": 4096, \"n\": 11008, \"tflops\": 41.5, \"torch_tflops\": 650.25, \"kernels\": {\"cublas\": {\"tflops\": 640.0, \"wrong\": null}}}, {\"name\": \"attention p v\", \"batch\": 512, \"m\": 641, \"k\": 641, \"n\": 128, \"tflops\": 8.25, \"torch_tflops\": null, \"kernels\": {\"cublas\": {\"error\": \"cublasGemmStridedBatchedEx failed\"}}}]}"; exit 0 ;;
  allreduce) echo "{\"bench\": \"allreduce\", \"devices\": [0], \"ranks\": 1, \"elements\": 33554432, \"dtype\": \"f32\", \"sums_exact\": true, \"nccl_s\": 0.0004, \"host_s\": 0.05, \"host_over_nccl\": 125.0, \"nccl_algbw_gbs\": 335.5, \"nccl_busbw_gbs\": 0.0, \"buckets\": 4, \"buckets_pipelined_s\": 0.0005, \"buckets_one_by_one_s\": 0.0008, \"one_by_one_over_pipelined\": 1.6}"; exit 0 ;;
esac
case "$3" in
  *anchor_former*) echo "Error: out of memory" >&2; exit 1 ;;
esac
for a in "$@"; do case "$a" in *tiny*) sleep 30 ;; esac; done
sleep 1 # long enough for the memory poller (every 0.1 s) to record a sample on a loaded machine
case "$*" in *cublas*) echo "{\"impl\": \"anchorage\", \"matmul\": \"cublas\", \"step_s\": 0.9, \"samples_per_s\": 17.8, \"tokens_per_s\": 11396, \"mfu\": 0.31, \"loss\": 10.4, \"cublas_products\": 3584, \"cublas_fallbacks\": 0}"; exit 0 ;; esac
echo "{\"impl\": \"anchorage\", \"step_s\": 1.5, \"samples_per_s\": 10.67, \"tokens_per_s\": 6837, \"mfu\": 0.19, \"loss\": 10.4}"'
real_python=$(command -v python3)
cat >"$tmp/fakebin/python3" <<EOF
#!/bin/sh
if [ "\$1" = benches/llava_train_step.py ]; then
    echo '{"impl": "transformers", "step_s": 0.75, "samples_per_s": 21.3, "tokens_per_s": 13675, "mfu": 0.38, "peak_mem_gib": 52.5}'
    exit 0
fi
exec "$real_python" "\$@"
EOF
chmod +x "$tmp/fakebin/"*

# The vision-tower part hangs (sleep 30) and gets only what is left of a 35 s budget... so the
# budget is set to leave it under 15 s: it is skipped, or times out. Either way it is not ok.
set +e
(cd "$tmp/out" && PATH="$tmp/fakebin:$PATH" CUDA_PATH="$tmp/machine" GPU_CHECK_BUDGET_S=25 bash "$b/run.sh") >"$tmp/run.log" 2>&1
rc=$?
set -e
cat "$tmp/run.log"
[[ $rc == 1 ]] || fail "exit status $rc with a failed part (expected 1)"
json="$tmp/out/gpu-check-results.json"
[[ -f "$json" && -f "$tmp/out/gpu-check-results.md" ]] || fail "no results files"
# Every part's whole log travels back beside the results.
# (Read whole before grep: `grep -q` stops early, and tar's SIGPIPE would fail the pipeline.)
members=$(tar -tzf "$tmp/out/gpu-check-logs.tar.gz") || fail "gpu-check-logs.tar.gz unreadable"
grep -qx 'parts/kernels/log' <<<"$members" || fail "gpu-check-logs.tar.gz lacks parts/kernels/log"
kernels_log=$(tar -xzOf "$tmp/out/gpu-check-logs.tar.gz" parts/kernels/log) || fail "cannot read parts/kernels/log"
grep -q '^| op |' <<<"$kernels_log" || fail "the kernels log in gpu-check-logs.tar.gz is not the whole log"
python3 - "$json" <<'EOF' || fail "results JSON"
import json, sys
r = json.load(open(sys.argv[1]))
parts = {p["part"]: p for p in r["parts"]}
assert r["device"]["name"] == "NVIDIA H100 80GB HBM3", r["device"]
assert list(parts) == ["parity", "allreduce", "matmul", "kernels", "attention_memory", "step_mlp", "step_mlp_cublas", "step_anchor_former", "step_transformers", "vision_tower", "backend_parity"], list(parts)
assert parts["parity"]["ok"] and parts["parity"]["data"]["passed"] == 9, parts["parity"]
assert parts["allreduce"]["ok"] and parts["allreduce"]["data"]["host_over_nccl"] == 125.0, parts["allreduce"]
assert parts["kernels"]["ok"] and len(parts["kernels"]["data"]["table"]) == 3, parts["kernels"]
assert parts["matmul"]["ok"] and parts["matmul"]["data"]["ours_over_torch"] == 15.0, parts["matmul"]
am = parts["attention_memory"]
assert am["ok"] and am["data"]["held_mib_recomputed"] == 40.1, am
assert "--batch 8 --heads 32 --len 641 --head-dim 128 --dtype bf16" in am["command"], am["command"]
assert parts["step_mlp"]["ok"] and parts["step_mlp"]["data"]["step_s"] == 1.5, parts["step_mlp"]
assert "--peak-tflops 989" in parts["step_mlp"]["command"], parts["step_mlp"]["command"]
# An 80 GB card: micro-batch 8 on both sides.
assert "--set optim.micro_batch=8 --set optim.global_batch=8 " in parts["step_mlp"]["command"], parts["step_mlp"]["command"]
assert "--micro-batch 8 " in parts["step_transformers"]["command"], parts["step_transformers"]["command"]
assert parts["step_mlp"]["gpu_mem_peak_mib"] == 40960, parts["step_mlp"]
# The cuBLAS step runs last: the budget is spent by then.
assert parts["step_mlp_cublas"]["status"] == "skipped", parts["step_mlp_cublas"]
af = parts["step_anchor_former"]
assert not af["ok"] and af["rc"] == 1 and "Error: out of memory" in af["log_tail"], af
assert parts["step_transformers"]["ok"] and parts["step_transformers"]["data"]["peak_mem_gib"] == 52.5
vt = parts["vision_tower"]
assert not vt["ok"] and vt["status"] in ("skipped", "failed"), vt
assert parts["backend_parity"]["status"] == "skipped", parts["backend_parity"]  # the budget is spent by then
assert not r["ok"]
assert any(line.startswith("libcuda") for line in r["libraries"]), r["libraries"]
assert r["libraries"][0] == "binaries: train 0.1.0 starts", r["libraries"]
headers = [line for line in r["libraries"] if line.startswith("CUDA headers")]
assert len(headers) == 1 and "completed with the bundle's CUDA 12 headers for: crt/mma.h cuda/pipeline cuda/barrier cuda/ptx nv/target" in headers[0], headers
assert "MISSING" not in headers[0], headers
# This machine has no NVRTC unless CUDA is installed: the check ran and said which it is.
nvrtc = [line for line in r["libraries"] if line.startswith("NVRTC")]
assert len(nvrtc) == 1 and ("cannot load libnvrtc" in nvrtc[0] or "sm_90a" in nvrtc[0]), nvrtc
print("results JSON checks passed")
EOF
md="$tmp/out/gpu-check-results.md"
cat "$md"
grep -q '^| CUDA kernel parity tests | `kernels-tests cuda_parity:: (ANCHORAGE_REQUIRE_CUDA=1)` | 9 passed, 0 failed' "$md" || fail "parity row"
grep -q '^| NCCL all-reduce, every GPU (sums checked) | `train bench allreduce --iters 10` | 1 rank(s), 33554432 f32 elements: sums exact, NCCL 0.40 ms' "$md" || fail "allreduce row"
grep -q 'as 4 buckets (sums exact): launched back to back 0.50 ms, one at a time 0.80 ms (1.60x)' "$md" || fail "allreduce buckets"
grep -q '| \*\*failed\*\*: failed (exit 1)' "$md" || fail "failed row"
grep -q "burn's recorded op holds 651.8 MiB, recomputed_attention 40.1 MiB (16.3x less); forward + backward 9.50 ms vs 10.20 ms (1.07x)" "$md" || fail "attention row"
grep -q '^| anchor_select (H 16, T 577) | 32 | 144 | 0.05 |' "$md" || fail "kernel table"
grep -qF "| bf16, 32 sampled entries checked against f64; all products 40.0 TFLOP/s, PyTorch 600.0 (ours take 15.0x its time); TFLOP/s burn / cuBLAS (ours) vs PyTorch: llm gate/up projection 1x10256x4096x11008 41.5 / 640.0 vs 650.2; attention p v 512x641x641x128 8.2 / cuBLAS did not run (" "$md" || fail "matmul row"

# The backend parity part alone (GPU_CHECK_PARTS), which the short budget above skipped.
mkdir -p "$tmp/out2"
(cd "$tmp/out2" && PATH="$tmp/fakebin:$PATH" GPU_CHECK_PARTS=backend_parity bash "$b/run.sh") >"$tmp/run2.log" 2>&1 || { cat "$tmp/run2.log"; fail "backend_parity alone"; }
grep -q '^| stage 2 and answers on CUDA against the CPU (demo size, f32) | `train bench parity --backend cuda` | 5 stage-2 runs: losses within 2.0e-05 (relative) of flex.s, tolerance 0.001; answers 16 of 16 the same; trained connectors 0.55% of their update apart' "$tmp/out2/gpu-check-results.md" || { cat "$tmp/out2/gpu-check-results.md"; fail "backend_parity row"; }
# The cuBLAS step alone: the recipe key set on the command line, and its cuBLAS counts reported.
mkdir -p "$tmp/out6"
(cd "$tmp/out6" && PATH="$tmp/fakebin:$PATH" GPU_CHECK_PARTS=step_mlp_cublas bash "$b/run.sh") >"$tmp/run6.log" 2>&1 || { cat "$tmp/run6.log"; fail "step_mlp_cublas alone"; }
python3 - "$tmp/out6/gpu-check-results.json" <<'EOF' || fail "step_mlp_cublas results"
import json, sys
sc = {p["part"]: p for p in json.load(open(sys.argv[1]))["parts"]}["step_mlp_cublas"]
assert sc["ok"] and """--set devices.matmul="cublas" --set optim.micro_batch=8""" in sc["command"], sc
assert sc["data"]["cublas_products"] == 3584 and "3584 products on cuBLAS, 0 fell back to burn's" in sc["summary"], sc
EOF
# The opt-in kernel sweep (not among the default parts above): the best kernel that computed
# right, per product; a faster wrong one is named as wrong, not as the best.
mkdir -p "$tmp/out5"
(cd "$tmp/out5" && PATH="$tmp/fakebin:$PATH" GPU_CHECK_PARTS=matmul_kernels bash "$b/run.sh") >"$tmp/run5.log" 2>&1 || { cat "$tmp/run5.log"; fail "matmul_kernels alone"; }
grep -qF "| CubeCL's matmul kernels at the 7B step's shapes (opt-in part) | \`train bench matmul --backend cuda --dtype bf16 --iters 5 --warmup 1 --kernels all\` | TFLOP/s, bf16: lm head: burn 40.0, best double_tma_mma 610.5 (2 of 4 kernels ran right; wrong: simple_unit) (" "$tmp/out5/gpu-check-results.md" ||
    { cat "$tmp/out5/gpu-check-results.md"; fail "matmul_kernels row"; }
# Without GPU_CHECK_PYTHON, the Python that imports torch and transformers is chosen even where it
# answers only to `python` (a conda or venv install), and used for the PyTorch part.
mkdir -p "$tmp/pybin" "$tmp/out3"
cat >"$tmp/pybin/python3" <<EOF
#!/bin/sh
case "\$*" in *"import torch, transformers"*) exit 1 ;; esac
if [ "\$1" = benches/llava_train_step.py ]; then echo "python3 has no torch" >&2; exit 1; fi
exec "$real_python" "\$@"
EOF
cat >"$tmp/pybin/python" <<EOF
#!/bin/sh
case "\$*" in *"import torch, transformers"*) exit 0 ;; esac
if [ "\$1" = benches/llava_train_step.py ]; then
    echo '{"impl": "transformers", "step_s": 0.5, "samples_per_s": 32.0, "tokens_per_s": 20512, "mfu": 0.4, "peak_mem_gib": 50.0}'
    exit 0
fi
exec "$real_python" "\$@"
EOF
chmod +x "$tmp/pybin/"*
(cd "$tmp/out3" && PATH="$tmp/pybin:$tmp/fakebin:$PATH" GPU_CHECK_PARTS=step_transformers GPU_CHECK_MICRO_BATCH=16 bash "$b/run.sh") >"$tmp/run3.log" 2>&1 ||
    { cat "$tmp/run3.log"; fail "python detection run"; }
grep -q "^gpu-check: Python: $tmp/pybin/python\$" "$tmp/run3.log" || { cat "$tmp/run3.log"; fail "did not choose the Python that imports torch"; }
python3 - "$tmp/out3/gpu-check-results.json" <<'EOF' || fail "python detection results"
import json, sys
parts = {p["part"]: p for p in json.load(open(sys.argv[1]))["parts"]}
assert parts["step_transformers"]["ok"] and parts["step_transformers"]["data"]["step_s"] == 0.5, parts
assert "--micro-batch 16 " in parts["step_transformers"]["command"], parts  # GPU_CHECK_MICRO_BATCH
EOF
# Binaries that cannot start (built against a newer glibc than the machine's): one warning naming
# both versions, in the log and the results, and the PyTorch part still runs.
cp -r "$tmp/bundle" "$tmp/oldglibc"
old=$tmp/oldglibc/gpu-check
rm "$old/bin/train.xz"
cat >"$old/bin/train" <<'EOF'
#!/bin/sh
echo "train: /lib/x86_64-linux-gnu/libc.so.6: version \`GLIBC_2.34' not found (required by train)" >&2
exit 1
EOF
xz "$old/bin/train"
echo "glibc_needed=2.34" >>"$old/BUILD_INFO"
mkdir -p "$tmp/out4"
(cd "$tmp/out4" && PATH="$tmp/fakebin:$PATH" GPU_CHECK_PARTS=step_transformers bash "$old/run.sh") >"$tmp/run4.log" 2>&1 ||
    { cat "$tmp/run4.log"; fail "run with binaries that cannot start"; }
grep -q "^gpu-check: WARNING: binaries: the prebuilt train does not start on this machine: .*GLIBC_2.34' not found.*(needs Linux x86_64, glibc >= 2.34; this machine: " "$tmp/run4.log" ||
    { cat "$tmp/run4.log"; fail "no warning for binaries that cannot start"; }
python3 - "$tmp/out4/gpu-check-results.json" <<'EOF' || fail "results of the run with binaries that cannot start"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["libraries"][0].startswith("binaries: the prebuilt train does not start"), r["libraries"]
assert {p["part"]: p for p in r["parts"]}["step_transformers"]["ok"], r["parts"]
EOF
echo "test_run.sh: all checks passed"
