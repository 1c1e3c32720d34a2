//! `train demo`: the demo world (procedural shapes, made by anchorage), its frozen towers, stage 1
//! and stage 2 for each connector, a compression sweep on one connector, evaluation of every
//! stage-2 run on the world's eval split, `train compare`'s table and plots, and an anchors PNG.
//! Everything is cached: a second run reuses the world, the towers and finished runs. See
//! docs/demo.md.

mod anchors;
mod recipes;
mod towers;

use std::path::{Path, PathBuf};

use anchorage_data::synth::{write_world, SynthOptions};
use anchorage_eval::run::RunOptions;
use anchorage_eval::suite::{run_suite, Suite};
use anchorage_train::recipe::load_recipe;
use anchorage_train::trainer::{StageData, World};
use anchorage_train::Plan;
use anyhow::{bail, Context};
use burn::backend::Autodiff;
use clap::{Args, Subcommand};

use crate::backend::Flex;
use recipes::{recipe, RunSpec, COMPRESSIONS, CONNECTORS};

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Train the demo's frozen towers on the procedural world and save them as Hugging Face
    /// folders (OUT/vision: CLIP, OUT/llm: Llama + tokenizer); folders already trained with the
    /// same seed and settings are reused.
    Towers(towers::TowersArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub command: Option<DemoCommand>,
    /// Folder for the world, towers, runs and comparison.
    #[arg(long, default_value = "demo")]
    pub out: PathBuf,
    /// Connectors to train, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "mlp2x_gelu,c_abstractor,resampler,anchor_former")]
    pub connectors: Vec<String>,
    /// Compression methods of the sweep on the first connector, comma-separated (`none` is the
    /// plain stage-2 run).
    #[arg(long, value_delimiter = ',', default_value = "none,fastv,act")]
    pub compression: Vec<String>,
    /// Training images of the world (one caption and one conversation record each).
    #[arg(long, default_value_t = 2000)]
    pub train_images: usize,
    /// Evaluation images of the world (four questions each).
    #[arg(long, default_value_t = 100)]
    pub eval_images: usize,
    /// Epochs of each stage. Two by default: with one, the demo takes about 3.5 minutes less on
    /// a 2-core CPU and the connectors score 2-8 points lower (docs/demo.md).
    #[arg(long, default_value_t = 2)]
    pub epochs: u32,
    /// Stop each stage after this many optimizer steps (a shortened demo, as CI runs it).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Seed of the world, the towers and every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train each tower for this many steps instead of its default (a quick try, as CI runs it;
    /// the towers are then weaker).
    #[arg(long)]
    pub tower_steps: Option<usize>,
    /// Settings over the demo LLM's spec, KEY=VALUE comma-separated, applied after
    /// `--tower-steps`: `curriculum=presence` (the default: the presence curriculum, docs/demo.md)
    /// or `curriculum=none` (the corpus alone: faster, presence questions at chance), `steps`,
    /// `batch`, `lr`, `warmup`, `slices`, `layers`, `width`, `mlp`, `heads`, `corpus_first`, `matching`, `negation`,
    /// `drill_share`, `question_share`, `colour_drills`, `grid_slots`. A changed LLM is trained again, and the runs with it.
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub llm: Vec<String>,
    /// Settings over the demo vision tower's spec, as `--llm`: `steps`, `batch`, `lr`, `warmup`,
    /// `slices`, `layers`, `width`, `mlp`, `heads`, `patch`.
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub vision: Vec<String>,
    /// Data-parallel CPU replicas per run (a divisor of the global batch, 32). Default: one per
    /// core, up to 4. The results depend on it only through float rounding; the time does.
    #[arg(long)]
    pub replicas: Option<usize>,
}

const WORLD_SUITE: &str = include_str!("../../../suites/world.toml");

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if let Some(DemoCommand::Towers(t)) = args.command {
        return towers::run(t);
    }
    for c in &args.connectors {
        recipes::connector_table(c).with_context(|| format!("--connectors: unknown connector `{c}`; known: {}", CONNECTORS.join(", ")))?;
    }
    for c in &args.compression {
        recipes::compression_table(c).with_context(|| format!("--compression: unknown method `{c}`; known: {}", COMPRESSIONS.join(", ")))?;
    }
    let replicas = args.replicas.unwrap_or_else(recipes::default_replicas);
    if !recipes::replicas_fit(replicas) {
        bail!(
            "--replicas {replicas}: must divide the global batches of {} (stage 1) and {} (stage 2)",
            recipes::PRETRAIN_GLOBAL_BATCH,
            recipes::IFT_GLOBAL_BATCH
        );
    }
    let specs = tower_specs(&args)?;
    let started = std::time::Instant::now();
    let world = args.out.join("world");
    if !world.join("world.json").is_file() {
        let opts = SynthOptions { train: args.train_images, eval: args.eval_images, seed: args.seed, ..SynthOptions::default() };
        let s = write_world(&world, &opts)?;
        println!("world:       {} ({} training images, {} eval questions)", world.display(), s.train_images, s.questions);
    }
    anchorage_demo::ensure_towers_with::<Autodiff<Flex>>(&args.out.join("towers"), args.seed, &specs, &Default::default())?;
    println!("towers:      {} ({:.0} s so far)", args.out.join("towers").display(), started.elapsed().as_secs_f64());
    set_runs_aside_if_stale(&args.out)?;
    let ctx = Ctx { args: &args, replicas, world: &world, towers: &args.out.join("towers"), runs: &args.out.join("runs") };
    let mut evaluated = Vec::new();
    for (i, connector) in args.connectors.iter().enumerate() {
        let stage1 = ctx.train(&format!("{connector}-pretrain"), "pretrain", connector, "none", None)?;
        let init = stage1.join("connector.safetensors");
        let sweep: Vec<&str> = if i == 0 { args.compression.iter().map(String::as_str).collect() } else { vec!["none"] };
        for compression in sweep {
            let name = if compression == "none" { connector.clone() } else { format!("{connector}-{compression}") };
            let run = ctx.train(&name, "ift", connector, compression, Some(&init))?;
            ctx.evaluate(&run)?;
            evaluated.push(run);
        }
        println!("             {:.0} s so far", started.elapsed().as_secs_f64());
    }
    if args.connectors.iter().any(|c| c == "anchor_former") {
        let drawn = anchors::draw(&ctx.runs.join("anchor_former"), &world, &args.out.join("anchors"), 4)?;
        println!("anchors:     {}", drawn.display());
    }
    let table = crate::cli::compare::write(&evaluated, &args.out.join("compare"))?;
    println!("\n{table}");
    println!("compare:     {} (table, CSV, plots)", args.out.join("compare").display());
    println!("total:       {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs made with other towers (another `--llm`, `--vision`, `--tower-steps` or seed, or an
/// older anchorage) cannot be reused: `OUT/runs` (and the recipes written for it) move to
/// `OUT/runs-stale-<unix seconds>` (nothing is deleted), and `OUT/runs/towers.json` records the
/// towers' stamps for the runs made from now on.
fn set_runs_aside_if_stale(out: &Path) -> anyhow::Result<()> {
    let towers = out.join("towers");
    let mut stamps = serde_json::Map::new();
    for tower in ["vision", "llm"] {
        let path = towers.join(tower).join(anchorage_demo::STAMP);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        stamps.insert(tower.into(), value);
    }
    let stamps = serde_json::Value::Object(stamps);
    let runs = out.join("runs");
    let record = runs.join("towers.json");
    if runs.is_dir() {
        let recorded: Option<serde_json::Value> = std::fs::read_to_string(&record).ok().and_then(|t| serde_json::from_str(&t).ok());
        if recorded.as_ref() == Some(&stamps) {
            return Ok(());
        }
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let aside = out.join(format!("runs-stale-{secs}"));
        std::fs::rename(&runs, &aside).with_context(|| format!("moving {} to {}", runs.display(), aside.display()))?;
        let recipes = out.join("recipes");
        if recipes.is_dir() {
            std::fs::rename(&recipes, aside.join("recipes")).with_context(|| format!("moving {} into {}", recipes.display(), aside.display()))?;
        }
        println!("runs:        {} were made with other towers; moved to {}", runs.display(), aside.display());
    }
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let text = serde_json::to_string_pretty(&stamps)?;
    anchorage_train::checkpoint::write_atomic(&record, text.as_bytes()).with_context(|| format!("writing {}", record.display()))?;
    Ok(())
}

/// The towers' specs: the defaults, `--tower-steps`, then `--vision` and `--llm` settings.
fn tower_specs(args: &DemoArgs) -> anyhow::Result<anchorage_demo::TowerSpecs> {
    let steps = args.tower_steps.map(|n| format!("steps={n}"));
    let with_steps = |settings: &[String]| steps.iter().cloned().chain(settings.iter().cloned()).collect::<Vec<_>>();
    towers::specs(&with_steps(&args.vision), &with_steps(&args.llm))
}

struct Ctx<'a> {
    args: &'a DemoArgs,
    replicas: usize,
    world: &'a Path,
    towers: &'a Path,
    runs: &'a Path,
}

impl Ctx<'_> {
    /// Trains one stage into `runs/<name>` (a finished run is reused; an interrupted one resumes).
    fn train(&self, name: &str, stage: &str, connector: &str, compression: &str, init: Option<&Path>) -> anyhow::Result<PathBuf> {
        let run = self.runs.join(name);
        if run.join("connector.safetensors").is_file() {
            return Ok(run);
        }
        let spec = RunSpec { name, stage, connector, compression, init, epochs: self.args.epochs, max_steps: self.args.max_steps, replicas: self.replicas };
        let text = recipe(&spec, self.world, self.towers, self.runs, self.args.seed).context("demo recipe")?;
        let path = self.runs.parent().unwrap_or(Path::new(".")).join("recipes").join(format!("{name}.toml"));
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).with_context(|| format!("creating {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        let recipe = load_recipe(&path, &[])?;
        let plan = Plan::new(&recipe)?;
        let resume = run.join("state.json").is_file() || std::fs::read_dir(&run).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("step-"))).unwrap_or(false);
        let t = std::time::Instant::now();
        // The demo writes its recipes afresh each time: an interrupted run continues under the new
        // flags' values where they may change (epochs, steps); the trainer refuses the others.
        let options = anchorage_train::trainer::TrainOptions { resume, allow_recipe_change: resume, ..Default::default() };
        let summary = crate::backend::run_stage(&recipe, &plan, options, World::new(self.replicas, 1, None), StageData::Manifest)?;
        let (first, last) = (summary.losses.first().copied().unwrap_or(f64::NAN), summary.losses.last().copied().unwrap_or(f64::NAN));
        println!("{name:<26} {stage:<8} {} steps  loss {first:.3} → {last:.3}  {:.0} s", summary.steps, t.elapsed().as_secs_f64());
        if summary.connector.is_none() {
            bail!("{name}: the run stopped before its end");
        }
        Ok(run)
    }

    /// The world's eval split through `train eval suite`'s code, into `run/eval/`.
    fn evaluate(&self, run: &Path) -> anyhow::Result<()> {
        if run.join("eval/summary.json").is_file() {
            return Ok(());
        }
        let suite: Suite = toml::from_str(WORLD_SUITE).context("suites/world.toml")?;
        let model = crate::cli::run_model::open::<crate::backend::Flex>(run, &[], &Default::default())?;
        let options = RunOptions { batch_size: 16, max_new_tokens: 8, progress: false };
        let summary = run_suite(&model, &suite, self.world, &run.join("eval"), &options)?;
        crate::cli::run_model::log_scalars(run, &summary)?;
        Ok(())
    }
}
