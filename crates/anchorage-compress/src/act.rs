//! ACT-IN-LLM (Ding et al., ICLR 2025 submission; no public code: reconstructed from the abstract
//! and its public reviews, https://openreview.net/forum?id=3Ofy2jNsNL; no code was released). Every token stays a query in every layer; the deepest `coverage` of the
//! layers carry an adaptive compression module that lets all queries attend to all text
//! keys/values plus only a subset of the visual ones.
//!
//! - The compressed layers are split into contiguous stages, each with its own keep ratio
//!   (heavier compression deeper). The visual subset is chosen once per stage, at its first layer
//!   `f`, from layer `f-1`'s head-mean attention row of each sample's last token (the row that
//!   "encodes the complete multimodal context"), and stays fixed for the whole stage.
//! - When layer `f-1` is itself compressed, its row only covers the keys it attended to: the others
//!   score 0, so a deeper stage picks among the previous stage's tokens first (ties by position).
//! - Keys keep their original RoPE positions; causality is by original order.
//! - The first layer cannot be compressed (no previous attention), so compression starts at layer 1
//!   at the earliest.
//!
//! Selections ([`ActSelection`]): `Attention` (the paper's default, above); `AvgPool` (the paper's
//! AvgPool-1D K/V variant): the stage's visual keys/values are replaced by `k` average-pooled ones,
//! windows with `torch.nn.functional.adaptive_avg_pool1d`'s bounds over the image tokens, each the
//! mean of its members' keys (after RoPE at their own positions) and values, through the seam's
//! [`KvAccess::Pool`]; a pooled key is visible to a query from its window's last token on
//! (no future leakage); text keys/values stay as they are. `UniformWindows` keeps the centre token
//! of each of those windows (a content-independent subset, not in the paper).
//!
//! In generation the prefill fills each compressed layer's KV cache with only the kept (or pooled)
//! keys/values, so decode steps attend to text + the stage's visual keys of that layer, as the
//! paper's inference does.

use std::ops::Range;

use anchorage_llm::{AttentionRows, HookError, KvAccess, LayerHooks, LayerRequest, SampleLayout, SeqLayout};
use burn::prelude::*;

use crate::config::{ActConfig, ActSelection};
use crate::error::CompressError;
use crate::rows::{image_and_count, keep_best, received_scores};
use crate::rules::keep_count;
use crate::trace::{LayerTokens, Selection, Trace};

/// One stage: its layers and the fraction of visual keys/values it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ActStage {
    pub layers: Range<usize>,
    pub keep_ratio: f64,
}

/// The stages of ACT-IN-LLM on a decoder of `num_layers` layers: the last
/// `round(coverage * num_layers)` layers (never layer 0), split into `keep_ratios.len()`
/// contiguous stages as equal as possible, the earlier stages taking the remainder. Stages that
/// would be empty (more ratios than layers) are left out.
pub fn act_stages(config: &ActConfig, num_layers: usize) -> Vec<ActStage> {
    let count = keep_count(config.coverage, num_layers);
    let start = num_layers.saturating_sub(count).max(1);
    let total = num_layers.saturating_sub(start);
    let n = config.keep_ratios.len().max(1);
    let (base, rem) = (total / n, total % n);
    let mut at = start;
    let mut out = Vec::new();
    for (s, &keep_ratio) in config.keep_ratios.iter().enumerate() {
        let size = base + usize::from(s < rem);
        if size > 0 {
            out.push(ActStage {
                layers: at..at + size,
                keep_ratio,
            });
        }
        at += size;
    }
    out
}

/// Keys/values each sample attends to under `kv` (a `Keep` or `Pool` selection).
fn key_counts(kv: &KvAccess, layout: &SeqLayout) -> Vec<usize> {
    match kv {
        KvAccess::All => layout.samples.iter().map(|s| s.len()).collect(),
        KvAccess::Keep(keep) => keep.iter().map(Vec::len).collect(),
        KvAccess::Pool(pool) => pool.iter().map(Vec::len).collect(),
    }
}

/// Whether `kv` is every position as is (then the layer runs unrestricted, bit for bit).
fn is_everything(kv: &KvAccess, layout: &SeqLayout) -> bool {
    let all = |b: usize, n: usize| n == layout.samples[b].len();
    match kv {
        KvAccess::All => true,
        KvAccess::Keep(keep) => keep.iter().enumerate().all(|(b, k)| all(b, k.len())),
        KvAccess::Pool(pool) => pool.iter().enumerate().all(|(b, g)| all(b, g.len()) && g.iter().all(|g| g.len() == 1)),
    }
}

/// Per sample, the original indices of the image tokens that feed some key/value under `kv`.
fn kept_images(kv: &KvAccess, layout: &SeqLayout) -> Vec<Vec<usize>> {
    layout
        .samples
        .iter()
        .enumerate()
        .map(|(b, s)| {
            let mut kept: Vec<usize> = match kv {
                KvAccess::All => (0..s.len()).collect(),
                KvAccess::Keep(keep) => keep[b].clone(),
                KvAccess::Pool(pool) => pool[b].iter().flatten().copied().collect(),
            };
            kept.sort_unstable();
            kept.dedup();
            kept.into_iter().filter(|&c| s.is_image(c)).map(|c| s.index[c]).collect()
        })
        .collect()
}

/// ACT-IN-LLM as a [`LayerHooks`] policy. State resets when layer 0 starts, so one value serves
/// many forwards.
#[derive(Debug, Clone)]
pub struct ActHooks {
    selection: ActSelection,
    stages: Vec<ActStage>,
    /// Keys/values of the stage now running.
    active: Option<(usize, KvAccess)>,
    /// Selection made for the stage about to start.
    next: Option<(usize, KvAccess)>,
    /// What this forward did.
    pub trace: Trace,
}

impl ActHooks {
    /// ACT-IN-LLM for a decoder of `num_layers` layers.
    pub fn new(config: ActConfig, num_layers: usize) -> Result<Self, CompressError> {
        crate::config::CompressionPolicy::Act(config.clone()).check(num_layers)?;
        Ok(Self {
            selection: config.selection,
            stages: act_stages(&config, num_layers),
            active: None,
            next: None,
            trace: Trace::default(),
        })
    }

    /// The stages this policy runs.
    pub fn stages(&self) -> &[ActStage] {
        &self.stages
    }

    fn stage_of(&self, layer: usize) -> Option<usize> {
        self.stages.iter().position(|s| s.layers.contains(&layer))
    }

    fn stage_starting_at(&self, layer: usize) -> Option<usize> {
        self.stages.iter().position(|s| s.layers.start == layer)
    }

    /// Records a stage's keys/values; a pooled selection keeps every image token that is in a
    /// window (all of them when `k` > 0).
    fn record(&mut self, layer: usize, layout: &SeqLayout, stage: usize, keys: KvAccess) {
        let kept_images = kept_images(&keys, layout);
        self.trace.selections.push(Selection { layer, kept_images });
        self.next = Some((stage, keys));
    }

    /// At the first layer of `stage`: selects by windows (content-independent) or takes the
    /// selection the previous layer's attention made, and makes it the running one.
    fn start_stage(&mut self, layer: usize, layout: &SeqLayout, stage: usize) -> Result<(), HookError> {
        let ratio = self.stages[stage].keep_ratio;
        let samples = &layout.samples;
        match self.selection {
            ActSelection::Attention => {}
            ActSelection::AvgPool => {
                let pool = samples.iter().map(|s| pooled_windows(s, ratio)).collect();
                self.record(layer, layout, stage, KvAccess::Pool(pool));
            }
            ActSelection::UniformWindows => {
                let keep = samples.iter().map(|s| window_centres(s, ratio)).collect();
                self.record(layer, layout, stage, KvAccess::Keep(keep));
            }
        }
        match self.next.take().filter(|(s, _)| *s == stage) {
            Some(next) => {
                self.active = Some(next);
                Ok(())
            }
            // The attention selection is made from the rows asked for at the layer before.
            None => Err(HookError::new(layer, CompressError::MissingRows { asked_at: layer.saturating_sub(1) })),
        }
    }
}

/// The `k` adaptive windows over `n` items (`adaptive_avg_pool1d`'s bounds
/// `[floor(i·n/k), ceil((i+1)·n/k))`; they overlap when `k` does not divide `n`).
fn adaptive_windows(n: usize, k: usize) -> Vec<std::ops::Range<usize>> {
    (0..k).map(|i| i * n / k..((i + 1) * n).div_ceil(k)).collect()
}

/// AvgPool-1D groups of one sample: each text position alone, the image tokens in `k` adaptive
/// windows where they are, in order.
fn pooled_windows(sample: &SampleLayout, ratio: f64) -> Vec<Vec<usize>> {
    let (image, k) = image_and_count(sample, ratio);
    let mut windows = Some(adaptive_windows(image.len(), k).into_iter().map(|w| image[w].to_vec()));
    let mut groups = Vec::with_capacity(sample.len() - image.len() + k);
    for c in 0..sample.len() {
        if !sample.is_image(c) {
            groups.push(vec![c]);
        } else if let Some(windows) = windows.take() {
            groups.extend(windows);
        }
    }
    groups
}

/// Uniform windows (adaptive-pool bounds) over a sample's image tokens, one centre kept per window.
fn window_centres(sample: &SampleLayout, ratio: f64) -> Vec<usize> {
    let (image, k) = image_and_count(sample, ratio);
    let chosen: Vec<usize> = adaptive_windows(image.len(), k).into_iter().map(|w| image[(w.start + w.end - 1) / 2]).collect();
    crate::rules::merge_kept(sample.len(), &image, &chosen)
}

impl<B: Backend> LayerHooks<B> for ActHooks {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        if layer == 0 {
            // A new forward: the same hooks can serve many (training steps).
            self.trace = Trace::default();
            self.active = None;
            self.next = None;
        }
        let mut request = LayerRequest::default();
        match self.stage_of(layer) {
            Some(stage) => {
                if self.stages[stage].layers.start == layer {
                    self.start_stage(layer, layout, stage)?;
                }
                if let Some((s, kv)) = &self.active {
                    if *s == stage && !is_everything(kv, layout) {
                        request.kv = kv.clone();
                    }
                }
            }
            None => self.active = None,
        }
        if self.selection == ActSelection::Attention && self.stage_starting_at(layer + 1).is_some() {
            request.rows = Some(layout.last_rows());
        }
        let counts = key_counts(&request.kv, layout);
        let tokens = layout
            .samples
            .iter()
            .zip(counts)
            .map(|(s, keys)| LayerTokens { queries: s.len(), keys })
            .collect();
        self.trace.layer(layer, tokens);
        Ok(request)
    }

    fn attention_rows(&mut self, layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) -> Result<(), HookError> {
        let Some(stage) = self.stage_starting_at(layer + 1) else {
            return Ok(());
        };
        let ratio = self.stages[stage].keep_ratio;
        let picks: Vec<(Vec<usize>, usize)> = layout.samples.iter().map(|s| image_and_count(s, ratio)).collect();
        let columns: Vec<Vec<usize>> = picks.iter().map(|(image, _)| image.clone()).collect();
        let scores = received_scores(layout, rows, &columns).map_err(|e| HookError::new(layer, e))?;
        let keep = layout
            .samples
            .iter()
            .zip(&picks)
            .zip(&scores)
            .map(|((s, (image, k)), sc)| keep_best(s, image, sc, *k))
            .collect();
        self.record(layer, layout, stage, KvAccess::Keep(keep));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_cover_the_deepest_layers() {
        let config = ActConfig::default();
        let stages = act_stages(&config, 32);
        let ranges: Vec<_> = stages.iter().map(|s| s.layers.clone()).collect();
        assert_eq!(ranges, vec![10..18, 18..25, 25..32]);
        let stages = act_stages(&ActConfig { coverage: 1.0, ..config.clone() }, 4);
        let ranges: Vec<_> = stages.iter().map(|s| s.layers.clone()).collect();
        assert_eq!(ranges, vec![1..2, 2..3, 3..4]);
        let stages = act_stages(&ActConfig { coverage: 0.5, ..config }, 4);
        assert_eq!(stages.len(), 2, "{stages:?}");
    }

    #[test]
    fn window_centres_spread_over_the_image() {
        let sample = SampleLayout {
            index: (0..12).collect(),
            image: 2..10,
        };
        // 8 image tokens, 4 windows of 2: centres are the first of each pair.
        assert_eq!(window_centres(&sample, 0.5), vec![0, 1, 2, 4, 6, 8, 10, 11]);
    }

    #[test]
    fn pooled_windows_follow_adaptive_avg_pool1d() {
        // torch: adaptive_avg_pool1d over 6 into 4 -> windows [0,2) [1,3) [3,5) [4,6) (overlapping).
        assert_eq!(adaptive_windows(6, 4), vec![0..2, 1..3, 3..5, 4..6]);
        assert_eq!(adaptive_windows(7, 3), vec![0..3, 2..5, 4..7]);
        assert_eq!(adaptive_windows(8, 4), vec![0..2, 2..4, 4..6, 6..8]);
        let sample = SampleLayout {
            index: (0..10).collect(),
            image: 2..8,
        };
        // 6 image tokens, round(0.6 * 6) = 4 windows; text positions stay single.
        let groups = pooled_windows(&sample, 0.6);
        let expected: Vec<Vec<usize>> =
            vec![vec![0], vec![1], vec![2, 3], vec![3, 4], vec![5, 6], vec![6, 7], vec![8], vec![9]];
        assert_eq!(groups, expected);
        // keep everything: every image token alone
        let all = pooled_windows(&sample, 1.0);
        assert_eq!(all, (0..10).map(|c| vec![c]).collect::<Vec<_>>());
        // no image: text only
        let text = SampleLayout { index: (0..4).collect(), image: 0..0 };
        assert_eq!(pooled_windows(&text, 0.5), (0..4).map(|c| vec![c]).collect::<Vec<_>>());
    }
}
