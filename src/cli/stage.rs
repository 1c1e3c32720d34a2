//! `train pretrain` and `train ift`.

use std::path::PathBuf;

use anchorage_train::trainer::{NodeRole, World};
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
    /// Multi-node runs (`devices.nodes` > 1): this node's index, 0-based. Node 0 writes the run
    /// folder; every node needs the same recipe, data and (to resume) checkpoints.
    #[arg(long, value_name = "N", requires = "master")]
    pub node_rank: Option<u32>,
    /// Multi-node runs: HOST:PORT of node 0, where it listens for the other nodes (node 0 binds
    /// the port on every interface), e.g. 10.0.0.1:29500.
    #[arg(long, value_name = "HOST:PORT")]
    pub master: Option<String>,
}

/// The data-parallel world from the recipe's `[devices]` and the node flags.
fn world(recipe: &anchorage_train::Recipe, args: &StageArgs) -> anyhow::Result<World> {
    let nodes = recipe.devices.nodes;
    let node = match (&args.node_rank, nodes) {
        (None, 1) => None,
        (None, n) => bail!("devices.nodes = {n}: start one process per node with --node-rank N and --master HOST:PORT (node 0's address; see the README)"),
        (Some(rank), n) if *rank >= n => bail!("--node-rank {rank}: devices.nodes = {n}, so the rank must be below {n}"),
        (Some(rank), _) => {
            let master = args.master.clone().unwrap_or_default();
            if master.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                bail!("--master {master}: give HOST:PORT, e.g. 10.0.0.1:29500");
            }
            Some(NodeRole { rank: *rank, master })
        }
    };
    Ok(World { local: recipe.devices.ids.len(), nodes, node })
}

pub fn run(stage: Stage, args: StageArgs) -> anyhow::Result<()> {
    let mut recipe = load_recipe(&args.recipe, &args.overrides)?;
    if recipe.run.stage != stage {
        bail!(
            "{}: key `run.stage` is \"{}\", but this is `train {}`; use `train {}` or change the recipe",
            args.recipe.display(),
            recipe.run.stage.name(),
            stage.name(),
            recipe.run.stage.name()
        );
    }
    if let Some(run_dir) = &args.resume {
        // The run folder names the run: <output_dir>/<name>.
        let name = run_dir.file_name().and_then(|n| n.to_str()).with_context(|| format!("--resume {}: not a run folder", run_dir.display()))?;
        if !run_dir.is_dir() {
            bail!("--resume {}: folder does not exist", run_dir.display());
        }
        recipe.run.name = name.to_string();
        recipe.run.output_dir = run_dir.parent().map(|p| p.to_path_buf()).unwrap_or_default();
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
    let world = world(&recipe, &args)?;
    let started = std::time::Instant::now();
    let summary = crate::backend::run_stage(&recipe, &plan, args.resume.is_some(), world, anchorage_train::trainer::StageData::Manifest)?;
    let last = summary.losses.last().copied().unwrap_or(f64::NAN);
    let first = summary.losses.first().copied().unwrap_or(f64::NAN);
    println!("run folder:   {}", summary.run_dir.display());
    println!("steps:        {} (loss {first:.4} at step 1, {last:.4} at step {})", summary.steps, summary.steps);
    if summary.skipped.counts.is_empty() {
        println!("skipped:      none");
    } else {
        for (reason, n) in &summary.skipped.counts {
            let ids = summary.skipped.first_ids.get(reason).map(|v| v.join(", ")).unwrap_or_default();
            let distinct = summary.skipped.distinct.keys().filter(|(r, _)| r == reason).count();
            println!("skipped:      {n} occurrences of {} ({distinct} distinct samples; first: {ids})", reason.name());
        }
    }
    if let Some(path) = &summary.connector {
        println!("connector:    {}", path.display());
    }
    let total: f64 = summary.breakdown.iter().map(|(_, s)| s).sum();
    println!("time:         {:.1} s", started.elapsed().as_secs_f64());
    for (phase, secs) in &summary.breakdown {
        println!("  {phase:<24} {secs:>8.2} s  {:>5.1}%", 100.0 * secs / total.max(1e-9));
    }
    Ok(())
}
