//! `train inspect prune`: apply one token-scoring rule (FastV's released last-token rule, HiMAP's
//! shallow text-to-image rule or its deep image-to-image rule) to a saved attention map and write
//! the positions kept.
//!
//! Scores are the head mean of the map (computed in f64), summed over the rule's query rows, in the
//! image columns. Ties: equal scores keep the lower position (torch.topk leaves this unspecified);
//! NaN ranks lowest. With text-to-image and no token after the image, the last row scores.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anchorage_compress::rules::{head_mean, prune_positions, ScoreRule};
use anchorage_llm::{read_tensors, write_tensors};
use anyhow::{bail, Context};
use burn::tensor::TensorData;
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PruneRule {
    /// FastV (released code): attention from the last token.
    LastToken,
    /// HiMAP shallow: attention received from every token after the image.
    TextToImage,
    /// HiMAP deep: attention received from the image tokens.
    ImageToImage,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Scoring rule.
    #[arg(long, value_enum)]
    pub rule: PruneRule,
    /// Safetensors file with `attention` [1, heads, L, L] (one layer's probabilities; any float dtype).
    #[arg(long)]
    pub attention: PathBuf,
    /// First image position.
    #[arg(long)]
    pub image_start: usize,
    /// Number of image positions.
    #[arg(long)]
    pub image_len: usize,
    /// Image positions to keep.
    #[arg(long)]
    pub keep: usize,
    /// Output safetensors: `keep` [L'] i64, sorted positions kept (every non-image position plus the
    /// `--keep` best image positions).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: PruneArgs) -> anyhow::Result<()> {
    let path = &args.attention;
    let tensors = read_tensors(path).with_context(|| format!("reading {}", path.display()))?;
    let Some(attention) = tensors.get("attention") else {
        bail!("{}: no tensor `attention` (found {:?})", path.display(), tensors.keys().collect::<Vec<_>>());
    };
    let shape = attention.shape.to_vec();
    let [1, heads, len, len2] = shape[..] else {
        bail!("{}: `attention` has shape {shape:?}, expected [1, heads, L, L]", path.display());
    };
    if len != len2 || heads == 0 {
        bail!("{}: `attention` has shape {shape:?}, expected [1, heads, L, L]", path.display());
    }
    let end = args.image_start + args.image_len;
    if end > len {
        bail!("image {}..{end} is outside the {len} positions of {}", args.image_start, path.display());
    }
    if args.keep > args.image_len {
        bail!("--keep {} exceeds --image-len {}", args.keep, args.image_len);
    }
    let probs = attention
        .clone()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{}: `attention` is not a float tensor: {e:?}", path.display()))?;
    let map = head_mean(&probs, heads, len).context("attention size does not match its shape")?;
    let rule = match args.rule {
        PruneRule::LastToken => ScoreRule::LastToken,
        PruneRule::TextToImage => ScoreRule::TextToImage,
        PruneRule::ImageToImage => ScoreRule::ImageToImage,
    };
    let keep = prune_positions(&map, len, args.image_start..end, rule, args.keep);
    tracing::info!(kept = keep.len(), of = len, "pruned");
    let n = keep.len();
    let keep: Vec<i64> = keep.into_iter().map(|p| p as i64).collect();
    let mut out = BTreeMap::new();
    out.insert("keep".to_string(), TensorData::new(keep, [n]));
    write_tensors(&args.out, &out).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}
