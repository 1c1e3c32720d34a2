#!/usr/bin/env bash
# CPU test of libs.sh's library finding against a fake machine: a "system" folder with only the
# driver's versioned libcuda.so.1, and a PyTorch pip install with libnvrtc.so.12 (+ builtins),
# libnccl.so.2 and (as CUDA 13 wheels name it) libcublas.so.13 under site-packages/nvidia/*/lib. The fake libraries are copies of a real shared
# library (libz), so dlopen accepts them. Run: gpu-check/test_libs.sh (exits non-zero on a failure).
# Meant for a machine without CUDA: where the real libcuda/libnvrtc/libnccl load, case 1 finds them
# loadable and makes no links.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=gpu-check/libs.sh
source "$here/libs.sh"

real=$(ldconfig -p | sed -n 's/.*libz\.so\.1 .*=> \(.*\)/\1/p' | head -n 1)
[[ -f "$real" ]] || { echo "test_libs.sh: needs libz.so.1 to copy" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

sys="$tmp/usr/lib"
site="$tmp/site-packages"
mkdir -p "$sys" "$site/torch/lib" "$site/nvidia/cuda_nvrtc/lib" "$site/nvidia/nccl/lib" "$site/nvidia/cu13/lib"
cp "$real" "$sys/libcuda.so.1"
cp "$real" "$site/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
cp "$real" "$site/nvidia/cuda_nvrtc/lib/libnvrtc-builtins.so.12.8"
cp "$real" "$site/nvidia/nccl/lib/libnccl.so.2"
cp "$real" "$site/nvidia/cu13/lib/libcublas.so.13"
cp "$real" "$site/nvidia/cu13/lib/libcublasLt.so.13"

# 1. Libraries only in PyTorch's folders get linked under the names cudarc tries.
unset LD_LIBRARY_PATH
out=$(GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_libs "$tmp/links"; echo "rc=$?")
echo "$out"
grep -q "rc=0" <<<"$out" || fail "gpu_check_libs reported a missing library"
for name in cuda nvrtc nccl cublas; do
    [[ -L "$tmp/links/lib$name.so" ]] || fail "no link lib$name.so"
done
# cuBLAS 13 is not a name cudarc tries (libcublas.so, .so.12, ...): linked as libcublas.so, never
# its libcublasLt.
[[ $(readlink "$tmp/links/libcublas.so") == "$site/nvidia/cu13/lib/libcublas.so.13" ]] || fail "libcublas.so links to $(readlink "$tmp/links/libcublas.so")"
[[ $(readlink "$tmp/links/libnvrtc.so") == "$site/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ]] || fail "libnvrtc.so links to $(readlink "$tmp/links/libnvrtc.so")"
[[ $(readlink "$tmp/links/libnccl.so") == "$site/nvidia/nccl/lib/libnccl.so.2" ]] || fail "libnccl.so links to $(readlink "$tmp/links/libnccl.so")"
[[ $(readlink "$tmp/links/libcuda.so") == "$sys/libcuda.so.1" ]] || fail "libcuda.so links to $(readlink "$tmp/links/libcuda.so")"

# 2. In this shell (not the subshell above) LD_LIBRARY_PATH holds the link folder and NVRTC's folder.
GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_libs "$tmp/links2" >/dev/null || fail "second run"
[[ ":$LD_LIBRARY_PATH:" == *":$tmp/links2:"* ]] || fail "link folder not on LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
[[ ":$LD_LIBRARY_PATH:" == *":$site/nvidia/cuda_nvrtc/lib:"* ]] || fail "NVRTC's folder not on LD_LIBRARY_PATH"
python3 -c 'import ctypes; [ctypes.CDLL(f"lib{n}.so") for n in ("cuda", "nvrtc", "nccl", "cublas")]' || fail "a fresh process cannot load the links"

# 3. A library that already loads is left alone (no link made).
out=$(GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_libs "$tmp/links3")
grep -q "libnccl: loads as libnccl.so" <<<"$out" || fail "expected libnccl to load as is: $out"
[[ ! -e "$tmp/links3/libnccl.so" ]] || fail "linked a library that already loads"

# 4. The hashed name of older torch wheels is found; libnvrtc-builtins is never taken for libnvrtc.
unset LD_LIBRARY_PATH
rm "$site/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
cp "$real" "$site/torch/lib/libnvrtc-672ee683.so.11.2"
out=$(GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_libs "$tmp/links4")
[[ $(readlink "$tmp/links4/libnvrtc.so") == "$site/torch/lib/libnvrtc-672ee683.so.11.2" ]] || fail "hashed libnvrtc: $out"

# 5. A library found nowhere is reported, and the function fails.
unset LD_LIBRARY_PATH
rm "$site/nvidia/nccl/lib/libnccl.so.2"
if out=$(GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_libs "$tmp/links5"); then
    fail "missing libnccl not reported"
fi
grep -q "libnccl: MISSING" <<<"$out" || fail "expected 'libnccl: MISSING': $out"

# 6. CUDA headers: none in the system, so the wheels' include folders are merged (crt/ from two wheels).
unset CUDA_PATH
mkdir -p "$site/nvidia/cuda_runtime/include/crt" "$site/nvidia/cuda_nvrtc/include/crt" "$site/nvidia/cuda_cccl/include/nv"
touch "$site/nvidia/cuda_runtime/include/cuda_runtime.h" "$site/nvidia/cuda_runtime/include/cuda_bf16.h" \
    "$site/nvidia/cuda_runtime/include/__init__.py" "$site/nvidia/cuda_runtime/include/crt/host_config.h" \
    "$site/nvidia/cuda_nvrtc/include/nvrtc.h" "$site/nvidia/cuda_nvrtc/include/crt/nvrtc_extra.h" \
    "$site/nvidia/cuda_cccl/include/nv/target" "$site/nvidia/cuda_runtime/include/crt/__cccl_like_config"
out=$(GPU_CHECK_SYSTEM_CUDA="$tmp/no-cuda" GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_headers "$tmp/cuda"; echo "rc=$?")
grep -q "rc=0" <<<"$out" || fail "headers: $out"
for f in cuda_runtime.h cuda_bf16.h nvrtc.h crt/host_config.h crt/nvrtc_extra.h crt/__cccl_like_config nv/target; do
    [[ -e "$tmp/cuda/include/$f" ]] || fail "merged headers lack $f"
done
[[ ! -e "$tmp/cuda/include/__init__.py" ]] || fail "merged the wheel's __init__.py"
GPU_CHECK_SYSTEM_CUDA="$tmp/no-cuda" GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_headers "$tmp/cuda2" >/dev/null
[[ "$CUDA_PATH" == "$tmp/cuda2" ]] || fail "CUDA_PATH=$CUDA_PATH"

# 7. A system CUDA with headers is used as it is; one without headers (a runtime image) is not.
unset CUDA_PATH
mkdir -p "$tmp/syscuda/include" "$tmp/runtime-cuda/lib64"
touch "$tmp/syscuda/include/cuda_runtime.h"
out=$(GPU_CHECK_SYSTEM_CUDA="$tmp/syscuda" GPU_CHECK_SITE_DIRS="$site" gpu_check_headers "$tmp/cuda3")
[[ "$out" == "CUDA headers: $tmp/syscuda/include; MISSING: cuda_fp16.h cuda_bf16.h cuda_fp8.h mma.h crt/mma.h cooperative_groups.h cooperative_groups/memcpy_async.h cuda/pipeline cuda/barrier cuda/ptx nv/target (kernels that include them cannot compile)" ]] ||
    fail "system headers: $out"
out=$(GPU_CHECK_SYSTEM_CUDA="$tmp/runtime-cuda" GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_headers "$tmp/cuda4")
grep -q "merged from PyTorch" <<<"$out" || fail "runtime image: $out"

# 8. Headers completed from the bundle (fetch_cuda_headers.py's layout), for the CUDA major version of
# CUDART_VERSION (the fake libnvrtc has no nvrtcVersion): a system toolkit lacking crt/mma.h and
# CCCL keeps its own files (its crt/host_defines.h wins over the bundle's), gains the rest, and
# CUDA_PATH points at the merged folder. A complete toolkit is used as it is; a bundle without the
# major version changes nothing and says so.
unset CUDA_PATH
full="$tmp/fullcuda/include"
mkdir -p "$full/crt" "$full/cooperative_groups" "$full/cuda" "$full/nv"
for h in "${GPU_CHECK_HEADER_NAMES[@]}"; do touch "$full/$h"; done
echo '#define CUDART_VERSION 12040' >"$full/cuda_runtime_api.h"
bundled="$tmp/bundled"
mkdir -p "$bundled/12/include/crt" "$bundled/12/include/cuda" "$bundled/12/include/nv" "$bundled/13/include/cccl/cuda"
touch "$bundled/12/include/crt/mma.h" "$bundled/12/include/crt/host_defines.h" "$bundled/12/include/cuda/pipeline" \
    "$bundled/12/include/cuda/barrier" "$bundled/12/include/cuda/ptx" "$bundled/12/include/nv/target" "$bundled/13/include/cccl/cuda/ptx"
out=$(GPU_CHECK_SYSTEM_CUDA="$tmp/fullcuda" gpu_check_headers "$tmp/cuda6" "$bundled")
[[ "$out" == "CUDA headers: $full" ]] || fail "complete toolkit: $out"
[[ ! -e "$tmp/cuda6" ]] || fail "a complete toolkit was copied"
part="$tmp/partcuda/include"
mkdir -p "$part/crt" "$part/cooperative_groups"
for h in cuda_runtime.h cuda_fp16.h cuda_bf16.h cuda_fp8.h mma.h cooperative_groups.h cooperative_groups/memcpy_async.h; do touch "$part/$h"; done
echo own >"$part/crt/host_defines.h"
echo '#define CUDART_VERSION 12080' >"$part/cuda_runtime_api.h"
before=$(find "$tmp/partcuda" | sort)
GPU_CHECK_SYSTEM_CUDA="$tmp/partcuda" gpu_check_headers "$tmp/cuda7" "$bundled" >"$tmp/out7"
[[ "$(find "$tmp/partcuda" | sort)" == "$before" ]] || fail "the merge wrote into the system's CUDA folder"
out=$(cat "$tmp/out7")
[[ "$out" == "CUDA headers: $part, completed with the bundle's CUDA 12 headers for: crt/mma.h cuda/pipeline cuda/barrier cuda/ptx nv/target (CUDA_PATH=$tmp/cuda7)" ]] ||
    fail "completion: $out"
[[ "$CUDA_PATH" == "$tmp/cuda7" ]] || fail "CUDA_PATH=$CUDA_PATH after completion"
[[ -z "$(gpu_check_missing_headers "$tmp/cuda7/include")" ]] || fail "still missing: $(gpu_check_missing_headers "$tmp/cuda7/include")"
[[ $(cat "$tmp/cuda7/include/crt/host_defines.h") == own ]] || fail "the bundle's crt/host_defines.h replaced the system's"
[[ $(readlink -f "$tmp/cuda7/include/crt/mma.h") == "$bundled/12/include/crt/mma.h" ]] || fail "crt/mma.h not from the bundle"
[[ $(readlink -f "$tmp/cuda7/include/cuda_runtime.h") == "$part/cuda_runtime.h" ]] || fail "cuda_runtime.h not the system's"
unset CUDA_PATH
echo '#define CUDART_VERSION 11080' >"$part/cuda_runtime_api.h"
out=$(GPU_CHECK_SYSTEM_CUDA="$tmp/partcuda" gpu_check_headers "$tmp/cuda8" "$bundled")
[[ "$out" == "CUDA headers: $part (the bundle has no CUDA 11 headers to complete them); MISSING: crt/mma.h cuda/pipeline cuda/barrier cuda/ptx nv/target (kernels that include them cannot compile)" ]] ||
    fail "no bundled major: $out"

# 8b. A pip install with CUDA 13's layout and a complete CCCL but no crt/ (as torch 2.15's wheels):
# only crt/ comes from the bundle, the machine's CCCL is not mixed with the bundle's, CCCL's own
# __-named files survive the merge, and nothing is written into the machine's folders.
unset CUDA_PATH
site13="$tmp/site13"
inc13="$site13/nvidia/cu13/include"
mkdir -p "$inc13/cooperative_groups" "$inc13/cccl/cuda/std" "$inc13/cccl/nv" "$inc13/nv" "$inc13/crt-not"
for h in cuda_runtime.h cuda_fp16.h cuda_bf16.h cuda_fp8.h mma.h cooperative_groups.h cooperative_groups/memcpy_async.h \
    cccl/cuda/pipeline cccl/cuda/barrier cccl/cuda/ptx cccl/cuda/std/__config cccl/nv/target nv/target __init__.py; do
    touch "$inc13/$h"
done
echo '#define CUDART_VERSION 13020' >"$inc13/cuda_runtime_api.h"
mkdir -p "$bundled/13/include/crt" "$bundled/13/include/cccl/nv"
touch "$bundled/13/include/crt/mma.h" "$bundled/13/include/cccl/cuda/only_in_bundle" "$bundled/13/include/cccl/nv/target"
before=$(find "$site13" | sort)
out=$(GPU_CHECK_SYSTEM_CUDA="$tmp/no-cuda" GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site13" gpu_check_headers "$tmp/cuda9" "$bundled")
[[ "$out" == "CUDA headers: merged from PyTorch's nvidia wheels into $tmp/cuda9/include, completed with the bundle's CUDA 13 headers for: crt/mma.h (CUDA_PATH=$tmp/cuda9)" ]] ||
    fail "CUDA 13 pip layout: $out"
[[ $(readlink -f "$tmp/cuda9/include/crt/mma.h") == "$bundled/13/include/crt/mma.h" ]] || fail "crt/mma.h not from the bundle"
[[ -e "$tmp/cuda9/include/cccl/cuda/std/__config" ]] || fail "CCCL's __config lost in the merge"
[[ ! -e "$tmp/cuda9/include/cccl/cuda/only_in_bundle" ]] || fail "the bundle's CCCL was mixed into the machine's"
[[ ! -e "$tmp/cuda9/include/__init__.py" ]] || fail "merged the wheel's __init__.py"
[[ "$(find "$site13" | sort)" == "$before" ]] || fail "the merge wrote into the machine's folders"

# 9. No headers anywhere: reported, and the function fails.
rm -rf "$site/nvidia/cuda_runtime/include"
if out=$(GPU_CHECK_SYSTEM_CUDA="$tmp/no-cuda" GPU_CHECK_SYSTEM_DIRS="$sys" GPU_CHECK_SITE_DIRS="$site" gpu_check_headers "$tmp/cuda5"); then
    fail "missing headers not reported: $out"
fi
grep -q "CUDA headers: MISSING" <<<"$out" || fail "expected MISSING: $out"

echo "test_libs.sh: all checks passed"
