#!/usr/bin/env python3
"""Fetches the CUDA headers a PyTorch pip install lacks, for the GPU check's bundle (bundle.sh).

CubeCL compiles its CUDA kernels with NVRTC at run time. Its generated sources include, besides
cuda_runtime.h and the float types' headers, `mma.h` (tensor-core matmuls; it includes
`crt/mma.h`) and CCCL's libcu++ headers (`cuda/pipeline`, `cuda/barrier`, `cuda/ptx`,
`nv/target`) for the pipelined, barrier and TMA kernels of Hopper cards (cubecl-cpp 0.10
`CudaDialect::compile_includes`). PyTorch's wheels ship cuda_runtime.h and NVRTC, but neither
`crt/mma.h` (NVIDIA's nvcc/crt wheels) nor CCCL (its cccl wheels): measured with NVRTC 12.8 and
13.2 from pip, sources including them fail with `cannot open source file "crt/mma.h"` /
`"nv/target"` / `"cuda/ptx"`.

This downloads those wheels from PyPI (pinned versions, one set per CUDA major version) and
extracts only the header folders that are missing into OUT/<major>/include, with the wheels'
license files in OUT/<major>/licenses. run.sh's libs.sh adds them where the machine's headers lack
them, for the major version of the NVRTC it loads.

    python3 gpu-check/fetch_cuda_headers.py OUT_DIR

Needs pip and PyPI (the registry); prints one line per major version; exit 1 when a download
fails (bundle.sh then builds the bundle without them and says so).
"""

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# Per CUDA major version: the wheels, and which include sub-paths to keep from them (libcu++'s
# cuda/ and nv/, at the top or under cccl/ as in CUDA 13; the crt/ folder holding crt/mma.h).
# cub/ and thrust/ are not included by CubeCL's kernels and are left out.
SETS = {
    "12": ["nvidia-cuda-cccl-cu12==12.8.90", "nvidia-cuda-nvcc-cu12==12.8.93"],
    "13": ["nvidia-cuda-cccl==13.2.86", "nvidia-cuda-crt==13.2.86"],
}
KEEP = ("crt/", "cuda/", "nv/", "cccl/cuda/", "cccl/nv/")


def extract(wheel: Path, include: Path, licenses: Path) -> int:
    count = 0
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            parts = name.split("/")
            if "licenses" in parts or name.endswith(("License.txt", "LICENSE.txt", "LICENSE")):
                (licenses / f"{wheel.name.split('-')[0]}-{parts[-1]}").write_bytes(z.read(name))
                continue
            # nvidia/<pkg>/include/<rest>
            if len(parts) < 4 or parts[0] != "nvidia" or parts[2] != "include" or name.endswith("/"):
                continue
            rest = "/".join(parts[3:])
            if not rest.startswith(KEEP):
                continue
            out = include / rest
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
            count += 1
    return count


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: fetch_cuda_headers.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    failed = False
    for major, specs in SETS.items():
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "-d", tmp, *specs]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["(no output)"]
                print(f"CUDA {major} headers: download failed ({' '.join(specs)}): {tail[0]}",
                      file=sys.stderr)
                failed = True
                continue
            include = out / major / "include"
            licenses = out / major / "licenses"
            include.mkdir(parents=True, exist_ok=True)
            licenses.mkdir(parents=True, exist_ok=True)
            files = sum(extract(w, include, licenses) for w in sorted(Path(tmp).glob("*.whl")))
            missing = [h for h in ("crt/mma.h", "nv/target", "cuda/barrier", "cuda/ptx")
                       if not (include / h).exists() and not (include / "cccl" / h).exists()]
            if missing:
                print(f"CUDA {major} headers: the wheels lack {missing}", file=sys.stderr)
                failed = True
                continue
            print(f"CUDA {major} headers: {files} files from {', '.join(specs)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
