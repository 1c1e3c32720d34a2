//! Kernel vs reference-twin parity on wgpu (CubeCL kernels; on a CPU machine through Mesa's
//! lavapipe Vulkan driver, `apt-get install mesa-vulkan-drivers`). The reference runs on flex.
//! The cases are in `parity_cases.rs` (shared with `cuda_parity.rs`).
//!
//! `cargo test -p anchorage-kernels --features wgpu --test integration wgpu_parity::`
#![cfg(feature = "wgpu")]

use crate::parity_cases::parity_tests;

parity_tests!(burn::backend::Wgpu, crate::support::wgpu_available);
