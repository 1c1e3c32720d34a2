//! The GPU check's shell scripts (gpu-check/, docs/gpu-check.md) cannot run for real without an
//! NVIDIA GPU, so their own CPU tests run here, under the suite's one command: library and header
//! finding against a fake PyTorch install (test_libs.sh), and the whole run with a fake
//! nvidia-smi and fake binaries: a failing part, a timed-out part, the JSON and Markdown reports,
//! and the no-GPU exits (test_run.sh).

use std::path::Path;
use std::process::Command;

fn script_passes(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gpu-check").join(name);
    let out = Command::new("bash").arg(&path).output().unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} failed ({}):\n{text}", path.display(), out.status);
}

#[test]
fn library_finding_links_pytorch_s_cuda_libraries_under_cudarc_s_names() {
    script_passes("test_libs.sh");
}

#[test]
fn the_run_reports_every_part_and_refuses_a_machine_without_a_gpu() {
    script_passes("test_run.sh");
}
