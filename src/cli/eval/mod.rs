//! `train eval ...`: benchmarks. `score` reads a LLaVA answer file and gives the reference scripts'
//! numbers; generation (`run`) and whole suites sit next to it as further subcommands.

mod score;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score a LLaVA answer file exactly as LLaVA-1.5's reference scripts do (TextVQA, POPE,
    /// ScienceQA, GQA, SEED-Bench, MME, VQAv2) and write the numbers as JSON.
    Score(score::ScoreArgs),
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Score(args) => score::run(args),
    }
}
