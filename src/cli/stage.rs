//! `train pretrain` and `train ift`.

use std::path::PathBuf;

use anchorage_train::checkpoint::Checkpoints;
use anchorage_train::trainer::{NodeRole, TrainOptions, World};
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
    /// Continue the run in RUN_DIR from its newest checkpoint that verifies (a step folder
    /// RUN_DIR/step-N is taken as its run folder when it is that checkpoint).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// With --resume: accept a recipe that differs from the checkpoint's in keys that shape neither
    /// the model nor the data order (lr, schedule, log and checkpoint cadence, workers, ...); the
    /// changes are recorded in RUN_DIR/recipe_changes.jsonl. Model, seed, batch sizes, data and
    /// devices can never change in a resumed run.
    #[arg(long, requires = "resume")]
    pub allow_recipe_change: bool,
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
    Ok(World::new(recipe.devices.ids.len(), nodes, node))
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
    let resume = args.resume.as_deref().map(resume_dir).transpose()?;
    if let Some(run_dir) = &resume {
        // The run folder names the run: <output_dir>/<name>.
        let name = run_dir.file_name().and_then(|n| n.to_str()).with_context(|| format!("--resume {}: not a run folder", run_dir.display()))?;
        recipe.run.name = name.to_string();
        recipe.run.output_dir = run_dir.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    }
    let plan = Plan::new(&recipe).context("planning the run")?;
    // What the run would hit in the towers' configs and the connector export, before any weight is
    // loaded or downloaded.
    let preflight = recipe.model_spec().preflight().with_context(|| format!("{}", args.recipe.display()))?;
    if args.dry_run {
        println!("# resolved recipe ({})", args.recipe.display());
        println!("{}", recipe.to_toml());
        println!("# derived");
        println!("{plan}");
        for line in &preflight.checked {
            println!("checked:             {line}");
        }
        for line in &preflight.deferred {
            println!("not checked yet:     {line}");
        }
        if let Err(why) = crate::backend::check(recipe.devices.backend) {
            println!("note: {why}");
        }
        if recipe.devices.matmul == anchorage_train::recipe::MatmulEngine::Cublas {
            if let Err(why) = anchorage_kernels::gemm::cublas_ready() {
                println!("note: {why}");
            }
        }
        return Ok(());
    }
    crate::backend::check_recipe(&recipe)?;
    let world = world(&recipe, &args)?;
    let started = std::time::Instant::now();
    let options = TrainOptions { resume: resume.is_some(), allow_recipe_change: args.allow_recipe_change, stop: Some(crate::signals::install()), ..Default::default() };
    let summary = crate::backend::run_stage(&recipe, &plan, options, world, anchorage_train::trainer::StageData::Manifest)?;
    if resume.is_some() && summary.step_seconds.is_empty() && !summary.interrupted {
        println!("{} had already finished all {} steps: nothing was trained and its files were left as they were.", summary.run_dir.display(), summary.steps);
    }
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
    if summary.interrupted {
        let run = summary.run_dir.display();
        if summary.steps == 0 {
            println!("stopped:      on a signal before the first step (no checkpoint); start the run again with the same command");
        } else {
            println!("stopped:      on a signal after step {} of {}, with a checkpoint of that step; continue with", summary.steps, plan.total_steps);
            println!("              train {} {} --resume {run}  (plus the same --set overrides)", stage.name(), args.recipe.display());
        }
    }
    let total: f64 = summary.breakdown.iter().map(|(_, s)| s).sum();
    println!("time:         {:.1} s", started.elapsed().as_secs_f64());
    for (phase, secs) in &summary.breakdown {
        println!("  {phase:<24} {secs:>8.2} s  {:>5.1}%", 100.0 * secs / total.max(1e-9));
    }
    Ok(())
}

/// The run folder `--resume` names: the folder itself, or the run folder of a step folder
/// `RUN/step-N` when that is the run's newest checkpoint (a run continues from its newest; an older
/// one is refused rather than silently passed over).
fn resume_dir(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        bail!("--resume {}: folder does not exist", path.display());
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let is_step = name.strip_prefix("step-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !is_step {
        return Ok(path.to_path_buf());
    }
    let run = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")).to_path_buf();
    let newest = Checkpoints::new(&run, 1).latest()?.map(|(_, dir)| dir);
    if newest.as_deref().and_then(|d| d.file_name()) != path.file_name() {
        let newest = newest.map(|d| d.display().to_string()).unwrap_or_else(|| "none".into());
        bail!("--resume {}: give the run folder ({}); a run continues from its newest checkpoint ({newest}), not an older one", path.display(), run.display());
    }
    tracing::info!(run = %run.display(), "--resume {}: continuing its run folder", path.display());
    Ok(run)
}
