//! HiMAP (ustc-hyin/HiMAP, `src/LLaVA/llava/model/language_model/himap.py`,
//! `Himap_LlamaModel.forward`): two pruning points.
//!
//! - Shallow, after layer `K1-1`: score each image token by the head-mean attention it receives
//!   from every token after the image (the instruction), keep `k1 = round(r1 * N)`.
//! - Deep, after layer `K2-1`: score each remaining image token by the attention it receives from
//!   the remaining image tokens (image→image), keep `k2 = round(r2 * N)` (`k2 ≤ k1`).
//!
//! Text tokens always stay; positions keep their original RoPE ids. Unlike the reference, each
//! sample of a batch uses its own attention and its own image span; a sample whose image is the
//! last thing in its sequence (no text after it) is scored by its last row instead.

use anchorage_llm::{AttentionRows, LayerHooks, LayerRequest, SeqLayout};
use burn::prelude::*;

use crate::config::HimapConfig;
use crate::error::CompressError;
use crate::fastv::kept_images;
use crate::rows::{keep_best, received_scores, rows_or_last};
use crate::rules::keep_count;
use crate::trace::{LayerTokens, Selection, Trace};

/// HiMAP as a [`LayerHooks`] policy. State resets when layer 0 starts, so one value serves many forwards
/// (check `error` after each).
#[derive(Debug, Clone)]
pub struct HimapHooks {
    config: HimapConfig,
    pending: Option<Vec<Vec<usize>>>,
    /// What this forward did.
    pub trace: Trace,
    /// The first problem met (the forward then continues without further pruning).
    pub error: Option<CompressError>,
}

impl HimapHooks {
    /// HiMAP for a decoder of `num_layers` layers.
    pub fn new(config: HimapConfig, num_layers: usize) -> Result<Self, CompressError> {
        crate::config::CompressionPolicy::Himap(config.clone()).check(num_layers)?;
        Ok(Self {
            config,
            pending: None,
            trace: Trace::default(),
            error: None,
        })
    }

    /// The keep ratio of the rule scored at `layer`, if it is a scoring layer.
    fn ratio_at(&self, layer: usize) -> Option<f64> {
        if layer + 1 == self.config.shallow_layer {
            Some(self.config.shallow_keep_ratio)
        } else if layer + 1 == self.config.deep_layer {
            Some(self.config.deep_keep_ratio)
        } else {
            None
        }
    }
}

impl<B: Backend> LayerHooks<B> for HimapHooks {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> LayerRequest {
        if layer == 0 {
            // A new forward: the same hooks can serve many (training steps).
            self.trace = Trace::default();
            self.pending = None;
            self.error = None;
        }
        self.trace.layer(layer, layout.samples.iter().map(|s| LayerTokens { queries: s.len(), keys: s.len() }).collect());
        if self.ratio_at(layer).is_none() || self.error.is_some() || layout.samples.iter().any(|s| s.is_empty()) {
            return LayerRequest::default();
        }
        let shallow = layer + 1 == self.config.shallow_layer;
        let rows = layout
            .samples
            .iter()
            .map(|s| {
                let wanted = if shallow {
                    (0..s.len()).filter(|&c| s.index[c] >= s.image.end).collect()
                } else {
                    s.image_positions()
                };
                rows_or_last(s, wanted)
            })
            .collect();
        LayerRequest {
            rows: Some(rows),
            kv_keep: None,
            kv_pool: None,
        }
    }

    fn attention_rows(&mut self, layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) {
        let Some(ratio) = self.ratio_at(layer) else {
            return;
        };
        let columns: Vec<Vec<usize>> = layout.samples.iter().map(|s| s.image_positions()).collect();
        match received_scores(layer, layout, rows, &columns) {
            Ok(scores) => {
                let keep: Vec<Vec<usize>> = layout
                    .samples
                    .iter()
                    .zip(&columns)
                    .zip(&scores)
                    .map(|((s, image), sc)| {
                        let k = keep_count(ratio, s.image.len()).min(image.len());
                        keep_best(s, image, sc, k)
                    })
                    .collect();
                self.trace.selections.push(Selection {
                    layer,
                    kept_images: kept_images(layout, &keep),
                });
                self.pending = Some(keep);
            }
            Err(e) => {
                // Boxed hooks cannot be asked; say it here too.
                tracing::warn!(layer, error = %e, "compression skipped: the forward runs uncompressed from here");
                self.error = Some(e);
            }
        }
    }

    fn after_layer(&mut self, layer: usize, layout: &SeqLayout, _hidden: &Tensor<B, 3>) -> Option<Vec<Vec<usize>>> {
        self.ratio_at(layer)?;
        let keep = self.pending.take()?;
        let all = keep.iter().zip(&layout.samples).all(|(k, s)| k.len() == s.len());
        (!all).then_some(keep)
    }
}
