//! The CUDA headers burn's CUDA backend needs at run time. CubeCL compiles every kernel with NVRTC
//! against `$CUDA_PATH/include` (else `/usr/local/cuda`, `/opt/cuda`, or `/usr` beside
//! `/usr/bin/nvcc`: cubecl-cuda 0.10 `install::cuda_path`), and panics when none of those exists.
//! Its sources include `cuda_runtime.h` always, and by kernel the float types' headers, `mma.h`
//! (tensor-core matmuls; it includes `crt/mma.h`) and CCCL's `cuda/pipeline`, `cuda/barrier`,
//! `cuda/ptx` and `nv/target` (Hopper's pipelined, barrier and TMA kernels; also found under
//! `cccl/`, CUDA 13's layout). A PyTorch pip install has `cuda_runtime.h` in its wheels but no
//! `/usr/local/cuda`, and its wheels lack `crt/mma.h` (and CCCL before CUDA 13): measured with
//! NVRTC, see docs/gpu-check.md. This finds the folder as CubeCL will and names what is missing
//! before anything is built on the GPU.

// Only CUDA builds call the check; the rest is tested in every build.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

use std::path::{Path, PathBuf};

/// Without it no kernel compiles.
pub const REQUIRED: &str = "cuda_runtime.h";

/// Included by some kernels only: missing ones make those kernels fail to compile.
pub const BY_KERNEL: [&str; 11] = [
    "cuda_fp16.h",
    "cuda_bf16.h",
    "cuda_fp8.h",
    "mma.h",
    "crt/mma.h",
    "cooperative_groups.h",
    "cooperative_groups/memcpy_async.h",
    "cuda/pipeline",
    "cuda/barrier",
    "cuda/ptx",
    "nv/target",
];

/// CubeCL's CUDA root: `CUDA_PATH`, else the first of `/usr/local/cuda` and `/opt/cuda` that
/// exists, else `/usr` where `/usr/bin/nvcc` exists.
pub fn cuda_root(cuda_path: Option<&str>, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if let Some(path) = cuda_path {
        return Some(PathBuf::from(path));
    }
    ["/usr/local/cuda", "/opt/cuda"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| exists(p))
        .or_else(|| exists(Path::new("/usr/bin/nvcc")).then(|| PathBuf::from("/usr")))
}

/// What `include` lacks of [`BY_KERNEL`] (a header under `include/cccl/` counts), or an error when
/// it has no [`REQUIRED`] header.
pub fn missing(include: &Path) -> Result<Vec<&'static str>, String> {
    if !include.join(REQUIRED).is_file() {
        return Err(format!("{} has no {REQUIRED}", include.display()));
    }
    Ok(BY_KERNEL
        .into_iter()
        .filter(|h| !include.join(h).exists() && !include.join("cccl").join(h).exists())
        .collect())
}

/// The check before the CUDA backend starts: an error when CubeCL would find no headers (it would
/// panic, or fail every kernel), a warning naming the headers some kernels will miss.
pub fn check() -> Result<(), String> {
    let fix = "Point CUDA_PATH at a CUDA toolkit of the same major version as the libnvrtc in use, or at a \
               folder whose include/ merges the include/ folders of PyTorch's site-packages/nvidia/* wheels \
               (gpu-check/libs.sh `gpu_check_headers` makes one; docs/gpu-check.md)";
    let env = std::env::var("CUDA_PATH").ok().filter(|p| !p.is_empty());
    let Some(root) = cuda_root(env.as_deref(), |p| p.exists()) else {
        return Err(format!(
            "devices.backend = \"cuda\": no CUDA headers: CubeCL compiles its kernels with NVRTC against \
             $CUDA_PATH/include, and CUDA_PATH is not set and neither /usr/local/cuda nor /opt/cuda exists. {fix}"
        ));
    };
    let include = root.join("include");
    match missing(&include) {
        Err(e) => Err(format!(
            "devices.backend = \"cuda\": CubeCL compiles its kernels with NVRTC against the CUDA headers in {}, \
             but {e}. {fix}",
            include.display()
        )),
        Ok(gaps) if !gaps.is_empty() => {
            tracing::warn!(
                "the CUDA headers in {} lack {}: CubeCL kernels that include them (tensor-core matmuls, \
                 Hopper's pipelined and TMA kernels) will fail to compile. {fix}",
                include.display(),
                gaps.join(", ")
            );
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn the_root_is_found_as_cubecl_finds_it() {
        assert_eq!(cuda_root(Some("/x"), |_| false), Some(PathBuf::from("/x")));
        assert_eq!(cuda_root(None, |p| p == Path::new("/opt/cuda")), Some(PathBuf::from("/opt/cuda")));
        let both = |p: &Path| p == Path::new("/opt/cuda") || p == Path::new("/usr/local/cuda");
        assert_eq!(cuda_root(None, both), Some(PathBuf::from("/usr/local/cuda")));
        assert_eq!(cuda_root(None, |p| p == Path::new("/usr/bin/nvcc")), Some(PathBuf::from("/usr")));
        assert_eq!(cuda_root(None, |_| false), None);
    }

    #[test]
    fn missing_headers_are_named_and_cccl_s_layout_counts() {
        let dir = tempfile::tempdir().unwrap();
        let include = dir.path().join("include");
        fs::create_dir_all(include.join("crt")).unwrap();
        let err = missing(&include).unwrap_err();
        assert!(err.ends_with("has no cuda_runtime.h"), "{err}");
        for h in ["cuda_runtime.h", "cuda_fp16.h", "cuda_bf16.h", "mma.h"] {
            fs::write(include.join(h), "").unwrap();
        }
        let gaps = missing(&include).unwrap();
        assert!(gaps.contains(&"crt/mma.h") && gaps.contains(&"nv/target") && !gaps.contains(&"mma.h"), "{gaps:?}");
        fs::write(include.join("crt/mma.h"), "").unwrap();
        fs::create_dir_all(include.join("cccl/nv")).unwrap();
        fs::write(include.join("cccl/nv/target"), "").unwrap();
        let gaps = missing(&include).unwrap();
        assert!(!gaps.contains(&"crt/mma.h") && !gaps.contains(&"nv/target"), "{gaps:?}");
        assert!(gaps.contains(&"cuda/ptx"), "{gaps:?}");
    }
}
