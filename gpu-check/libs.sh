# shellcheck shell=bash
# Makes the CUDA libraries burn's CUDA backend loads at run time findable (sourced by run.sh).
#
# cudarc (dynamic loading) opens libcuda, libnvrtc and libnccl by name: libX.so, then libX.so.12,
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

GPU_CHECK_LIB_NAMES=(cuda nvrtc nccl)

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
            ldconfig -p 2>/dev/null | sed -n 's/.*=> \(.*\)\/lib\(cuda\|nvrtc\|nccl\)\.so.*/\1/p' | sort -u
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

# gpu_check_headers ROOT: CubeCL's CUDA compiler passes $CUDA_PATH/include (default /usr/local/cuda,
# /opt/cuda, or /usr when /usr/bin/nvcc exists) to NVRTC, whose kernels include cuda_runtime.h and
# cuda_fp16.h/cuda_bf16.h (cubecl-cuda 0.10 `install::include_path`). Where those folders lack
# cuda_runtime.h (a pip-only machine, or a "runtime" container whose /usr/local/cuda has no
# headers), it merges the include folders of PyTorch's nvidia wheels (cuda_runtime, cuda_nvrtc,
# cuda_cccl, ... : each ships part of the headers) into ROOT/include by symbolic links and exports
# CUDA_PATH=ROOT. Prints one line; returns 1 when no headers were found.
gpu_check_headers() {
    local root=$1 system dir entry
    if [[ -n "${CUDA_PATH:-}" ]]; then
        if [[ -f "$CUDA_PATH/include/cuda_runtime.h" ]]; then
            echo "CUDA headers: $CUDA_PATH/include (CUDA_PATH)"
            return 0
        fi
        echo "CUDA headers: CUDA_PATH=$CUDA_PATH has no include/cuda_runtime.h; looking elsewhere"
    else
        for system in "${GPU_CHECK_SYSTEM_CUDA:-/usr/local/cuda}" /opt/cuda; do
            if [[ -e "$system" ]]; then
                # CubeCL takes the first of these that exists, headers or not.
                if [[ -f "$system/include/cuda_runtime.h" ]]; then
                    echo "CUDA headers: $system/include"
                    return 0
                fi
                break
            fi
        done
    fi
    if [[ ! -e /usr/local/cuda && ! -e /opt/cuda && -x /usr/bin/nvcc && -f /usr/include/cuda_runtime.h ]]; then
        echo "CUDA headers: /usr/include (beside /usr/bin/nvcc)"
        return 0
    fi
    mkdir -p "$root/include"
    local merged=0 name dest first sub
    while IFS= read -r dir; do
        for entry in "$dir"/*; do
            name=$(basename "$entry")
            dest="$root/include/$name"
            [[ -e "$entry" && "$name" != __* ]] || continue
            if [[ ! -e "$dest" ]]; then
                ln -s "$entry" "$dest"
                merged=1
            elif [[ -d "$entry" && -d "$dest" ]]; then
                # Two wheels with the same subfolder (e.g. crt/): merge it one level down.
                if [[ -L "$dest" ]]; then
                    first=$(readlink "$dest")
                    rm "$dest"
                    mkdir "$dest"
                    ln -s "$first"/* "$dest/"
                fi
                for sub in "$entry"/*; do
                    [[ -e "$dest/$(basename "$sub")" ]] || ln -s "$sub" "$dest/"
                done
            fi
        done
    done < <(gpu_check_wheel_include_dirs)
    if [[ $merged == 1 && -f "$root/include/cuda_runtime.h" ]]; then
        export CUDA_PATH=$root
        echo "CUDA headers: merged from PyTorch's nvidia wheels into $root/include (CUDA_PATH)"
        return 0
    fi
    echo "CUDA headers: MISSING (no cuda_runtime.h in /usr/local/cuda, /opt/cuda or PyTorch's nvidia wheels); CubeCL cannot compile kernels"
    return 1
}
