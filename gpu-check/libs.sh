# shellcheck shell=bash
# Makes the CUDA libraries burn's CUDA backend loads at run time findable (sourced by run.sh), and
# cuBLAS for the parts with `devices.matmul = "cublas"` (libcublas loads its libcublasLt from
# its own folder, which is put on LD_LIBRARY_PATH with it).
#
# cudarc (dynamic loading) opens libcuda, libnvrtc, libnccl and libcublas by name: libX.so, then libX.so.12,
# .11, .10, .9, .1 (cudarc 0.19 `get_lib_name_candidates`, for CUDA 12 bindings). A machine whose
# CUDA comes with PyTorch's pip wheels has no system libnvrtc or libnccl, and the wheels name them
# libnvrtc.so.12 / .so.13 and libnccl.so.2 under site-packages/nvidia/*/lib (libnccl.so.2 is not a
# name cudarc tries). So for each library the loader cannot already find under one of those
# names, gpu_check_libs looks for a file libX.so* in the system's library folders, then in
# PyTorch's (torch/lib, nvidia/*/lib), links it as libX.so in a folder of its own, and puts that
# folder and the file's own folder (NVRTC loads libnvrtc-builtins from there) on LD_LIBRARY_PATH.
#
# Test hooks (gpu-check/test_libs.sh): GPU_CHECK_SYSTEM_DIRS replaces the system folders (and
# ldconfig's cache), GPU_CHECK_SITE_DIRS the Python site-packages folders.

GPU_CHECK_LIB_NAMES=(cuda nvrtc nccl cublas)
GPU_CHECK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Whether a fresh process can dlopen one of the names cudarc tries for library $1 (cuda, ...).
gpu_check_loadable() {
    "${GPU_CHECK_PYTHON:-python3}" - "$1" <<'EOF' 2>/dev/null
import ctypes, sys
lib = sys.argv[1]
for suffix in ("", ".12", ".11", ".10", ".9", ".1"):
    try:
        ctypes.CDLL(f"lib{lib}.so{suffix}")
        print(f"lib{lib}.so{suffix}")
        sys.exit(0)
    except OSError:
        pass
sys.exit(1)
EOF
}

# Folders to search, most preferred first: LD_LIBRARY_PATH, the system's, then PyTorch's.
gpu_check_lib_dirs() {
    local d lib
    if [[ -n "${LD_LIBRARY_PATH:-}" ]]; then
        tr ':' '\n' <<<"$LD_LIBRARY_PATH"
    fi
    if [[ -n "${GPU_CHECK_SYSTEM_DIRS+set}" ]]; then
        tr ':' '\n' <<<"$GPU_CHECK_SYSTEM_DIRS"
    else
        if command -v ldconfig >/dev/null; then
            ldconfig -p 2>/dev/null | sed -n 's/.*=> \(.*\)\/lib\(cuda\|nvrtc\|nccl\|cublas\)\.so.*/\1/p' | sort -u
        fi
        printf '%s\n' /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64 /usr/local/nvidia/lib \
            /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/wsl/lib
    fi
    gpu_check_site_dirs | while IFS= read -r d; do
        echo "$d/torch/lib"
        for lib in "$d"/nvidia/*/lib; do
            if [[ -d "$lib" ]]; then echo "$lib"; fi
        done
    done
}

# Python's site-packages folders (where PyTorch and its nvidia wheels are installed).
gpu_check_site_dirs() {
    if [[ -n "${GPU_CHECK_SITE_DIRS+set}" ]]; then
        tr ':' '\n' <<<"$GPU_CHECK_SITE_DIRS"
        return
    fi
    "${GPU_CHECK_PYTHON:-python3}" - <<'PY' 2>/dev/null
import importlib.util, os, site
dirs = []
spec = importlib.util.find_spec("torch")
if spec and spec.submodule_search_locations:
    dirs += [os.path.dirname(p) for p in spec.submodule_search_locations]
try:
    dirs += site.getsitepackages() + [site.getusersitepackages()]
except AttributeError:
    pass
print("\n".join(d for d in dict.fromkeys(dirs) if os.path.isdir(d)))
PY
}

# The first file named libX.so* (highest version within a folder) in the folders on stdin; failing
# that, the first libX-<hash>.so* (older torch wheels bundle libnvrtc-<hash>.so.12 in torch/lib),
# never NVRTC's libnvrtc-builtins.
gpu_check_find_file() {
    local name=$1 dir dirs found pattern
    dirs=$(cat)
    for pattern in "lib$name.so*" "lib$name-*.so*"; do
        while IFS= read -r dir; do
            [[ -n "$dir" && -d "$dir" ]] || continue
            found=$(find "$dir" -maxdepth 1 \( -type f -o -type l \) -name "$pattern" ! -name '*builtins*' 2>/dev/null | sort -V | tail -n 1)
            if [[ -n "$found" ]]; then
                echo "$found"
                return 0
            fi
        done <<<"$dirs"
    done
    return 1
}

# gpu_check_libs LINK_DIR: exports LD_LIBRARY_PATH so that every library loads; prints one line per
# library (`name: how`) and returns 1 when one stays missing.
gpu_check_libs() {
    local link_dir=$1 name file missing=0 how
    mkdir -p "$link_dir"
    for name in "${GPU_CHECK_LIB_NAMES[@]}"; do
        if how=$(gpu_check_loadable "$name"); then
            echo "lib$name: loads as $how"
            continue
        fi
        if ! file=$(gpu_check_lib_dirs | gpu_check_find_file "$name"); then
            echo "lib$name: MISSING (not loadable, no lib$name.so* in the system's or PyTorch's library folders)"
            missing=1
            continue
        fi
        file=$(readlink -f "$file")
        ln -sf "$file" "$link_dir/lib$name.so"
        LD_LIBRARY_PATH="$link_dir:$(dirname "$file")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export LD_LIBRARY_PATH
        if how=$(gpu_check_loadable "$name"); then
            echo "lib$name: $file (linked as $link_dir/lib$name.so)"
        else
            echo "lib$name: FOUND $file but it does not load"
            missing=1
        fi
    done
    return "$missing"
}

# The folders on stdout that hold pip wheels' CUDA headers (site-packages/nvidia/*/include).
gpu_check_wheel_include_dirs() {
    local d inc
    gpu_check_site_dirs | while IFS= read -r d; do
        for inc in "$d"/nvidia/*/include; do
            if [[ -d "$inc" ]]; then echo "$inc"; fi
        done
    done
}

# Headers CubeCL's CUDA code generation may include (cubecl-cpp 0.10 `CudaDialect::compile_includes`):
# the float types', mma.h for tensor-core matmuls (it includes crt/mma.h), and CCCL's libcu++
# (cuda/pipeline, cuda/barrier, cuda/ptx, nv/target) for the pipelined, barrier and TMA kernels of
# Hopper cards. cuda/* and nv/* may also sit under cccl/ (CUDA 13's layout; CubeCL then adds
# $CUDA_PATH/include/cccl to NVRTC's include path).
GPU_CHECK_HEADER_NAMES=(cuda_runtime.h cuda_fp16.h cuda_bf16.h cuda_fp8.h mma.h crt/mma.h cooperative_groups.h
    cooperative_groups/memcpy_async.h cuda/pipeline cuda/barrier cuda/ptx nv/target)

# The headers of GPU_CHECK_HEADER_NAMES that include folder $1 lacks, space-separated (empty: none).
gpu_check_missing_headers() {
    local inc=$1 header missing=()
    for header in "${GPU_CHECK_HEADER_NAMES[@]}"; do
        [[ -e "$inc/$header" || -e "$inc/cccl/$header" ]] || missing+=("$header")
    done
    echo "${missing[*]}"
}

# gpu_check_merge_include SRC DEST: links every entry of SRC into DEST where DEST has none yet (what
# DEST holds wins); a folder both hold is merged one level further down. A DEST that is a link
# becomes a real folder of links first, so nothing is ever written into the linked folders (the
# machine's own). Wheels' __init__.py and __pycache__ are skipped (CCCL's own __config etc. are not).
gpu_check_merge_include() {
    local src=$1 dest=$2 entry name target linked
    if [[ -L "$dest" ]]; then
        linked=$(readlink -f "$dest")
        rm "$dest"
        gpu_check_merge_include "$linked" "$dest"
    fi
    mkdir -p "$dest"
    for entry in "$src"/*; do
        name=$(basename "$entry")
        target="$dest/$name"
        [[ -e "$entry" && "$name" != __init__.py && "$name" != __pycache__ ]] || continue
        if [[ ! -e "$target" && ! -L "$target" ]]; then
            ln -s "$entry" "$target"
        elif [[ -d "$entry" && -d "$target" ]]; then
            gpu_check_merge_include "$entry" "$target"
        fi
    done
}

# The CUDA major version the headers must match: that of the NVRTC cudarc will load
# (nvrtc_check.py --major, beside this file), else CUDART_VERSION in include folder $1. Prints
# nothing if unknown.
gpu_check_cuda_major() {
    local major
    major=$("${GPU_CHECK_PYTHON:-python3}" "$GPU_CHECK_DIR/nvrtc_check.py" --major 2>/dev/null) || major=""
    if [[ -z "$major" && -f "${1:-}/cuda_runtime_api.h" ]]; then
        major=$(sed -n 's/^#define CUDART_VERSION *\([0-9][0-9]*\).*/\1/p' "$1/cuda_runtime_api.h" | head -n 1)
        [[ -n "$major" ]] && major=$((major / 1000))
    fi
    [[ -n "$major" ]] && echo "$major"
    return 0
}

# gpu_check_headers ROOT [BUNDLED]: makes the CUDA headers NVRTC needs findable. CubeCL's CUDA
# compiler passes $CUDA_PATH/include (default /usr/local/cuda, /opt/cuda, or /usr when /usr/bin/nvcc
# exists) to NVRTC (cubecl-cuda 0.10 `install::include_path`).
# - The headers: that folder where it holds cuda_runtime.h; otherwise (a pip-only machine, or a
#   "runtime" container whose /usr/local/cuda has no headers) the include folders of PyTorch's
#   nvidia wheels (cuda_runtime, cuda_nvrtc, ...: each ships part of them) merged into ROOT/include
#   by symbolic links.
# - Where they lack some of GPU_CHECK_HEADER_NAMES (PyTorch's wheels have no crt/mma.h, and before
#   CUDA 13 no CCCL) and BUNDLED/<major>/include exists for the NVRTC's major version
#   (fetch_cuda_headers.py), ROOT/include becomes the found headers plus, of the bundle's
#   components with a missing header (crt/; CCCL's cuda/, nv/, cccl/), the names they lack.
# Exports CUDA_PATH=ROOT when ROOT/include is used. Prints one line; returns 1 when no headers were
# found (headers still missing after this are named in the line, not an error: only the kernels
# that include them fail).
gpu_check_headers() {
    local root=$1 bundled=${2:-} system base="" how="" own=0 dir missing major
    if [[ -n "${CUDA_PATH:-}" ]]; then
        if [[ -f "$CUDA_PATH/include/cuda_runtime.h" ]]; then
            base=$CUDA_PATH/include how="$CUDA_PATH/include (CUDA_PATH)"
        else
            echo "CUDA headers: CUDA_PATH=$CUDA_PATH has no include/cuda_runtime.h; looking elsewhere"
        fi
    else
        for system in "${GPU_CHECK_SYSTEM_CUDA:-/usr/local/cuda}" /opt/cuda; do
            if [[ -e "$system" ]]; then
                # CubeCL takes the first of these that exists, headers or not.
                if [[ -f "$system/include/cuda_runtime.h" ]]; then
                    base=$system/include how="$system/include"
                fi
                break
            fi
        done
        if [[ -z "$base" && ! -e /usr/local/cuda && ! -e /opt/cuda && -x /usr/bin/nvcc && -f /usr/include/cuda_runtime.h ]]; then
            base=/usr/include how="/usr/include (beside /usr/bin/nvcc)"
        fi
    fi
    if [[ -z "$base" ]]; then
        while IFS= read -r dir; do
            gpu_check_merge_include "$dir" "$root/include"
        done < <(gpu_check_wheel_include_dirs)
        if [[ -f "$root/include/cuda_runtime.h" ]]; then
            base=$root/include how="merged from PyTorch's nvidia wheels into $root/include" own=1
        else
            echo "CUDA headers: MISSING (no cuda_runtime.h in /usr/local/cuda, /opt/cuda or PyTorch's nvidia wheels); CubeCL cannot compile kernels"
            return 1
        fi
    fi
    missing=$(gpu_check_missing_headers "$base")
    if [[ -n "$missing" && -n "$bundled" ]]; then
        major=$(gpu_check_cuda_major "$base")
        if [[ -n "$major" && -d "$bundled/$major/include" ]]; then
            # Only the missing components are added, each whole: crt/ for crt/mma.h, and CCCL
            # (cuda/, nv/, cccl/) for its headers; a machine's complete CCCL is never mixed with
            # the bundle's (another version's) files.
            local components=() component
            [[ " $missing " == *" crt/mma.h "* ]] && components+=(crt)
            [[ " $missing " == *" cuda/"* || " $missing " == *" nv/target "* ]] && components+=(cuda nv cccl)
            if ((${#components[@]})); then
                ((own)) || gpu_check_merge_include "$base" "$root/include"
                for component in "${components[@]}"; do
                    if [[ -d "$bundled/$major/include/$component" ]]; then
                        gpu_check_merge_include "$bundled/$major/include/$component" "$root/include/$component"
                    fi
                done
                how="$how, completed with the bundle's CUDA $major headers for: $missing"
                own=1
                missing=$(gpu_check_missing_headers "$root/include")
            fi
        else
            how="$how (the bundle has no CUDA ${major:-?} headers to complete them)"
        fi
    fi
    if ((own)); then
        export CUDA_PATH=$root
        how="$how (CUDA_PATH=$root)"
    fi
    echo "CUDA headers: $how${missing:+; MISSING: $missing (kernels that include them cannot compile)}"
    return 0
}
