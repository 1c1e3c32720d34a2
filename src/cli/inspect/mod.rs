//! `train inspect ...`: each subcommand runs the same library code as training on given inputs.

mod llm;
mod recipe;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Check a recipe and print it resolved, with the training plan derived from it.
    Recipe(recipe::RecipeArgs),
    /// Run a decoder LLM on token ids; write logits, hidden states and greedy tokens (safetensors).
    Llm(llm::LlmArgs),
}

pub fn run(cmd: InspectCommand) -> anyhow::Result<()> {
    match cmd {
        InspectCommand::Recipe(args) => recipe::run(args),
        InspectCommand::Llm(args) => llm::run(args),
    }
}
