//! `train eval ...`: benchmarks. `score` reads a LLaVA answer file and gives the reference scripts'
//! numbers; generation (`run`) and whole suites sit next to it as further subcommands.

mod run;
mod score;
mod suite;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score a LLaVA answer file exactly as LLaVA-1.5's reference scripts do (TextVQA, POPE,
    /// ScienceQA, GQA, SEED-Bench, MME, VQAv2) and write the numbers as JSON.
    Score(score::ScoreArgs),
    /// Answer a LLaVA question file with a trained run (model_vqa_loader.py's prompts, images and
    /// greedy decoding), writing LLaVA's answers file; an interrupted run continues.
    Run(run::RunArgs),
    /// Answer and score a suite's benchmarks (suites/llava15.toml: LLaVA's playground/data/eval
    /// layout) into RUN/eval/, with efficiency and a summary.
    Suite(suite::SuiteArgs),
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Score(args) => score::run(args),
        EvalCommand::Run(args) => run::run(args),
        EvalCommand::Suite(args) => suite::run(args),
    }
}
