//! Command-line definitions: one module per subcommand; `main` is one `match`.

pub mod bench;
pub mod bench_allreduce;
pub mod bench_matmul;
pub mod bench_parity;
pub mod bench_prefill;
pub mod export;
pub mod generate;
pub mod run_model;
pub mod compare;
pub mod data;
pub mod eval;
pub mod demo;
pub mod inspect;
pub mod stage;

use clap::{Parser, Subcommand};

/// Train and compare vision-language connectors (MLP, C-Abstractor, Perceiver Resampler, Anchor
/// Former) and visual-token compression inside the LLM (ACT-IN-LLM, FastV, HiMAP) on the LLaVA-1.5
/// recipe.
///
/// Logging goes to stderr and follows RUST_LOG (default `info`).
#[derive(Debug, Parser)]
#[command(name = "train", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stage 1: train the connector on caption data (LLaVA-558k, `plain` template).
    Pretrain(stage::StageArgs),
    /// Stage 2: visual instruction tuning (LLaVA-665k, `vicuna_v1` template).
    Ift(stage::StageArgs),
    /// Look inside: run one piece of the pipeline on given inputs and write what it computes.
    #[command(subcommand)]
    Inspect(inspect::InspectCommand),
    /// Data sets: `train data check MANIFEST --root DIR` validates a local copy.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Write a run's connector under upstream key names (LLaVA, transformers Llava, anchorage).
    Export(export::ExportArgs),
    /// Speed: `train bench step RECIPE` times the training step on synthetic samples.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Benchmarks: `train eval score --bench B --result-file A.jsonl ...` gives the reference numbers.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// One greedy answer from a trained run: `train generate RUN --image F --prompt TEXT`.
    Generate(generate::GenerateArgs),
    /// The demo: a procedural world and towers made by anchorage, every connector trained in two
    /// stages, a compression sweep, evaluation and the comparison (CPU, minutes). `train demo
    /// towers --out DIR` trains or reuses the towers alone.
    Demo(demo::DemoArgs),
    /// Compare evaluated runs: a table (Markdown, CSV) of runs × benchmarks with visual tokens,
    /// latency and training time, and plots of accuracy vs visual tokens and vs prefill latency.
    Compare(compare::CompareArgs),
}
