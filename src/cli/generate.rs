//! `train generate RUN --image F --prompt TEXT [--max-new-tokens N] [--set k=v]...`: one greedy
//! answer through the run's conversation template and image preprocessing.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use clap::Args;

use crate::backend::BackendJob;
use crate::cli::run_model::Placement;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Run folder (its newest step checkpoint) or one of its step folders.
    pub run: PathBuf,
    /// Image to ask about (none: a text-only question).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The question.
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Override the run's model.toml with recipe keys, e.g. `--set compression.method=fastv`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    #[command(flatten)]
    pub placement: Placement,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    args.placement.clone().run(&args.run.clone(), Job(args))
}

/// What `train generate` does on the chosen backend.
struct Job(GenerateArgs);

impl BackendJob for Job {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let model = crate::cli::run_model::open::<B>(&args.run, &args.overrides, &device)?;
        let prompt = model.prompt(&args.prompt, args.image.as_deref())?;
        let (texts, _) = model.answer(&[prompt], args.max_new_tokens)?;
        println!("{}", texts.first().map(String::as_str).unwrap_or_default());
        Ok(())
    }
}
