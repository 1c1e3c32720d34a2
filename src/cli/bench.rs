//! `train bench step RECIPE`: times the recipe's training step on a synthetic batch (the towers and
//! connector of the recipe, random weights allowed through `builtin = "clip_vit_l14_336"` and
//! `"llama2_7b"`) and prints samples/s, tokens/s and MFU under the FLOPs model of
//! anchorage-train's `flops.rs`. `benches/llava_train_step.py` is the transformers side.

use std::path::PathBuf;

use anchorage_train::recipe::load_recipe;
use anchorage_train::trainer::{StageData, World};
use anchorage_train::Plan;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time the recipe's training step on synthetic samples (one image, TEXT_LEN caption tokens).
    Step(StepArgs),
    /// Compression methods side by side at thousands of visual tokens: prefill FLOPs, time and peak
    /// memory of each (`docs/benchmarks.md`).
    Prefill(super::bench_prefill::PrefillArgs),
    /// CUDA builds: the gradient all-reduce on the GPUs given, NCCL on device memory beside the
    /// same sum through the host; checks the sums, prints bandwidths (one JSON line).
    Allreduce(super::bench_allreduce::AllReduceArgs),
    /// A GPU backend against the CPU: stage 2 of every connector and the answers of a run, on a
    /// small demo world, must agree with flex's (one JSON line; exit 1 when they do not).
    Parity(super::bench_parity::ParityArgs),
    /// burn's matrix product at the 7B step's shapes, checked, beside PyTorch's (one JSON line).
    Matmul(super::bench_matmul::MatmulArgs),
}

#[derive(Debug, Args)]
pub struct StepArgs {
    /// Recipe (TOML); its data section is ignored.
    pub recipe: PathBuf,
    /// Override a recipe value, as for `train pretrain`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Optimizer steps to run.
    #[arg(long, default_value_t = 12)]
    pub steps: u64,
    /// Leading steps left out of the timing (compilation, autotuning, allocator warm-up).
    #[arg(long, default_value_t = 4)]
    pub warmup: usize,
    /// Caption tokens per sample after the image.
    #[arg(long, default_value_t = 64)]
    pub text_len: usize,
    /// The device's peak dense TFLOP/s in the compute dtype (H100 SXM bf16: 989), for MFU.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let args = match cmd {
        BenchCommand::Step(args) => args,
        BenchCommand::Prefill(args) => return super::bench_prefill::run(args),
        BenchCommand::Allreduce(args) => return super::bench_allreduce::run(args),
        BenchCommand::Parity(args) => return super::bench_parity::run(args),
        BenchCommand::Matmul(args) => return super::bench_matmul::run(args),
    };
    if args.warmup >= args.steps as usize {
        bail!("--warmup {} must be below --steps {}", args.warmup, args.steps);
    }
    let dir = std::env::temp_dir().join(format!("anchorage-bench-{}", std::process::id()));
    let mut overrides = args.overrides.clone();
    overrides.extend([
        format!("run.output_dir=\"{}\"", dir.display()),
        "run.name=\"step\"".to_string(),
        format!("optim.max_steps={}", args.steps),
        "log.tensorboard=false".to_string(),
        format!("checkpoint.every_steps={}", args.steps + 1),
    ]);
    let recipe = load_recipe(&args.recipe, &overrides)?;
    if recipe.devices.nodes != 1 {
        bail!("train bench step runs on one node (devices.nodes = {})", recipe.devices.nodes);
    }
    crate::backend::check_recipe(&recipe)?;
    let plan = Plan::new(&recipe).context("planning the run")?;
    let samples = (plan.global_batch * args.steps) as usize;
    let world = World::new(recipe.devices.ids.len(), 1, None);
    let data = StageData::Synthetic { samples, text_len: args.text_len };
    let result = crate::backend::run_stage(&recipe, &plan, Default::default(), world, data);
    let _ = std::fs::remove_dir_all(&dir);
    let summary = result?;

    let mut timed: Vec<f64> = summary.step_seconds[args.warmup..].to_vec();
    timed.sort_by(f64::total_cmp);
    let step = timed[timed.len() / 2];
    let global = plan.global_batch as f64;
    let shape = summary.step_shape.as_ref().context("the synthetic run reported no step shape")?;
    let flops = shape.flops_per_sample() * global;
    let (cublas_products, cublas_fallbacks) = anchorage_kernels::gemm::cublas_counts();
    let json = serde_json::json!({
        "impl": "anchorage",
        "recipe": args.recipe.display().to_string(),
        "connector": recipe.connector.kind_name(),
        "backend": format!("{:?}", recipe.devices.backend).to_lowercase(),
        "matmul": format!("{:?}", recipe.devices.matmul).to_lowercase(),
        "devices": recipe.devices.ids.len(),
        "global_batch": plan.global_batch,
        "micro_batch": plan.micro_batch,
        "text_len": args.text_len,
        "steps_timed": timed.len(),
        "step_s": step,
        "samples_per_s": global / step,
        "seq_len": shape.seq_len,
        "tokens_per_s": global * shape.seq_len as f64 / step,
        "flops_per_step": flops,
        "mfu": args.peak_tflops.map(|p| flops / step / (p * 1e12)),
        "loss": summary.losses.last(),
        // With devices.matmul = "cublas": how many products cuBLAS ran, and how many it handed back
        // to burn's kernel (each reason logged once), over every step.
        "cublas_products": cublas_products,
        "cublas_fallbacks": cublas_fallbacks,
    });
    println!("{json}");
    Ok(())
}
