//! The per-layer seam through which a visual-token compression policy (FastV, HiMAP, ACT-IN-LLM,
//! implemented in anchorage-compress) steers the decoder, batched, each sample with its own kept
//! set:
//!
//! - (a) read head-mean attention rows it asks for at a layer ([`LayerRequest::rows`] ->
//!   [`LayerHooks::attention_rows`]);
//! - (b) restrict a layer's keys/values to a subset of positions while every position stays a
//!   query ([`KvAccess::Keep`], ACT-IN-LLM), or replace them by pooled keys/values, each the mean
//!   of a group of positions ([`KvAccess::Pool`], ACT-IN-LLM's AvgPool-1D);
//! - (c) drop positions from the hidden states after a layer ([`LayerHooks::after_layer`],
//!   FastV/HiMAP), keeping original RoPE positions and a correct per-sample mask.
//!
//! Positions a hook sees and returns are *current* indices into the (possibly already pruned)
//! sequence of one sample; [`SampleLayout::index`] maps them to indices of the original input, and
//! [`SampleLayout::image`] says (in original indices) where the caller placed the image tokens.
//! [`NoHooks`] is the default: it reports itself inactive and the forward then computes no
//! attention probabilities and builds no host-side masks.
//!
//! Every method is fallible: a policy that cannot make its selection returns a [`HookError`] and
//! the forward (or the prefill) stops with it, instead of running on uncompressed.
//!
//! Hooks run in the forward over embeddings and in the prefill of generation; decode steps reuse
//! what the prefill left in the KV cache (pruned, restricted or pooled keys stay so) and call no
//! hook.

use std::ops::Range;

use burn::prelude::*;

use crate::hook_error::HookError;

/// Where one sample's real (non-padding) tokens are now.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLayout {
    /// Original input index of each current real position (strictly increasing).
    pub index: Vec<usize>,
    /// Where the caller placed this sample's image tokens, in original indices (empty: no image).
    pub image: Range<usize>,
}

impl SampleLayout {
    /// Number of real tokens now.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the sample has no real tokens.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Current index of the last real token.
    pub fn last(&self) -> usize {
        self.index.len().saturating_sub(1)
    }

    /// Whether the token now at `current` is an image token.
    pub fn is_image(&self, current: usize) -> bool {
        self.index.get(current).is_some_and(|i| self.image.contains(i))
    }

    /// Current indices of the image tokens still present, in order.
    pub fn image_positions(&self) -> Vec<usize> {
        (0..self.len()).filter(|&c| self.is_image(c)).collect()
    }

    /// Current indices of every non-image token, in order.
    pub fn text_positions(&self) -> Vec<usize> {
        (0..self.len()).filter(|&c| !self.is_image(c)).collect()
    }
}

/// The batch's layout before a layer runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqLayout {
    /// One entry per sample.
    pub samples: Vec<SampleLayout>,
    /// Padded sequence length of the hidden states now.
    pub padded_len: usize,
}

impl SeqLayout {
    /// Each sample's last real token (the row FastV and ACT-IN-LLM read); no row for a sample
    /// without real tokens.
    pub fn last_rows(&self) -> Vec<Vec<usize>> {
        self.samples.iter().map(|s| s.len().checked_sub(1).into_iter().collect()).collect()
    }
}

/// Which keys/values a layer attends to.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum KvAccess {
    /// Every current position's own key/value (the plain layer).
    #[default]
    All,
    /// Only these positions' keys/values (current indices per sample, sorted, unique). All
    /// positions stay queries; causality and padding still apply.
    Keep(Vec<Vec<usize>>),
    /// Pooled keys/values instead of the layer's own: per sample, a list of groups of current
    /// indices (each group non-empty, sorted, unique; groups may overlap). A group's key is the
    /// mean of its members' keys after RoPE (each at its own position), its value the mean of
    /// their values; a singleton group is that key as is, and positions in no group are not
    /// attended to. All positions stay queries; a query sees a group only when every member is at
    /// or before it (no future leakage), and padding still applies. Gradients reach every member.
    /// Head-mean rows cannot be asked for at such a layer.
    Pool(Vec<Vec<Vec<usize>>>),
}

/// What a hook asks of one layer before it runs. The default asks nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerRequest {
    /// Query rows (current indices per sample; empty only for a sample without real tokens) whose
    /// head-mean attention probabilities this layer should report through
    /// [`LayerHooks::attention_rows`].
    pub rows: Option<Vec<Vec<usize>>>,
    /// The keys/values the layer attends to.
    pub kv: KvAccess,
}

/// Head-mean attention probabilities of the rows a hook asked for.
#[derive(Debug, Clone)]
pub struct AttentionRows<B: Backend> {
    /// `[batch, max_rows, padded_len]`: row `r` of sample `b` is the softmax over current key
    /// positions (masked keys have probability 0), averaged over heads. Rows past a sample's own
    /// count repeat its last requested row.
    pub probs: Tensor<B, 3>,
    /// The requested rows per sample, as given.
    pub rows: Vec<Vec<usize>>,
}

/// A compression policy's view of the decoder. Every method has a do-nothing default; an error
/// from any of them ends the forward with [`LlmError::Hook`](crate::LlmError::Hook).
pub trait LayerHooks<B: Backend> {
    /// `false` promises that no method below would ever ask for anything, so the forward skips all
    /// bookkeeping (the no-op path is the plain forward).
    fn active(&self) -> bool {
        true
    }

    /// Called before decoder layer `layer` (0-based) runs.
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        let _ = (layer, layout);
        Ok(LayerRequest::default())
    }

    /// Receives the rows asked for in [`LayerHooks::before_layer`] of the same layer.
    fn attention_rows(&mut self, layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) -> Result<(), HookError> {
        let _ = (layer, layout, rows);
        Ok(())
    }

    /// Called after decoder layer `layer` with its output `[batch, padded_len, hidden]`. Returning
    /// `Some(keep)` keeps, per sample, only those current positions (sorted, unique) for the
    /// following layers; they keep their original RoPE positions.
    fn after_layer(
        &mut self,
        layer: usize,
        layout: &SeqLayout,
        hidden: &Tensor<B, 3>,
    ) -> Result<Option<Vec<Vec<usize>>>, HookError> {
        let _ = (layer, layout, hidden);
        Ok(None)
    }
}

/// The default: no hook, no cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl<B: Backend> LayerHooks<B> for NoHooks {
    fn active(&self) -> bool {
        false
    }
}

/// Records the output of every decoder layer (transformers' `hidden_states[1..L]` before the
/// final norm is applied to the last one).
#[derive(Debug, Default)]
pub struct HiddenRecorder<B: Backend> {
    /// Layer outputs in order.
    pub layers: Vec<Tensor<B, 3>>,
}

impl<B: Backend> LayerHooks<B> for HiddenRecorder<B> {
    fn after_layer(
        &mut self,
        _layer: usize,
        _layout: &SeqLayout,
        hidden: &Tensor<B, 3>,
    ) -> Result<Option<Vec<Vec<usize>>>, HookError> {
        self.layers.push(hidden.clone());
        Ok(None)
    }
}
