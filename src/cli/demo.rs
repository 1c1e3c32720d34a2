//! `train demo towers`: train (or reuse) the demo world's frozen towers (docs/demo.md).

use std::path::PathBuf;

use burn::backend::Autodiff;
use clap::{Args, Subcommand};

use crate::backend::Flex;

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Train the demo's frozen towers on the procedural world and save them as Hugging Face
    /// folders (OUT/vision: CLIP, OUT/llm: Llama + tokenizer); folders already trained with the
    /// same seed and settings are reused.
    Towers(TowersArgs),
}

#[derive(Debug, Args)]
pub struct TowersArgs {
    /// Folder that receives `vision/` and `llm/`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(cmd: DemoCommand) -> anyhow::Result<()> {
    match cmd {
        DemoCommand::Towers(args) => {
            let device = Default::default();
            let paths = anchorage_demo::ensure_towers::<Autodiff<Flex>>(&args.out, args.seed, &device)?;
            let what = |trained: bool| if trained { "trained" } else { "reused" };
            println!(
                "vision tower: {} ({})",
                paths.vision.display(),
                what(paths.trained_vision)
            );
            println!("LLM:          {} ({})", paths.llm.display(), what(paths.trained_llm));
            Ok(())
        }
    }
}
