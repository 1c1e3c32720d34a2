//! The pruning policy FastV and HiMAP share: a list of stages, each scoring the image tokens by a
//! [`ScoreRule`] on one layer's head-mean attention and dropping all but the best from the
//! sequence for the layers after it, with their original RoPE positions. FastV is one stage
//! (`fastv.rs`), HiMAP two (`himap.rs`); a stage list written by hand runs the same way.
//!
//! Each sample of a batch is scored with its own attention and its own image span and keeps
//! `round(ratio · its original image-token count)` image tokens (never more than are left); text
//! tokens always stay. Keeping everything leaves the sequence untouched, so keep-all is the plain
//! forward bit for bit.

use anchorage_llm::{AttentionRows, HookError, KvAccess, LayerHooks, LayerRequest, SeqLayout};
use burn::prelude::*;

use crate::config::{layer_in, ratio};
use crate::error::CompressError;
use crate::rows::{image_and_count, keep_best, received_scores, rows_or_last};
use crate::rules::ScoreRule;
use crate::trace::{LayerTokens, Selection, Trace};

/// One pruning point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneStage {
    /// K: layer K-1's attention scores the image tokens; layers K.. run without the dropped ones.
    pub layer: usize,
    /// Fraction of each sample's original image tokens kept.
    pub keep_ratio: f64,
    /// Which query rows score the image tokens.
    pub rule: ScoreRule,
}

/// Prune stages as a [`LayerHooks`] policy. State resets when layer 0 starts, so one value serves
/// many forwards.
#[derive(Debug, Clone)]
pub struct PruneHooks {
    stages: Vec<PruneStage>,
    /// The selection of the layer now running, until its `after_layer` applies it.
    pending: Option<Vec<Vec<usize>>>,
    /// What this forward did.
    pub trace: Trace,
}

impl PruneHooks {
    /// Runs `stages` (K strictly increasing, each in `1..num_layers`, ratios in (0, 1]) on a
    /// decoder of `num_layers` layers.
    pub fn new(stages: Vec<PruneStage>, num_layers: usize) -> Result<Self, CompressError> {
        for (i, stage) in stages.iter().enumerate() {
            layer_in("stages.layer", stage.layer, Some(num_layers))?;
            ratio("stages.keep_ratio", stage.keep_ratio)?;
            if i > 0 && stage.layer <= stages[i - 1].layer {
                return Err(CompressError::Config {
                    key: "stages.layer",
                    message: format!("stage {i} at {} does not come after stage {} at {}", stage.layer, i - 1, stages[i - 1].layer),
                });
            }
        }
        Ok(Self {
            stages,
            pending: None,
            trace: Trace::default(),
        })
    }

    /// The stages this policy runs.
    pub fn stages(&self) -> &[PruneStage] {
        &self.stages
    }

    /// The stage whose scores come from layer `layer`'s attention.
    fn scored_at(&self, layer: usize) -> Option<PruneStage> {
        self.stages.iter().copied().find(|s| s.layer == layer + 1)
    }
}

impl<B: Backend> LayerHooks<B> for PruneHooks {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        if layer == 0 {
            // A new forward: the same hooks can serve many (training steps).
            self.trace = Trace::default();
            self.pending = None;
        }
        self.trace.layer(layer, layout.samples.iter().map(|s| LayerTokens { queries: s.len(), keys: s.len() }).collect());
        let Some(stage) = self.scored_at(layer) else {
            return Ok(LayerRequest::default());
        };
        let rows = layout
            .samples
            .iter()
            .map(|s| rows_or_last(s, stage.rule.query_rows(s.len(), &s.image_positions())))
            .collect();
        Ok(LayerRequest {
            rows: Some(rows),
            kv: KvAccess::All,
        })
    }

    fn attention_rows(&mut self, layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) -> Result<(), HookError> {
        let Some(stage) = self.scored_at(layer) else {
            return Ok(());
        };
        let picks: Vec<(Vec<usize>, usize)> = layout.samples.iter().map(|s| image_and_count(s, stage.keep_ratio)).collect();
        let columns: Vec<Vec<usize>> = picks.iter().map(|(image, _)| image.clone()).collect();
        let scores = received_scores(layout, rows, &columns).map_err(|e| HookError::new(layer, e))?;
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
        Ok(())
    }

    fn after_layer(&mut self, layer: usize, layout: &SeqLayout, _hidden: &Tensor<B, 3>) -> Result<Option<Vec<Vec<usize>>>, HookError> {
        if self.scored_at(layer).is_none() {
            return Ok(None);
        }
        let keep = self.pending.take().ok_or_else(|| HookError::new(layer, CompressError::MissingRows { asked_at: layer }))?;
        // Keeping everything is the plain forward: leave the sequence untouched so keep-all is
        // bit-identical to no compression.
        let all = keep.iter().zip(&layout.samples).all(|(k, s)| k.len() == s.len());
        Ok((!all).then_some(keep))
    }
}

/// Original indices of the image tokens in each sample's kept current positions.
fn kept_images(layout: &SeqLayout, keep: &[Vec<usize>]) -> Vec<Vec<usize>> {
    layout
        .samples
        .iter()
        .zip(keep)
        .map(|(s, k)| k.iter().filter(|&&c| s.is_image(c)).map(|&c| s.index[c]).collect())
        .collect()
}
