//! Whether this machine can run the wgpu tests: they need a Vulkan driver (on a CPU machine,
//! Mesa's lavapipe: `apt-get install mesa-vulkan-drivers`). Without one the tests say so and pass,
//! so the README's test command works on a fresh machine; CI installs lavapipe and sets
//! `ANCHORAGE_REQUIRE_WGPU=1`, which turns a missing driver into a failure. The root package's
//! integration tests include this file too (`tests/main.rs`), for the trainer on wgpu.
//!
//! The CUDA tests likewise need the NVIDIA driver (libcuda), NVRTC and a device;
//! `ANCHORAGE_REQUIRE_CUDA=1` (set by the GPU check, `gpu-check/run.sh`) turns their absence into a
//! failure.

use std::path::Path;

#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub fn wgpu_available() -> bool {
    let has_icd = std::env::var_os("VK_ICD_FILENAMES").is_some()
        || ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"].iter().any(|d| {
            std::fs::read_dir(Path::new(d))
                .map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "json")))
                .unwrap_or(false)
        });
    if has_icd {
        return true;
    }
    if std::env::var_os("ANCHORAGE_REQUIRE_WGPU").is_some_and(|v| v == "1") {
        panic!("ANCHORAGE_REQUIRE_WGPU=1 but no Vulkan driver is installed (apt-get install mesa-vulkan-drivers)");
    }
    eprintln!("skipping a wgpu test: no Vulkan driver (apt-get install mesa-vulkan-drivers to run it)");
    false
}

/// Whether burn's CUDA backend can run here: libcuda and libnvrtc load, the driver initialises and
/// reports a device. Asked before any CUDA tensor exists (burn's backend panics inside cudarc
/// without a driver).
#[cfg(feature = "cuda")]
pub fn cuda_available() -> bool {
    let Some(missing) = cuda_missing() else {
        return true;
    };
    if std::env::var_os("ANCHORAGE_REQUIRE_CUDA").is_some_and(|v| v == "1") {
        panic!("ANCHORAGE_REQUIRE_CUDA=1 but {missing}");
    }
    eprintln!("skipping a CUDA kernel test: {missing}");
    false
}

/// What keeps CUDA from running, or `None`.
#[cfg(feature = "cuda")]
fn cuda_missing() -> Option<String> {
    // SAFETY: each probe only opens and closes a shared library by name (libloading).
    let (driver, nvrtc) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
        )
    };
    if !driver {
        return Some("libcuda (the NVIDIA driver) cannot be loaded".to_string());
    }
    if !nvrtc {
        return Some("libnvrtc (the CUDA runtime compiler) cannot be loaded; put its folder on LD_LIBRARY_PATH".to_string());
    }
    if let Err(e) = cudarc::driver::result::init() {
        return Some(format!("the CUDA driver does not initialise ({e:?})"));
    }
    match cudarc::driver::result::device::get_count() {
        Ok(n) if n > 0 => None,
        Ok(_) => Some("the CUDA driver reports no device".to_string()),
        Err(e) => Some(format!("the CUDA driver cannot count its devices ({e:?})")),
    }
}
