//! Running the `train` binary from end-to-end tests (each file under tests/ is its own crate and
//! includes this module).
#![allow(dead_code)]

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
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
