#!/usr/bin/env bash
# The one-command GPU check (docs/gpu-check.md). On a Linux x86_64 machine with an NVIDIA GPU and
# PyTorch + transformers in python3 (no cargo, no network needed):
#
#   tar xf gpu-check.tar && gpu-check/run.sh
#
# It decompresses the prebuilt binaries, makes libcuda/libnvrtc/libnccl and the CUDA headers NVRTC
# needs findable (libs.sh, also from PyTorch's pip wheels, completed with the bundle's own headers
# where those lack some), checks that NVRTC compiles CubeCL's header sets (nvrtc_check.py), then runs,
# each part under its own timeout and the whole under GPU_CHECK_BUDGET_S (default 470 s):
#   1. the CUDA kernel parity tests (prebuilt test binary, ANCHORAGE_REQUIRE_CUDA=1)
#   2. the NCCL all-reduce of CUDA runs on every visible GPU, sums checked (`train bench allreduce`),
#   2a. burn's matrix products at the 7B step's shapes beside torch.matmul (`train bench matmul`;
#       with GPU_CHECK_PARTS=matmul_kernels, every CubeCL matmul kernel at those shapes),
#   2b. the kernel benchmark at real sizes (kernel vs reference twin vs PyTorch),
#   2c. one 7B attention layer under autodiff: the memory burn's recorded op and the recomputed
#       attention hold for the backward pass, side by side (kernels/benches/recomputed_attention.rs),
#   3. `train bench step` at 7B size with the MLP connector, 4. with Anchor Former,
#   5. benches/llava_train_step.py (transformers) at the same size,
#   6. the vision tower at real size (ViT-L/14-336 with a tiny LLM in the same step),
#   7. `train bench parity --backend cuda`: stage 2 of every connector and a run's answers on a
#      small demo world, CUDA against the CPU (f32),
#   8. the MLP step of 3. with the products on cuBLAS (`devices.matmul = "cublas"`), last,
# and writes gpu-check-results.json and gpu-check-results.md (a table for docs/benchmarks.md), and
# every part's whole log as gpu-check-logs.tar.gz, into GPU_CHECK_OUT (default: the current
# folder). A failing part is recorded with the tail of its output and the next part runs. Exit
# status: 0 all parts passed, 1 some failed, 2 no NVIDIA GPU.
#
# Environment: GPU_CHECK_OUT, GPU_CHECK_BUDGET_S, GPU_CHECK_TIMEOUT_SCALE (an integer factor on
# every part's timeout, default 1), GPU_CHECK_STEPS (default 5), GPU_CHECK_WARMUP (2) and
# GPU_CHECK_MICRO_BATCH (16 on cards of 120 GB or more, else 8) for the step parts,
# GPU_CHECK_PYTHON (python3), GPU_CHECK_PARTS (space-separated subset of parity allreduce matmul
# kernels attention_memory step_mlp step_mlp_cublas step_anchor_former step_transformers
# vision_tower backend_parity; also, only when named: matmul_kernels, step_anchor_former_cublas,
# vision_tower_cublas, backend_parity_cublas).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(mkdir -p "${GPU_CHECK_OUT:-$PWD}" && cd "${GPU_CHECK_OUT:-$PWD}" && pwd)
budget=${GPU_CHECK_BUDGET_S:-470}
steps=${GPU_CHECK_STEPS:-5}
warmup=${GPU_CHECK_WARMUP:-2}
python=${GPU_CHECK_PYTHON:-python3}
parts=${GPU_CHECK_PARTS:-parity allreduce matmul kernels attention_memory step_mlp step_mlp_cublas step_anchor_former step_transformers vision_tower backend_parity}
started=$SECONDS

# --- 1. An NVIDIA GPU, or a clear no. --------------------------------------------------------------
no_gpu() {
    echo "gpu-check: NO NVIDIA GPU: $1" >&2
    echo "gpu-check: this check needs a machine with an NVIDIA GPU and its driver (nvidia-smi); nothing was run." >&2
    exit 2
}
command -v nvidia-smi >/dev/null || no_gpu "nvidia-smi is not installed (no NVIDIA driver on this machine)"
gpu_list=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1) ||
    no_gpu "nvidia-smi failed: $gpu_list"
[[ -n "$gpu_list" ]] || no_gpu "nvidia-smi lists no GPU"
IFS=, read -r device memory driver <<<"$(head -n 1 <<<"$gpu_list")"
device=$(xargs <<<"$device")
echo "gpu-check: $(wc -l <<<"$gpu_list") GPU(s); using GPU 0: $device, $(xargs <<<"$memory"), driver $(xargs <<<"$driver")"
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
# Without GPU_CHECK_PYTHON: the first of python3, python that imports torch and transformers (a
# conda or venv install may answer only to one of them), else python3 as it is.
python_ok=0
if [[ -z "${GPU_CHECK_PYTHON:-}" ]]; then
    for candidate in python3 python; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import torch, transformers' 2>/dev/null; then
            python=$candidate python_ok=1
            break
        fi
    done
fi
if ! command -v "$python" >/dev/null; then
    echo "gpu-check: needs Python 3 with PyTorch and transformers as $python (set GPU_CHECK_PYTHON)" >&2
    exit 1
fi
if ((!python_ok)) && ! "$python" -c 'import torch, transformers' 2>/dev/null; then
    echo "gpu-check: WARNING: $python cannot import torch and transformers: the PyTorch parts will fail and" \
        "PyTorch's CUDA libraries will not be searched (set GPU_CHECK_PYTHON)" >&2
fi
echo "gpu-check: Python: $(command -v "$python")"
export GPU_CHECK_PYTHON=$python # libs.sh searches this Python's site-packages for PyTorch's CUDA libraries

# Peak numbers for MFU and bandwidth, by card (dense bf16 TFLOP/s, HBM GB/s); unknown cards get none.
case "$device" in
    *H200*) peak_tflops=989 peak_gbs=4800 ;;
    *H100*PCIe*) peak_tflops=756 peak_gbs=2000 ;;
    *H100*NVL*) peak_tflops=835 peak_gbs=3900 ;;
    *H100*) peak_tflops=989 peak_gbs=3350 ;;
    *A100*80GB*) peak_tflops=312 peak_gbs=2039 ;;
    *A100*) peak_tflops=312 peak_gbs=1555 ;;
    *) peak_tflops="" peak_gbs="" ;;
esac

# --- 2. Unpack the binaries. -----------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
# Only the main shell cleans up: a background child (the memory poller) killed before it has exec'd
# would otherwise run this EXIT trap too and delete the folder under the running parts.
trap '[[ $BASHPID == "$$" ]] && rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/parts"
for xzfile in "$here"/bin/*.xz; do
    name=$(basename "$xzfile" .xz)
    if command -v xz >/dev/null; then
        xz -dc "$xzfile" >"$work/bin/$name"
    else
        "$python" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$xzfile" "$work/bin/$name"
    fi || { echo "gpu-check: cannot decompress $xzfile" >&2; exit 1; }
    chmod +x "$work/bin/$name"
done

# The binaries are built against glibc (BUILD_INFO's glibc_needed): on an older system they do not
# start at all. Say so once here, with both versions, instead of in every part's log.
glibc_needed=$(sed -n 's/^glibc_needed=//p' "$here/BUILD_INFO" 2>/dev/null)
if version=$(timeout -k 5 30 "$work/bin/train" --version 2>&1); then
    binaries_line="binaries: $version starts"
else
    binaries_line="binaries: the prebuilt train does not start on this machine: $(head -c 400 <<<"$version" | tr '\n' ' ')(needs Linux x86_64, glibc >= ${glibc_needed:-unknown}; this machine: $(ldd --version 2>/dev/null | head -n 1 || echo 'glibc unknown'))"
    echo "gpu-check: WARNING: $binaries_line" >&2
fi

# The CUDA headers PyTorch's wheels lack (crt/mma.h, CCCL), per CUDA major version, where the
# bundle was built with them (fetch_cuda_headers.py).
if [[ -f "$here/cuda-headers.tar.xz" ]]; then
    "$python" -c 'import sys, tarfile; t = tarfile.open(sys.argv[1]); t.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' \
        "$here/cuda-headers.tar.xz" "$work/cuda-headers" || echo "gpu-check: cannot unpack the bundle's CUDA headers" >&2
fi

# --- 3. CUDA libraries and headers. ----------------------------------------------------------------
# shellcheck source=gpu-check/libs.sh
source "$here/libs.sh"
{ echo "$binaries_line"; gpu_check_libs "$work/libs"; } >"$work/libs.txt"
gpu_check_headers "$work/cuda" "$work/cuda-headers" >>"$work/libs.txt"
# NVRTC compiles CubeCL's header sets for this card in seconds (no GPU needed): a header problem
# shows here, before the parts, with the failing header named.
compute_cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i 0 2>/dev/null | head -n 1 | xargs)
if [[ "$compute_cap" =~ ^[0-9]+\.[0-9]+$ ]]; then
    timeout -k 5 60 "$python" "$here/nvrtc_check.py" --compute-cap "$compute_cap" >>"$work/libs.txt" 2>&1 ||
        echo "gpu-check: the NVRTC check failed (see the NVRTC line below)" >&2
else
    echo "NVRTC: not checked (nvidia-smi gave no compute capability: ${compute_cap:-none})" >>"$work/libs.txt"
fi
cat "$work/libs.txt"

# --- 4. The parts. ---------------------------------------------------------------------------------
# part NAME TIMEOUT SHOWN_COMMAND -- COMMAND...: runs COMMAND in the bundle folder under
# min(TIMEOUT, what is left of the budget), polling GPU memory; records rc, seconds, peak MiB, log.
part() {
    local name=$1 limit=$2 shown=$3
    shift 4
    [[ " $parts " == *" $name "* ]] || return 0
    local dir="$work/parts/$name" left=$((budget - (SECONDS - started)))
    mkdir -p "$dir"
    echo "$shown" >"$dir/command"
    if ((left < 15)); then
        echo "skipped: the ${budget} s budget is spent" >"$dir/log"
        echo "skipped" >"$dir/rc"
        echo "gpu-check: $name skipped (budget spent)"
        return 0
    fi
    limit=$((limit * ${GPU_CHECK_TIMEOUT_SCALE:-1}))
    ((limit > left)) && limit=$left
    echo "gpu-check: $name (timeout ${limit} s): $shown"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 250 >"$dir/mem" 2>/dev/null &
    local poll=$! t0=$SECONDS rc
    (cd "$here" && timeout -k 10 "$limit" "$@") >"$dir/log" 2>&1
    rc=$?
    kill "$poll" 2>/dev/null
    wait "$poll" 2>/dev/null
    echo "$rc" >"$dir/rc"
    echo "$((SECONDS - t0))" >"$dir/seconds"
    echo "$limit" >"$dir/timeout"
    echo "gpu-check: $name rc=$rc in $((SECONDS - t0)) s"
}

bin=$work/bin
peak=(${peak_tflops:+--peak-tflops "$peak_tflops"})
step_args=(--text-len 64 --steps "$steps" --warmup "$warmup" "${peak[@]}")
# The 7B steps' micro-batch, the same on both sides: 16 on a card with 120 GB or more (H200), 8 on
# smaller ones (H100 80 GB). At 16 on an H200 ours peaked at 93.5 GiB and transformers at 73.9 GiB
# (nvidia-smi, 2026-12-04): 8 keeps an 80 GB card from two out-of-memory failures.
memory_mib=$(grep -o '[0-9]*' <<<"$memory" | head -n 1)
micro=${GPU_CHECK_MICRO_BATCH:-$(((${memory_mib:-0} >= 120000) ? 16 : 8))}
ours=(--set "optim.micro_batch=$micro" --set "optim.global_batch=$micro" "${step_args[@]}")

part parity 60 "kernels-tests cuda_parity:: (ANCHORAGE_REQUIRE_CUDA=1)" -- \
    env ANCHORAGE_REQUIRE_CUDA=1 "$bin/kernels-tests" cuda_parity::
part allreduce 40 "train bench allreduce --iters 10" -- \
    "$bin/train" bench allreduce --iters 10
part matmul 90 "train bench matmul --backend cuda --dtype bf16 --kernels cublas --torch-python $python${peak_tflops:+ --peak-tflops $peak_tflops}" -- \
    "$bin/train" bench matmul --backend cuda --dtype bf16 --kernels cublas --torch-python "$python" --torch-script benches/matmul.py "${peak[@]}"
# Not in the default parts (GPU_CHECK_PARTS=matmul_kernels): every CubeCL matmul kernel at every
# shape compiles dozens of kernels, more than the 8-minute check has room for.
part matmul_kernels 300 "train bench matmul --backend cuda --dtype bf16 --iters 5 --warmup 1 --kernels all" -- \
    "$bin/train" bench matmul --backend cuda --dtype bf16 --iters 5 --warmup 1 --kernels all "${peak[@]}"
part kernels 110 "anchor_gather --backend cuda --sizes real --iters 10 --warmup 3 --acformer-python $python${peak_gbs:+ --peak-gbs $peak_gbs}" -- \
    "$bin/anchor_gather" --backend cuda --sizes real --iters 10 --warmup 3 --acformer-python "$python" \
    --acformer-script kernels/benches/acformer_host_loop.py ${peak_gbs:+--peak-gbs "$peak_gbs"}
part attention_memory 40 "recomputed_attention --backend cuda --batch $micro --heads 32 --len 641 --head-dim 128 --dtype bf16 --iters 5" -- \
    "$bin/recomputed_attention" --backend cuda --batch "$micro" --heads 32 --len 641 --head-dim 128 --dtype bf16 --iters 5
part step_mlp 100 "train bench step recipes/bench/llava7b_mlp2x_gelu.toml ${ours[*]}" -- \
    "$bin/train" bench step recipes/bench/llava7b_mlp2x_gelu.toml "${ours[@]}"
# The LLM's and the tower's products on cuBLAS instead of burn's CubeCL kernel.
cublas=(--set 'devices.matmul="cublas"')
part step_anchor_former 90 "train bench step recipes/bench/llava7b_anchor_former.toml ${ours[*]}" -- \
    "$bin/train" bench step recipes/bench/llava7b_anchor_former.toml "${ours[@]}"
part step_anchor_former_cublas 60 "train bench step recipes/bench/llava7b_anchor_former.toml ${cublas[*]} ${ours[*]}" -- \
    "$bin/train" bench step recipes/bench/llava7b_anchor_former.toml "${cublas[@]}" "${ours[@]}"
part step_transformers 140 "python benches/llava_train_step.py --preset llava-7b --micro-batch $micro ${step_args[*]} --device cuda --dtype bf16" -- \
    "$python" benches/llava_train_step.py --preset llava-7b --micro-batch "$micro" "${step_args[@]}" --device cuda --dtype bf16
tiny_llm='llm.model={ builtin = "tiny" }'
part vision_tower 40 "train bench step recipes/bench/llava7b_mlp2x_gelu.toml --set '$tiny_llm' ${ours[*]}" -- \
    "$bin/train" bench step recipes/bench/llava7b_mlp2x_gelu.toml --set "$tiny_llm" "${ours[@]}"
part vision_tower_cublas 40 "train bench step recipes/bench/llava7b_mlp2x_gelu.toml --set '$tiny_llm' ${cublas[*]} ${ours[*]}" -- \
    "$bin/train" bench step recipes/bench/llava7b_mlp2x_gelu.toml --set "$tiny_llm" "${cublas[@]}" "${ours[@]}"
part backend_parity 120 "train bench parity --backend cuda" -- \
    "$bin/train" bench parity --backend cuda
# Last: the parts the issue asks for and the CUDA-against-CPU check run first, so that a spent
# budget skips the cuBLAS step rather than one of them.
part step_mlp_cublas 80 "train bench step recipes/bench/llava7b_mlp2x_gelu.toml ${cublas[*]} ${ours[*]}" -- \
    "$bin/train" bench step recipes/bench/llava7b_mlp2x_gelu.toml "${cublas[@]}" "${ours[@]}"
part backend_parity_cublas 120 "train bench parity --backend cuda --matmul cublas" -- \
    "$bin/train" bench parity --backend cuda --matmul cublas

# --- 5. Report. ------------------------------------------------------------------------------------
# Every part's whole log (the JSON keeps only a failing part's tail) beside the results.
tar -C "$work" -czf "$out/gpu-check-logs.tar.gz" libs.txt parts 2>/dev/null ||
    echo "gpu-check: could not write $out/gpu-check-logs.tar.gz" >&2
"$python" "$here/report.py" --parts "$work/parts" --libs "$work/libs.txt" --build-info "$here/BUILD_INFO" \
    --device "$device" --memory "$(xargs <<<"$memory")" --driver "$(xargs <<<"$driver")" \
    --seconds "$((SECONDS - started))" --out "$out"
status=$?
echo "gpu-check: $((SECONDS - started)) s in all; results in $out/gpu-check-results.json and $out/gpu-check-results.md"
exit "$status"
