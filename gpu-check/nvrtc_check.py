#!/usr/bin/env python3
"""Compiles, with the NVRTC that burn's CUDA backend will load, small kernels that include each set
of headers CubeCL's generated CUDA sources may include (cubecl-cpp 0.10
`CudaDialect::compile_includes`), with CubeCL's own NVRTC options (cubecl-cuda 0.10
`compile_kernel`: `--gpu-architecture=sm_<cc>[a]`, `--include-path=$CUDA_PATH/include` and its
`cccl/` folder where present, `-lineinfo`). NVRTC needs no GPU, so this runs anywhere: on the GPU
machine it says in a second, before any part runs, whether a header problem will break CubeCL's
kernels, and which headers.

    python3 gpu-check/nvrtc_check.py --compute-cap 9.0
    python3 gpu-check/nvrtc_check.py --major    # only NVRTC's major version (libs.sh uses it)

Where libcuda loads (the GPU machine), it also loads one compiled kernel's PTX on GPU 0 as CubeCL
does (`cuModuleLoadData`): the driver JIT-compiles PTX only up to its own CUDA version, so an NVRTC
newer than the driver (PyTorch's minor-version compatibility allows that pairing for its own
prebuilt kernels) makes every CubeCL kernel fail with CUDA_ERROR_UNSUPPORTED_PTX_VERSION.

Prints one line (`NVRTC 12.8 (...), sm_90a, headers ...: basic ok, ...; driver CUDA 12.8, PTX loads`)
and exits 0 when every set compiled and the PTX loaded (or no driver is there to try), 1
otherwise (with the first line of the first failure's log), 2 when NVRTC cannot be loaded.
"""

import argparse
import ctypes
import os
import sys

SETS = {
    "basic": ["cuda_runtime.h"],
    "f16_bf16": ["cuda_runtime.h", "cuda_fp16.h", "cuda_bf16.h"],
    "fp8": ["cuda_runtime.h", "cuda_fp8.h"],
    "wmma": ["cuda_runtime.h", "cuda_fp16.h", "mma.h"],
    "pipeline": ["cuda_runtime.h", "cooperative_groups/memcpy_async.h", "cuda/pipeline"],
    "barrier": ["cuda_runtime.h", "cooperative_groups.h", "cooperative_groups/memcpy_async.h",
                "cuda/barrier"],
    "ptx": ["cuda_runtime.h", "cuda/ptx"],
}
KERNEL = 'extern "C" __global__ void probe(float* a) { a[threadIdx.x] += 1.0f; }\n'


def cuda_path():
    """CubeCL's `cuda_path()`: CUDA_PATH, else /usr/local/cuda, /opt/cuda, /usr beside nvcc."""
    if os.environ.get("CUDA_PATH"):
        return os.environ["CUDA_PATH"]
    for path in ("/usr/local/cuda", "/opt/cuda"):
        if os.path.exists(path):
            return path
    return "/usr" if os.path.exists("/usr/bin/nvcc") else None


def load_nvrtc():
    for suffix in ("", ".12", ".11", ".10", ".9", ".1"):  # cudarc's names
        try:
            return ctypes.CDLL(f"libnvrtc.so{suffix}"), f"libnvrtc.so{suffix}"
        except OSError:
            continue
    return None, None


def compile_set(lib, headers, options):
    """(error line or None, PTX bytes or None)."""
    source = "".join(f"#include <{h}>\n" for h in headers) + KERNEL
    program = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), None, 0, None, None)
    if rc != 0:
        return f"nvrtcCreateProgram returned {rc}", None
    opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
    try:
        if lib.nvrtcCompileProgram(program, len(options), opts) == 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetPTXSize(program, ctypes.byref(size))
            ptx = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetPTX(program, ptx)
            return None, ptx.raw
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(max(size.value, 1))
        lib.nvrtcGetProgramLog(program, log)
        lines = [line for line in log.value.decode(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line] or lines or ["(empty log)"]
        return errors[0].strip(), None
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def load_on_gpu(ptx):
    """(driver CUDA version text, error text or None); (None, None) where libcuda is not there."""
    for name in ("libcuda.so", "libcuda.so.1"):
        try:
            cuda = ctypes.CDLL(name)
            break
        except OSError:
            cuda = None
    if cuda is None:
        return None, None
    version = ctypes.c_int()
    if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None, "cuDriverGetVersion failed"
    driver = f"{version.value // 1000}.{version.value % 1000 // 10}"

    def error(rc, call):
        text = ctypes.c_char_p()
        cuda.cuGetErrorName(rc, ctypes.byref(text))
        return f"{call}: {text.value.decode() if text.value else rc}"

    device, context, module = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
    rc = cuda.cuInit(0)
    if rc != 0:
        return driver, error(rc, "cuInit")
    rc = cuda.cuDeviceGet(ctypes.byref(device), 0)
    if rc != 0:
        return driver, error(rc, "cuDeviceGet")
    rc = cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device)
    if rc != 0:
        return driver, error(rc, "cuDevicePrimaryCtxRetain")
    try:
        rc = cuda.cuCtxSetCurrent(context)
        if rc != 0:
            return driver, error(rc, "cuCtxSetCurrent")
        rc = cuda.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(ptx))
        if rc != 0:
            return driver, error(rc, "cuModuleLoadData")
        cuda.cuModuleUnload(module)
        return driver, None
    finally:
        cuda.cuDevicePrimaryCtxRelease(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--compute-cap", help="the GPU's compute capability, e.g. 9.0")
    mode.add_argument("--major", action="store_true", help="print only the loaded NVRTC's major version")
    a = ap.parse_args()
    lib, name = load_nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    if lib is None or not hasattr(lib, "nvrtcVersion") or lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) != 0:
        print("NVRTC: cannot load libnvrtc under the names cudarc tries (libnvrtc.so, .so.12, ...)")
        return 2
    if a.major:
        print(major.value)
        return 0
    cc = a.compute_cap.replace(".", "").strip()
    arch = f"sm_{cc}a" if int(cc) >= 90 else f"sm_{cc}"
    root = cuda_path()
    if root is None:
        print(f"NVRTC {major.value}.{minor.value}, {arch}: no CUDA_PATH, /usr/local/cuda or /opt/cuda "
              "(CubeCL cannot find the CUDA headers)")
        return 1
    include = os.path.join(root, "include")
    options = [f"--gpu-architecture={arch}", f"--include-path={include}", "-lineinfo"]
    if os.path.exists(os.path.join(include, "cccl")):
        options.append(f"--include-path={os.path.join(include, 'cccl')}")
    results, first_error, ptx = [], None, None
    for set_name, headers in SETS.items():
        error, compiled = compile_set(lib, headers, options)
        results.append(f"{set_name} {'ok' if error is None else 'FAILED'}")
        if error is not None and first_error is None:
            first_error = f"{set_name}: {error}"
        ptx = ptx or compiled
    line = f"NVRTC {major.value}.{minor.value} ({name}), {arch}, headers {include}: {', '.join(results)}"
    load_error = None
    if ptx is not None:
        driver, load_error = load_on_gpu(ptx)
        if driver is None and load_error is None:
            line += "; PTX not loaded (no libcuda)"
        elif load_error is None:
            line += f"; driver CUDA {driver}, PTX loads on GPU 0"
        else:
            line += f"; driver CUDA {driver or '?'}: PTX does NOT load on GPU 0 ({load_error})"
            if "UNSUPPORTED_PTX_VERSION" in load_error:
                line += (f": NVRTC {major.value}.{minor.value} is newer than the driver; put an NVRTC"
                         " no newer than the driver first on LD_LIBRARY_PATH, or update the driver")
    print(line + (f"; first error: {first_error}" if first_error else ""))
    return 0 if first_error is None and load_error is None else 1


if __name__ == "__main__":
    sys.exit(main())
