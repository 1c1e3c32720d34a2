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

/// `train STAGE RECIPE` writing run `name` under `dir`, with `--set` for each of `sets`, then
/// `extra` as given (more flags, `--resume`, `--node-rank` ...).
pub fn stage_args(stage: &str, recipe: &str, dir: &Path, name: &str, sets: &[&str], extra: &[&str]) -> Vec<String> {
    let mut a = vec![stage.to_string(), recipe.to_string()];
    let run = [format!("run.output_dir=\"{}\"", dir.display()), format!("run.name=\"{name}\"")];
    for set in run.iter().map(String::as_str).chain(sets.iter().copied()) {
        a.extend(["--set".to_string(), set.to_string()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Runs `train` with `args` and asserts that it succeeded (its output in the failure message).
pub fn train_ok(args: &[String]) -> Output {
    let out = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out));
    out
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
