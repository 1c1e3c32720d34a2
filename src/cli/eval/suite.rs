//! `train eval suite RUN --suite suites/llava15.toml [--data-root DIR] [--batch-size N]
//! [--set k=v]...`: generation and scoring for the suite's benchmarks into `RUN/eval/`, with the
//! efficiency of each, `RUN/eval/summary.json`, and the headline numbers in the run's TensorBoard.

use std::path::PathBuf;

use anchorage_eval::run::{EvalModel, RunOptions};
use anchorage_eval::suite::{run_suite, Suite};
use anyhow::Context;
use burn::tensor::backend::Backend;
use clap::Args;

use crate::backend::BackendJob;
use crate::cli::run_model::Placement;

#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Run folder (its newest step checkpoint) or one of its step folders.
    pub run: PathBuf,
    /// Suite file, e.g. suites/llava15.toml or suites/world.toml.
    #[arg(long)]
    pub suite: PathBuf,
    /// Folder the suite's paths are relative to (default: the suite's own `data_root`).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Override the run's model.toml with recipe keys, e.g. `--set compression.method=fastv`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Write into this folder instead of RUN/eval.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub placement: Placement,
}

pub fn run(args: SuiteArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let suite = Suite::read(&args.suite)?;
    let root = args.data_root.clone().or_else(|| suite.data_root.clone()).context("give --data-root (the suite names no data_root)")?;
    args.placement.clone().run(&args.run.clone(), Job { args, suite, root })
}

/// What `train eval suite` does on the chosen backend.
struct Job {
    args: SuiteArgs,
    suite: Suite,
    root: PathBuf,
}

impl BackendJob for Job {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let model = crate::cli::run_model::open::<B>(&self.args.run, &self.args.overrides, &device)?;
        evaluate(self, model)
    }
}

fn evaluate<B: Backend>(job: Job, model: EvalModel<B>) -> anyhow::Result<()> {
    let Job { args, suite, root } = job;
    let out = args.out.clone().unwrap_or_else(|| args.run.join("eval"));
    let options = RunOptions { batch_size: args.batch_size, max_new_tokens: 128, progress: std::io::IsTerminal::is_terminal(&std::io::stderr()) };
    let summary = run_suite(&model, &suite, &root, &out, &options)?;
    for (name, result) in &summary.benches {
        let headline = result.headline.map_or("—".to_string(), |h| format!("{h:.2}"));
        let e = &result.efficiency;
        println!("{name:<10} {headline:>8}   visual tokens {:.1}   prefill {:.3} s   decode {:.1} tok/s", e.visual_tokens_per_prompt(), e.prefill_latency(), e.decode_tokens_per_s());
    }
    for (name, what) in &summary.missing {
        println!("{name:<10} skipped: {what}");
    }
    println!("summary:    {}", out.join("summary.json").display());
    crate::cli::run_model::log_scalars(&args.run, &summary)?;
    Ok(())
}
