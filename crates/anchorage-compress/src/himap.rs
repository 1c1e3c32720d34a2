//! HiMAP (ustc-hyin/HiMAP, `src/LLaVA/llava/model/language_model/himap.py`,
//! `Himap_LlamaModel.forward`) as two prune stages:
//!
//! - Shallow, after layer `K1-1`: score each image token by the head-mean attention it receives
//!   from every token after the image (the instruction), keep `k1 = round(r1 * N)`.
//! - Deep, after layer `K2-1`: score each remaining image token by the attention it receives from
//!   the remaining image tokens (image→image), keep `k2 = round(r2 * N)` (`k2 ≤ k1`).
//!
//! Text tokens always stay; positions keep their original RoPE ids. Unlike the reference, each
//! sample of a batch uses its own attention and its own image span; a sample whose image is the
//! last thing in its sequence (no text after it) is scored by its last row instead.

use crate::config::{CompressionPolicy, HimapConfig};
use crate::error::CompressError;
use crate::prune::{PruneHooks, PruneStage};
use crate::rules::ScoreRule;

impl HimapConfig {
    /// HiMAP's stages: text→image at K1, then image→image at K2.
    pub fn stages(&self) -> Vec<PruneStage> {
        vec![
            PruneStage {
                layer: self.shallow_layer,
                keep_ratio: self.shallow_keep_ratio,
                rule: ScoreRule::TextToImage,
            },
            PruneStage {
                layer: self.deep_layer,
                keep_ratio: self.deep_keep_ratio,
                rule: ScoreRule::ImageToImage,
            },
        ]
    }

    /// HiMAP's hooks for a decoder of `num_layers` layers (the settings checked first).
    pub fn hooks(&self, num_layers: usize) -> Result<PruneHooks, CompressError> {
        CompressionPolicy::Himap(self.clone()).check(num_layers)?;
        PruneHooks::new(self.stages(), num_layers)
    }
}
