//! Whether this machine can run the wgpu tests: they need a Vulkan driver (on a CPU machine,
//! Mesa's lavapipe: `apt-get install mesa-vulkan-drivers`). Without one the tests say so and pass,
//! so the README's test command works on a fresh machine; CI installs lavapipe and sets
//! `ANCHORAGE_REQUIRE_WGPU=1`, which turns a missing driver into a failure.

use std::path::Path;

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
    eprintln!("skipping a wgpu kernel test: no Vulkan driver (apt-get install mesa-vulkan-drivers to run it)");
    false
}
