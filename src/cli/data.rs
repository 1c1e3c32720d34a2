//! `train data check`: validate a local copy of a data set against its manifest.
//! `train data synth`: write the demo world (docs/demo.md).

use std::path::PathBuf;

use anchorage_data::{check_dataset, CheckOptions, Manifest};
use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Count the samples, check every record's structure and every referenced image (exists,
    /// decodes; in parallel), optionally tokenise for over-length samples; list bad samples by id,
    /// write a JSON report, and fail when too many are bad.
    Check(CheckArgs),
    /// Write the demo world: procedural shape images (deterministic by seed) with a 558k-style
    /// caption set, a 665k-style conversation set, evaluation questions and answers in LLaVA's
    /// evaluation format, data-set manifests and a tokenizer trained on the world's text.
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (created; existing files are overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Training images (each gets a caption record and a conversation record).
    #[arg(long, default_value_t = 2000)]
    pub train: usize,
    /// Evaluation images (each gets 4 questions: shape, colour, a "yes" and a "no" presence question).
    #[arg(long, default_value_t = 100)]
    pub eval: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// Rounds of each conversation record in ift.json, fewest and most (`MIN-MAX` or one number).
    #[arg(long, default_value = "2-4", value_parser = parse_rounds)]
    pub rounds: (usize, usize),
}

/// `MIN-MAX` or `N` (1 <= MIN <= MAX <= 64).
pub fn parse_rounds(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("rounds must be MIN-MAX or N with 1 <= MIN <= MAX <= 64, got {text:?}");
    let (low, high) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?),
        None => {
            let n = text.trim().parse().map_err(|_| bad())?;
            (n, n)
        }
    };
    if low == 0 || low > high || high > 64 {
        return Err(bad());
    }
    Ok((low, high))
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Data-set manifest (data-manifests/*.toml).
    pub manifest: PathBuf,
    /// Data root that the manifest's paths are relative to (default: the manifest's own `root`).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Fail (exit non-zero) when more than this fraction of samples is bad.
    #[arg(long, default_value_t = 0.01)]
    pub max_bad_fraction: f64,
    /// tokenizer.json: also tokenise every record to find over-length samples and LLaVA's
    /// tokenization mismatches.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Maximum sequence length after splicing the image tokens.
    #[arg(long, default_value_t = 2048)]
    pub max_len: usize,
    /// Tokens one image becomes (576 for CLIP ViT-L/14-336 + MLP).
    #[arg(long, default_value_t = 576)]
    pub image_tokens: usize,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Check(args) => check(args),
        DataCommand::Synth(args) => synth(args),
    }
}

fn synth(args: SynthArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.size >= 16, "--size must be at least 16 pixels, got {}", args.size);
    let opts = anchorage_data::synth::SynthOptions {
        train: args.train,
        eval: args.eval,
        seed: args.seed,
        size: args.size,
        rounds: args.rounds,
    };
    let s = anchorage_data::synth::write_world(&args.out, &opts)?;
    println!(
        "{}: {} training images, {} evaluation images, {} questions ({} yes, {} no), tokenizer of {} tokens",
        s.dir.display(),
        s.train_images,
        s.eval_images,
        s.questions,
        s.yes,
        s.no,
        s.tokenizer_vocab
    );
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.max_bad_fraction),
        "--max-bad-fraction must be within [0, 1], got {}",
        args.max_bad_fraction
    );
    let manifest = Manifest::load(&args.manifest)?;
    let root = manifest
        .data_root(&args.manifest, args.root.as_deref())
        .with_context(|| format!("{}: no `root` in the manifest; pass --root DIR", args.manifest.display()))?;
    let opts = CheckOptions {
        tokenizer: args.tokenizer.clone(),
        max_len: args.max_len,
        image_tokens: args.image_tokens,
        progress: !args.no_progress,
    };
    let report = check_dataset(&args.manifest, &root, &opts)?;
    for f in report.faults.iter().take(50) {
        tracing::warn!(id = %f.id, reason = f.reason.name(), "{}", f.detail);
    }
    if report.faults.len() > 50 {
        tracing::warn!("... and {} more (see the report)", report.faults.len() - 50);
    }
    println!("{}: {} samples ({} with an image, {} text-only), {} images checked", report.manifest, report.samples, report.with_image, report.text_only, report.images_checked);
    if report.samples as u64 != report.expected_samples {
        println!("note: the manifest expects {} samples", report.expected_samples);
    }
    for (reason, n) in &report.counts {
        println!("  {reason:<22} {n}");
    }
    println!("bad: {} ({:.4}%), threshold {:.4}%", report.bad_samples, report.bad_fraction * 100.0, args.max_bad_fraction * 100.0);
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("report: {}", path.display());
    }
    anyhow::ensure!(
        report.bad_fraction <= args.max_bad_fraction,
        "{} of {} samples are bad ({:.4}%), above --max-bad-fraction {}",
        report.bad_samples,
        report.samples,
        report.bad_fraction * 100.0,
        args.max_bad_fraction
    );
    Ok(())
}
