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

/// Every float parameter's values of a module, in visiting order (to compare trained weights).
pub fn parameters<M: burn::module::Module<burn::backend::Flex>>(module: &M) -> Vec<Vec<f32>> {
    use burn::backend::Flex;
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor<Flex> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Flex, D>>) {
            self.0.push(p.val().into_data().convert::<f32>().to_vec().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}
