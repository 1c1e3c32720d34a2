//! Running the `train` binary from end-to-end tests (each file under tests/ is its own crate and
//! includes this module).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `train` with `args` (logging at `warn`) and waits for it.
pub fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run train")
}

/// stdout followed by stderr, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Each logged step of a run as `step:loss`, the loss in its exact decimal text (equal strings are
/// equal bits), for comparing runs.
pub fn losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{}:{}", v["step"], v["loss"])
        })
        .collect()
}
