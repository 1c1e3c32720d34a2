//! `train demo towers`: train (or reuse) the demo world's frozen towers (docs/demo.md).

use std::path::PathBuf;

use burn::backend::Autodiff;
use anyhow::Context;
use clap::Args;

use crate::backend::Flex;

#[derive(Debug, Args)]
pub struct TowersArgs {
    /// Folder that receives `vision/` and `llm/`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Settings over the LLM's spec, KEY=VALUE comma-separated (as `train demo --llm`).
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub llm: Vec<String>,
    /// Settings over the vision tower's spec, KEY=VALUE comma-separated (as `train demo --vision`).
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub vision: Vec<String>,
}

pub fn run(args: TowersArgs) -> anyhow::Result<()> {
    let device = Default::default();
    let specs = specs(&args.vision, &args.llm)?;
    let paths = anchorage_demo::ensure_towers_with::<Autodiff<Flex>>(&args.out, args.seed, &specs, &device)?;
    let what = |trained: bool| if trained { "trained" } else { "reused" };
    println!("vision tower: {} ({})", paths.vision.display(), what(paths.trained_vision));
    println!("LLM:          {} ({})", paths.llm.display(), what(paths.trained_llm));
    Ok(())
}

/// The default towers' specs with `--vision` and `--llm` settings applied (`train demo` and
/// `train demo towers`).
pub(super) fn specs(vision: &[String], llm: &[String]) -> anyhow::Result<anchorage_demo::TowerSpecs> {
    let mut specs = anchorage_demo::TowerSpecs::default();
    specs.vision = anchorage_demo::VisionSpec::with_settings(vision).context("--vision")?;
    specs.llm = anchorage_demo::LlmSpec::with_settings(specs.tokenizer.vocab_size, llm).context("--llm")?;
    Ok(specs)
}
