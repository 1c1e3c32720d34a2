//! This package's integration tests as one test binary: each file below is a module, so the
//! package links one test executable instead of one per file (less disk and link time in CI).
//! Run one file's tests with `cargo test --test integration <file>::`.

mod support;

mod acformer_fixture;
mod host_ops_parity;
mod cuda_parity;
mod parity_cases;
mod wgpu_parity;
