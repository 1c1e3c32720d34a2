//! `train bench parity --backend cuda|wgpu`: does this machine's GPU backend train and answer as the
//! CPU does? It makes a small demo world and towers (a few seconds on the CPU), then trains stage 2
//! of each connector for three steps on flex and on the backend from the same weights (the stage-1
//! connector file and the tower folders), and answers the world's questions with one run on both.
//! The losses (three steps, each one updating) must agree to `--tolerance` (relative), the trained
//! connectors must be close (see [`WEIGHTS_TOLERANCE`]) and the greedy answers must be the same.
//! One JSON line says what was compared; the exit status is 1 when something disagrees.
//!
//! Each piece runs as this binary's own `train demo`, `train ift` and `train eval run`, so what is
//! checked is what a user runs. f32 only: the towers are the demo's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anchorage_eval::score::answers::read_jsonl;
use anchorage_train::metrics::MetricsLog;
use anchorage_train::recipe::{load_recipe, Backend, MatmulEngine};
use anyhow::{bail, Context};
use clap::Args;

#[derive(Debug, Args)]
pub struct ParityArgs {
    /// Backend checked against flex: `cuda` or `wgpu` (binaries built with that feature).
    #[arg(long, value_parser = crate::backend::parse)]
    pub backend: Backend,
    /// Device index on that backend.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Largest relative difference of a loss between the two backends (GPU matrix units may round
    /// f32 products through TF32).
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f64,
    /// Keep the world, towers and runs in this folder (default: a temporary folder, removed).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// What computes the products on the backend's side: `burn` or `cublas` (`devices.matmul`,
    /// CUDA only). Flex's side is always burn's.
    #[arg(long, value_parser = crate::backend::parse_matmul, default_value = "burn")]
    pub matmul: MatmulEngine,
}

/// Stage-2 runs compared (recipe of the demo, extra `--set`).
const RUNS: [(&str, &[&str]); 5] = [
    ("mlp2x_gelu-act", &[]),
    ("c_abstractor", &[]),
    ("resampler", &[]),
    ("anchor_former", &[]),
    ("anchor_former", &["llm.gradient_checkpointing=true"]),
];

/// Largest distance between the connectors trained on the two backends, as a fraction of how far
/// training moved flex's from its initial weights (Euclidean norms over every tensor). Far looser
/// than the losses: AdamW divides by the gradient's own size, so an element whose gradient is near
/// zero on both backends can step differently by float rounding alone (up to 0.55% on wgpu, whose
/// losses agree with flex's to 3e-7). A wrong gradient moves a tensor by its whole update.
const WEIGHTS_TOLERANCE: f64 = 0.1;

pub fn run(args: ParityArgs) -> anyhow::Result<()> {
    if args.backend == Backend::Flex {
        bail!("--backend flex is the reference itself: give cuda or wgpu");
    }
    crate::backend::check_ready(args.backend, &[args.device])?;
    let cublas = args.matmul == MatmulEngine::Cublas;
    if cublas && args.backend != Backend::Cuda {
        bail!("--matmul cublas runs on the cuda backend only");
    }
    if cublas {
        anchorage_kernels::gemm::cublas_ready().map_err(anyhow::Error::msg)?;
    }
    if !(args.tolerance >= 0.0) {
        bail!("--tolerance must be a number of at least 0, not {}", args.tolerance);
    }
    let temp;
    let root = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    let parity = Parity { exe: std::env::current_exe().context("locating this binary")?, other: crate::backend::name(args.backend), device: args.device, cublas, demo: root.join("demo"), root };
    parity.make_demo()?;
    let mut compared = Vec::new();
    let (mut worst, mut worst_weights): (f64, f64) = (0.0, 0.0);
    for (i, (recipe, extra)) in RUNS.iter().enumerate() {
        let run = parity.stage_two(i, recipe, extra)?;
        worst = worst.max(run.losses_diff);
        worst_weights = worst_weights.max(run.weights_diff);
        compared.push(serde_json::json!({ "run": recipe, "set": extra, "flex": run.flex, "backend": run.other, "max_rel_diff": run.losses_diff, "weights_rel_diff": run.weights_diff }));
    }
    let [flex, gpu] = parity.answers()?;
    let other = parity.other;

    let same = flex.iter().zip(&gpu).filter(|(a, b)| a == b).count();
    let losses_ok = worst <= args.tolerance;
    let weights_ok = worst_weights <= WEIGHTS_TOLERANCE;
    let answers_ok = flex.len() == gpu.len() && same == flex.len();
    let json = serde_json::json!({
        "bench": "parity",
        "backend": other,
        "matmul": if cublas { "cublas" } else { "burn" },
        "device": args.device,
        "runs": compared,
        "max_rel_diff": worst,
        "tolerance": args.tolerance,
        "weights_rel_diff": worst_weights,
        "weights_tolerance": WEIGHTS_TOLERANCE,
        "answers": flex.len(),
        "answers_same": same,
        "ok": losses_ok && weights_ok && answers_ok,
    });
    println!("{json}");
    if !losses_ok {
        bail!("the losses on {other} differ from flex's by up to {worst:.3e} (relative), above --tolerance {}", args.tolerance);
    }
    if !weights_ok {
        bail!("the connectors trained on {other} differ from flex's by {worst_weights:.3e} of how far training moved them, above {WEIGHTS_TOLERANCE}");
    }
    if !answers_ok {
        bail!("{other} gave {same} of flex's {} answers", flex.len());
    }
    Ok(())
}

/// Where the comparison runs: this binary, the backend against flex, and its folders.
struct Parity {
    exe: PathBuf,
    /// The backend's name (`cuda`, `wgpu`).
    other: &'static str,
    device: usize,
    /// The backend's products on cuBLAS (`--matmul cublas`).
    cublas: bool,
    root: PathBuf,
    demo: PathBuf,
}

/// One stage-2 recipe trained on both backends.
struct StageTwo {
    flex: Vec<f64>,
    other: Vec<f64>,
    /// Largest relative difference of a loss.
    losses_diff: f64,
    /// Distance between the trained connectors over the distance flex's moved from its start.
    weights_diff: f64,
}

impl Parity {
    /// The backends compared, with the device each runs on.
    fn backends(&self) -> [(&'static str, usize); 2] {
        [("flex", 0), (self.other, self.device)]
    }

    /// A small demo world, its towers and every connector's stage-1 run (on the CPU).
    fn make_demo(&self) -> anyhow::Result<()> {
        let mut args = vec!["demo", "--out", path_str(&self.demo)?, "--connectors", "mlp2x_gelu,c_abstractor,resampler,anchor_former", "--compression", "none,act"];
        args.extend(["--train-images", "40", "--eval-images", "4", "--max-steps", "1", "--tower-steps", "3", "--llm", "curriculum=none,steps=3", "--replicas", "1"]);
        train(&self.exe, &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "making the demo world, towers and stage-1 connectors")
    }

    /// Run `i`: the demo's stage-2 `recipe` (with `extra` settings) on both backends from its
    /// stage-1 connector, and how far apart their losses and trained connectors are.
    fn stage_two(&self, i: usize, recipe: &str, extra: &[&str]) -> anyhow::Result<StageTwo> {
        let recipe_path = self.demo.join("recipes").join(format!("{recipe}.toml"));
        let runs_dir = self.root.join("runs");
        let mut losses = Vec::new();
        let mut connectors = Vec::new();
        for (backend, device) in self.backends() {
            let name = format!("{i}-{backend}");
            let mut a: Vec<String> = vec!["ift".into(), path_str(&recipe_path)?.into()];
            let sets = [
                format!("run.output_dir=\"{}\"", path_str(&runs_dir)?),
                format!("run.name=\"{name}\""),
                format!("devices.backend=\"{backend}\""),
                format!("devices.ids=[{device}]"),
                "optim.max_steps=3".into(),
                // Every step updates (no warm-up step at learning rate 0), so the losses of steps
                // 2 and 3 and the connector written at the end reflect the backward passes.
                "optim.warmup_ratio=0".into(),
                "log.every_steps=1".into(),
                "log.tensorboard=false".into(),
            ];
            let engine = (self.cublas && backend != "flex").then(|| "devices.matmul=\"cublas\"".to_string());
            for set in sets.iter().cloned().chain(engine).chain(extra.iter().map(|s| s.to_string())) {
                a.extend(["--set".into(), set]);
            }
            train(&self.exe, &a, &format!("stage 2 of {recipe} on {backend}"))?;
            let run = runs_dir.join(&name);
            losses.push(MetricsLog::read(&run.join("metrics.jsonl"))?.into_iter().map(|m| m.loss).collect::<Vec<f64>>());
            connectors.push(read_connector(&run.join("connector.safetensors"))?);
        }
        let [flex, other]: [Vec<f64>; 2] = losses.try_into().map_err(|_| anyhow::anyhow!("two backends, two loss lists"))?;
        if flex.len() != other.len() || flex.is_empty() {
            bail!("{recipe}: flex logged {} losses and {} {}", flex.len(), self.other, other.len());
        }
        let diff = flex.iter().zip(&other).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0, f64::max);
        // The connectors the two trainings wrote, against each other and against where they began.
        let init = load_recipe(&recipe_path, &[])?.connector.init().map(Path::to_path_buf).with_context(|| format!("{}: no connector.init", recipe_path.display()))?;
        let start = read_connector(&init)?;
        let (apart, moved) = (distance(&connectors[0], &connectors[1], &recipe_path)?, distance(&connectors[0], &start, &recipe_path)?);
        if !(moved > 0.0) {
            bail!("{recipe}: the connector did not change in training ({} equals its initial weights {})", runs_dir.join(format!("{i}-flex")).display(), init.display());
        }
        let not_nan = |x: f64| if x.is_nan() { f64::INFINITY } else { x };
        Ok(StageTwo { flex, other, losses_diff: not_nan(diff), weights_diff: not_nan(apart / moved) })
    }

    /// The flex-trained Anchor Former run's answers to the world's questions, on flex and on the
    /// backend.
    fn answers(&self) -> anyhow::Result<[Vec<String>; 2]> {
        let questions = self.demo.join("world/eval/questions.jsonl");
        let images = self.demo.join("world/images");
        let run = self.demo.join("runs/anchor_former");
        let mut answers = Vec::new();
        for (backend, device) in self.backends() {
            let file = self.root.join(format!("answers-{backend}.jsonl"));
            let _ = std::fs::remove_file(&file);
            let matmul = if self.cublas && backend != "flex" { "cublas" } else { "burn" };
            let a: Vec<String> = [
                "eval", "run", path_str(&run)?, "--question-file", path_str(&questions)?, "--image-folder", path_str(&images)?, "--answers-file", path_str(&file)?,
                "--batch-size", "4", "--max-new-tokens", "6", "--backend", backend, "--device", &device.to_string(), "--matmul", matmul,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            train(&self.exe, &a, &format!("answering on {backend}"))?;
            let records = read_jsonl(&file)?;
            answers.push(records.iter().map(|r| r.str_field("text").map(str::to_string)).collect::<Result<Vec<_>, _>>()?);
        }
        answers.try_into().map_err(|_| anyhow::anyhow!("two backends, two answer lists"))
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not valid UTF-8", path.display()))
}

/// Runs this binary with `args`; a failure carries the end of its output.
fn train(exe: &Path, args: &[String], what: &str) -> anyhow::Result<()> {
    let out = Command::new(exe).args(args).env("RUST_LOG", "warn").output().with_context(|| format!("{what}: starting {}", exe.display()))?;
    if !out.status.success() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let tail: Vec<&str> = text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{what} failed ({}): train {}\n{}", out.status, args.join(" "), tail.join("\n"));
    }
    Ok(())
}

/// A connector file's tensors as f64 values, by name.
fn read_connector(path: &Path) -> anyhow::Result<std::collections::BTreeMap<String, Vec<f64>>> {
    let tensors = anchorage_llm::read_tensors(path).with_context(|| format!("reading {}", path.display()))?;
    tensors
        .into_iter()
        .map(|(name, data)| {
            let values = data.convert::<f64>().to_vec::<f64>().map_err(|e| anyhow::anyhow!("{}: tensor {name}: {e:?}", path.display()))?;
            Ok((name, values))
        })
        .collect()
}

/// Euclidean distance between two connectors with the same tensors.
fn distance(a: &std::collections::BTreeMap<String, Vec<f64>>, b: &std::collections::BTreeMap<String, Vec<f64>>, recipe: &Path) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for (name, x) in a {
        let y = b.get(name).with_context(|| format!("{}: tensor {name} is in one connector and not the other", recipe.display()))?;
        if x.len() != y.len() {
            bail!("{}: tensor {name} has {} values in one connector and {} in the other", recipe.display(), x.len(), y.len());
        }
        sum += x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>();
    }
    Ok(sum.sqrt())
}
