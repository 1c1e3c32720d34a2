//! `train demo towers`: train (or reuse) the demo world's frozen towers (docs/demo.md).

use std::path::PathBuf;

use burn::backend::Autodiff;
use clap::Args;

use crate::backend::Flex;

#[derive(Debug, Args)]
pub struct TowersArgs {
    /// Folder that receives `vision/` and `llm/`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: TowersArgs) -> anyhow::Result<()> {
    let device = Default::default();
    let paths = anchorage_demo::ensure_towers::<Autodiff<Flex>>(&args.out, args.seed, &device)?;
    let what = |trained: bool| if trained { "trained" } else { "reused" };
    println!("vision tower: {} ({})", paths.vision.display(), what(paths.trained_vision));
    println!("LLM:          {} ({})", paths.llm.display(), what(paths.trained_llm));
    Ok(())
}
