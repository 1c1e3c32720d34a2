//! This package's integration tests as one test binary: each file below is a module, so the
//! package links one test executable instead of one per file (less disk and link time in CI).
//! Run one file's tests with `cargo test --test integration <file>::`.

mod anyres_dataset;
mod golden_anyres;
mod golden_decode;
mod golden_images;
mod golden_tokens;
mod sampler;
mod step_loader;
