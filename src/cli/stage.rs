//! `train pretrain` and `train ift`.

use std::path::PathBuf;

use anchorage_train::{recipe::load_recipe, Plan, Stage};
use anyhow::{bail, Context};
use clap::Args;

#[derive(Debug, Args)]
pub struct StageArgs {
    /// Recipe file (TOML), e.g. recipes/pretrain/anchor_former_145.toml.
    pub recipe: PathBuf,
    /// Override a recipe value, e.g. `--set optim.lr=2e-5 --set connector.kind=mlp`. Repeatable;
    /// VALUE is read as TOML (numbers, booleans, arrays, inline tables) or else as a string.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Check the recipe and print it fully resolved with the derived numbers (samples, optimizer
    /// steps, warmup steps, gradient accumulation), then exit without loading models or data.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue the run in RUN_DIR from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
}

pub fn run(stage: Stage, args: StageArgs) -> anyhow::Result<()> {
    let recipe = load_recipe(&args.recipe, &args.overrides)?;
    if recipe.run.stage != stage {
        bail!(
            "{}: key `run.stage` is \"{}\", but this is `train {}`; use `train {}` or change the recipe",
            args.recipe.display(),
            recipe.run.stage.name(),
            stage.name(),
            recipe.run.stage.name()
        );
    }
    let plan = Plan::new(&recipe).context("planning the run")?;
    if args.dry_run {
        println!("# resolved recipe ({})", args.recipe.display());
        println!("{}", recipe.to_toml());
        println!("# derived");
        println!("{plan}");
        if let Err(why) = crate::backend::check(recipe.devices.backend) {
            println!("note: {why}");
        }
        return Ok(());
    }
    crate::backend::check(recipe.devices.backend).map_err(anyhow::Error::msg)?;
    // The trainer lands with the training issue; until then a real run says so instead of
    // pretending to train.
    bail!(
        "training is not implemented yet in this build; `--dry-run` checks the recipe and prints the plan{}",
        if args.resume.is_some() { " (and --resume needs the trainer too)" } else { "" }
    )
}
