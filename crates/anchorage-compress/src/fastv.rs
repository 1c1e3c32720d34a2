//! FastV (pkunlp-icler/FastV, `src/transformers/src/transformers/models/llama/modeling_llama.py`,
//! in-place path; `llava-hf/.../modeling_llama.py` for the KV-cache variant): after layer `K-1`
//! runs, score each image token by layer `K-1`'s head-mean attention, keep the best
//! `round(ratio * N)` and drop the rest from the hidden states for layers `K..`, with original
//! RoPE positions.
//!
//! Differences from the reference, on purpose: every sample of a batch is scored and pruned with
//! its own attention and its own image span (the reference reads batch element 0 and a fixed
//! `sys_length`); padding stays masked. In generation the pruning happens in the prefill and decode
//! steps reuse the pruned KV cache (the llava-hf variant's behaviour).

use anchorage_llm::{AttentionRows, LayerHooks, LayerRequest, SeqLayout};
use burn::prelude::*;

use crate::config::{FastVConfig, FastVRule};
use crate::error::CompressError;
use crate::rows::{image_and_count, keep_best, received_scores, rows_or_last};
use crate::rules::ScoreRule;
use crate::trace::{LayerTokens, Selection, Trace};

/// FastV as a [`LayerHooks`] policy. State resets when layer 0 starts, so one value serves many forwards
/// (check `error` after each).
#[derive(Debug, Clone)]
pub struct FastVHooks {
    config: FastVConfig,
    pending: Option<Vec<Vec<usize>>>,
    /// What this forward did.
    pub trace: Trace,
    /// The first problem met (hooks cannot return errors; the forward then runs uncompressed).
    pub error: Option<CompressError>,
}

impl FastVHooks {
    /// FastV for a decoder of `num_layers` layers.
    pub fn new(config: FastVConfig, num_layers: usize) -> Result<Self, CompressError> {
        crate::config::CompressionPolicy::FastV(config.clone()).check(num_layers)?;
        Ok(Self {
            config,
            pending: None,
            trace: Trace::default(),
            error: None,
        })
    }

    fn score_layer(&self) -> usize {
        self.config.layer - 1
    }

    fn rule(&self) -> ScoreRule {
        match self.config.rule {
            FastVRule::LastToken => ScoreRule::LastToken,
            FastVRule::AverageReceived => ScoreRule::AverageReceived,
        }
    }
}

impl<B: Backend> LayerHooks<B> for FastVHooks {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> LayerRequest {
        if layer == 0 {
            // A new forward: the same hooks can serve many (training steps).
            self.trace = Trace::default();
            self.pending = None;
            self.error = None;
        }
        self.trace.layer(layer, layout.samples.iter().map(|s| LayerTokens { queries: s.len(), keys: s.len() }).collect());
        if layer != self.score_layer() || self.error.is_some() || layout.samples.iter().any(|s| s.is_empty()) {
            return LayerRequest::default();
        }
        let rows = layout
            .samples
            .iter()
            .map(|s| rows_or_last(s, self.rule().query_rows(s.len(), &s.image_positions())))
            .collect();
        LayerRequest {
            rows: Some(rows),
            kv_keep: None,
            kv_pool: None,
        }
    }

    fn attention_rows(&mut self, layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) {
        if layer != self.score_layer() {
            return;
        }
        let picks: Vec<(Vec<usize>, usize)> =
            layout.samples.iter().map(|s| image_and_count(s, self.config.keep_ratio)).collect();
        let columns: Vec<Vec<usize>> = picks.iter().map(|(image, _)| image.clone()).collect();
        match received_scores(layer, layout, rows, &columns) {
            Ok(scores) => {
                let keep: Vec<Vec<usize>> = layout
                    .samples
                    .iter()
                    .zip(&picks)
                    .zip(&scores)
                    .map(|((s, (image, k)), sc)| keep_best(s, image, sc, *k))
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
        if layer != self.score_layer() {
            return None;
        }
        let keep = self.pending.take()?;
        // Keeping everything is the plain forward: leave the sequence untouched so keep-all is
        // bit-identical to no compression.
        let all = keep.iter().zip(&layout.samples).all(|(k, s)| k.len() == s.len());
        (!all).then_some(keep)
    }
}

/// Original indices of the image tokens in each sample's kept current positions.
pub(crate) fn kept_images(layout: &SeqLayout, keep: &[Vec<usize>]) -> Vec<Vec<usize>> {
    layout
        .samples
        .iter()
        .zip(keep)
        .map(|(s, k)| k.iter().filter(|&&c| s.is_image(c)).map(|&c| s.index[c]).collect())
        .collect()
}
