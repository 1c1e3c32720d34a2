#!/usr/bin/env bash
# Builds the GPU check's bundle (docs/gpu-check.md): one tarball holding the `train` binary, the
# kernels' integration-test binary and the anchor_gather and recomputed_attention benchmarks, all
# `--release --features cuda`, stripped and xz-compressed, beside run.sh and the files the run
# reads. Run it from anywhere in the repository on a machine with cargo; copy the tarball to the
# GPU machine, which needs no cargo:
#
#   gpu-check/bundle.sh                   # writes $CARGO_TARGET_DIR/gpu-check.tar (default target/)
#   tar xf gpu-check.tar && gpu-check/run.sh
#
# Environment:
#   CARGO_TARGET_DIR      honoured (default: target/ in the repository)
#   CARGO_LOCK            a file to `flock` around the cargo build (machines that share their cores)
#   CUDARC_CUDA_VERSION   the CUDA API cudarc binds (default 12080, CUDA 12.8: a newer driver runs it
#                         too, while bindings of the newest CUDA need symbols older drivers lack)
#   GPU_CHECK_TAR         where to write the tarball
#   GPU_CHECK_HEADERS     0: leave out the CUDA headers fetched from PyPI (fetch_cuda_headers.py)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
tarball=${GPU_CHECK_TAR:-$target/gpu-check.tar}
limit=$((64 * 1024 * 1024))
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-12080}

for tool in cargo strip xz tar python3; do
    command -v "$tool" >/dev/null || { echo "bundle.sh: needs $tool on PATH" >&2; exit 1; }
done

# One cargo invocation for the four executables, so that they share one feature resolution
# (and one build of burn): the root package's `cuda` feature and the kernels package's.
# shellcheck disable=SC2054 # the comma separates cargo features, not array elements
build=(cargo build --release -p anchorage -p anchorage-kernels
       --features anchorage/cuda,anchorage-kernels/cuda
       --bin train --bench anchor_gather --bench recomputed_attention --test integration
       --message-format=json-render-diagnostics)
artifacts=$(mktemp)
trap 'rm -f "$artifacts"' EXIT
echo "building (CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION, target $target): ${build[*]}" >&2
if [[ -n "${CARGO_LOCK:-}" ]]; then
    CARGO_TARGET_DIR=$target flock "$CARGO_LOCK" "${build[@]}" >"$artifacts"
else
    CARGO_TARGET_DIR=$target "${build[@]}" >"$artifacts"
fi

# The executables from cargo's JSON messages, one `bundle-name:path` line each (the kernels'
# `integration` test, not the root's).
mapfile -t pairs < <(python3 - "$artifacts" <<'EOF'
import json, sys
# (cargo's target name, package or None) -> the name in the bundle's bin/, in the bundle's order.
wanted = {("train", None): "train", ("integration", "anchorage-kernels"): "kernels-tests",
          ("anchor_gather", None): "anchor_gather", ("recomputed_attention", None): "recomputed_attention"}
found = {}
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    for (target, package), bundled in wanted.items():
        if m["target"]["name"] == target and (package is None or package in m["package_id"]):
            found[bundled] = m["executable"]
missing = [b for b in wanted.values() if b not in found]
if missing:
    sys.exit(f"bundle.sh: cargo reported no executable for {missing}")
for bundled in wanted.values():
    print(f"{bundled}:{found[bundled]}")
EOF
)
((${#pairs[@]} == 4)) || { echo "bundle.sh: not every executable was found in cargo's output" >&2; exit 1; }

stage="$target/gpu-check-stage"
rm -rf "$stage"
root="$stage/gpu-check"
mkdir -p "$root/bin" "$root/benches" "$root/kernels/benches" "$root/recipes/bench" "$root/data-manifests"
glibc_versions=()
for pair in "${pairs[@]}"; do
    name=${pair%%:*}
    exe=${pair#*:}
    # The newest glibc symbol version any binary needs: run.sh names it where they cannot start.
    needed=$(objdump -T "$exe" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1 || true)
    [[ -n "$needed" ]] && glibc_versions+=("$needed")
    strip -o "$root/bin/$name" "$exe"
    echo "$name: $(stat -c %s "$root/bin/$name") bytes stripped" >&2
    xz -T0 -9 "$root/bin/$name"
done
cp gpu-check/run.sh gpu-check/libs.sh gpu-check/report.py gpu-check/nvrtc_check.py "$root/"
# The CUDA headers PyTorch's pip wheels lack (crt/mma.h and CCCL, for CubeCL's tensor-core,
# pipeline and TMA kernels), from NVIDIA's wheels on PyPI, for CUDA 12 and 13 (under 1 MiB with xz).
# run.sh adds them only where the GPU machine's own headers lack them. Without PyPI the bundle is
# built without them, and a pip-only GPU machine then cannot compile those kernels.
headers="$stage/cuda-headers"
header_majors=none
if [[ "${GPU_CHECK_HEADERS:-1}" == 0 ]]; then
    echo "bundle.sh: GPU_CHECK_HEADERS=0: no CUDA headers in the bundle" >&2
elif python3 gpu-check/fetch_cuda_headers.py "$headers" >&2 || [[ -d "$headers" ]]; then
    tar -C "$headers" -cJf "$root/cuda-headers.tar.xz" .
    header_majors=""
    for dir in "$headers"/*/; do
        header_majors+="${header_majors:+,}$(basename "$dir")"
    done
    echo "cuda-headers.tar.xz: $(stat -c %s "$root/cuda-headers.tar.xz") bytes (CUDA $header_majors)" >&2
else
    echo "bundle.sh: WARNING: could not fetch the CUDA headers from PyPI; the bundle has none" >&2
fi
cp benches/llava_train_step.py benches/matmul.py "$root/benches/"
cp kernels/benches/acformer_host_loop.py "$root/kernels/benches/"
cp recipes/bench/llava7b_*.toml "$root/recipes/bench/"
# The bench recipes name a data manifest (its samples are not read: the step runs on synthetic ones).
cp -r data-manifests/tiny "$root/data-manifests/"
{
    echo "commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
    echo "cudarc_cuda_version=$CUDARC_CUDA_VERSION"
    echo "cuda_headers=$header_majors"
    echo "glibc_needed=$(printf '%s\n' "${glibc_versions[@]:-unknown}" | sort -uV | tail -n 1)"
} >"$root/BUILD_INFO"

mkdir -p "$(dirname "$tarball")"
tar -C "$stage" -cf "$tarball" gpu-check
size=$(stat -c %s "$tarball")
echo "$tarball: $size bytes ($((size / 1024 / 1024)) MiB; limit 64 MiB)"
if ((size > limit)); then
    echo "bundle.sh: the bundle is over 64 MiB" >&2
    exit 1
fi
