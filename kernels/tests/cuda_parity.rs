//! Kernel vs reference-twin parity on CUDA (the same cases as `wgpu_parity.rs`, from
//! `parity_cases.rs`); the reference runs on flex. Without a CUDA driver and device the tests say
//! so and pass, unless `ANCHORAGE_REQUIRE_CUDA=1` (the GPU check, `gpu-check/run.sh`, sets it).
//!
//! `cargo test -p anchorage-kernels --features cuda --test integration cuda_parity::`
#![cfg(feature = "cuda")]

use crate::parity_cases::parity_tests;

parity_tests!(burn::backend::Cuda, crate::support::cuda_available);
