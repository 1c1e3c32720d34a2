//! `train eval run RUN --question-file Q.jsonl --image-folder DIR --answers-file A.jsonl
//! [--batch-size N] [--max-new-tokens N] [--set k=v]...`: LLaVA's `model_vqa_loader.py` with a
//! trained run.

use std::path::PathBuf;

use anchorage_eval::run::{answer_questions, peak_memory_bytes, read_questions, EvalModel, RunOptions};
use burn::tensor::backend::Backend;
use clap::Args;

use crate::backend::BackendJob;
use crate::cli::run_model::Placement;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run folder (its newest step checkpoint) or one of its step folders.
    pub run: PathBuf,
    /// LLaVA question file: one `{question_id, image, text, ...}` a line (no image: text-only).
    #[arg(long)]
    pub question_file: PathBuf,
    /// Folder the questions' `image` paths are relative to.
    #[arg(long)]
    pub image_folder: PathBuf,
    /// Answers file; an existing one is continued where it ends.
    #[arg(long)]
    pub answers_file: PathBuf,
    /// Questions answered together (answers do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// LLaVA's evaluation scripts use 128 (and shorter for single-word benchmarks).
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Override the run's model.toml with recipe keys, e.g. `--set compression.method=fastv`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    #[command(flatten)]
    pub placement: Placement,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    args.placement.clone().run(&args.run.clone(), Job(args))
}

/// What `train eval run` does on the chosen backend.
struct Job(RunArgs);

impl BackendJob for Job {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let model = crate::cli::run_model::open::<B>(&self.0.run, &self.0.overrides, &device)?;
        answer(self.0, model)
    }
}

fn answer<B: Backend>(args: RunArgs, model: EvalModel<B>) -> anyhow::Result<()> {
    let questions = read_questions(&args.question_file)?;
    let options = RunOptions { batch_size: args.batch_size, max_new_tokens: args.max_new_tokens, progress: std::io::IsTerminal::is_terminal(&std::io::stderr()) };
    let report = answer_questions(&model, &questions, &args.image_folder, &args.answers_file, &options)?;
    let e = &report.efficiency;
    println!("answers:        {} ({} new, {} already there)", args.answers_file.display(), report.answered, report.resumed);
    println!("visual tokens:  {:.1} per question", e.visual_tokens_per_prompt());
    println!("prefill:        {:.3} s per batch of {}, {:.3e} FLOPs per question (the FLOPs model)", e.prefill_latency(), args.batch_size, e.prefill_flops_per_prompt());
    println!("decode:         {:.1} tokens/s", e.decode_tokens_per_s());
    let kept = e.mean_kv_per_layer();
    if !kept.is_empty() {
        let kept: Vec<String> = kept.iter().map(|k| format!("{k:.0}")).collect();
        println!("kept keys/values per layer: {}", kept.join(" "));
    }
    if let Some(peak) = peak_memory_bytes() {
        println!("peak memory:    {:.1} MiB", peak as f64 / (1 << 20) as f64);
    }
    Ok(())
}
