//! The one place that picks a compute backend: library crates are generic over burn's `Backend`.

use anchorage_train::recipe::Backend;

/// Pure-Rust CPU backend (default, CI).
#[allow(dead_code)]
pub type Flex = burn::backend::Flex;

/// Whether this binary can run `backend`; GPU backends are cargo features of the binary.
pub fn check(backend: Backend) -> Result<(), String> {
    let built = match backend {
        Backend::Flex => true,
        Backend::Cuda => cfg!(feature = "cuda"),
        Backend::Wgpu => cfg!(feature = "wgpu"),
    };
    if built {
        Ok(())
    } else {
        let name = match backend {
            Backend::Flex => "flex",
            Backend::Cuda => "cuda",
            Backend::Wgpu => "wgpu",
        };
        Err(format!(
            "devices.backend = \"{name}\" needs a binary built with `--features {name}` (this one was not)"
        ))
    }
}
