//! This package's integration tests as one test binary: each file below is a module, so the
//! package links one test executable instead of one per file (less disk and link time in CI).
//! Run one file's tests with `cargo test --test integration <file>::`.

mod common;
/// The kernels' driver probes (`wgpu_available`: a Vulkan driver, or a failure under
/// `ANCHORAGE_REQUIRE_WGPU=1`), one file for both packages' tests.
#[path = "../kernels/tests/support/mod.rs"]
#[allow(dead_code)]
mod wgpu_support;

mod cli;
mod compress_prune;
mod connectors_cli;
mod cubecl_backend;
mod data_check;
mod data_inspect_image;
mod data_inspect_tokens;
mod data_parallel;
mod demo;
mod demo_world;
mod eval_anyres;
mod eval_run;
mod eval_score;
mod export_hf;
mod fuzz;
mod gpu_check_scripts;
mod hf_llava_inspect;
mod import_graph;
mod llm_inspect;
mod readme;
mod recipe_docs;
mod recipes;
mod run_folder_faults;
mod schedule;
mod train_anyres;
mod train_e2e;
mod vision_inspect;
mod zero1;
