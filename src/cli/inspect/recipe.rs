use std::path::PathBuf;

use anchorage_train::{recipe::load_recipe, Plan};
use clap::Args;

#[derive(Debug, Args)]
pub struct RecipeArgs {
    /// Recipe file (TOML).
    pub recipe: PathBuf,
    /// Override a recipe value (repeatable), as for `train pretrain`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Print the plan as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RecipeArgs) -> anyhow::Result<()> {
    let recipe = load_recipe(&args.recipe, &args.overrides)?;
    let plan = Plan::new(&recipe)?;
    if args.json {
        let value = serde_json::json!({
            "recipe": recipe,
            "plan": {
                "stage": plan.stage,
                "samples": plan.samples.count,
                "samples_from_manifest": matches!(plan.samples.source, anchorage_data::SampleCountSource::Manifest { .. }),
                "world_size": plan.world_size,
                "micro_batch": plan.micro_batch,
                "global_batch": plan.global_batch,
                "grad_accum": plan.grad_accum,
                "steps_per_epoch": plan.steps_per_epoch,
                "total_steps": plan.total_steps,
                "warmup_steps": plan.warmup_steps,
            }
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", recipe.to_toml());
        println!("{plan}");
    }
    Ok(())
}
