//! The KV cache for greedy generation: a plain struct passed `&mut`, one entry per decoder layer.
//! A layer whose keys were restricted or pooled, or whose positions were dropped, in the prefill
//! keeps only those keys (a pooled layer stores one slot per group); later decode steps attend to
//! what is stored.

use burn::prelude::*;

/// Keys and values one layer has seen, after RoPE, with a validity mask (padding slots and the
/// filler of ragged per-sample key sets are invalid).
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    /// `[batch, kv_heads, len, head_dim]`
    pub k: Tensor<B, 4>,
    /// `[batch, kv_heads, len, head_dim]`
    pub v: Tensor<B, 4>,
    /// `[batch, len]`, true where the slot holds a real key.
    pub valid: Tensor<B, 2, Bool>,
}

impl<B: Backend> LayerKv<B> {
    /// Appends one step's keys and values (all valid).
    ///
    /// # Shapes
    /// `k, v [batch, kv_heads, 1, head_dim]`
    pub fn append(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) {
        let batch = k.dims()[0];
        let device = k.device();
        self.k = Tensor::cat(vec![self.k.clone(), k], 2);
        self.v = Tensor::cat(vec![self.v.clone(), v], 2);
        let ones = Tensor::<B, 2, Int>::ones([batch, 1], &device).bool();
        self.valid = Tensor::cat(vec![self.valid.clone(), ones], 1);
    }

    /// Number of slots (valid or not).
    pub fn len(&self) -> usize {
        self.k.dims()[2]
    }

    /// Whether no slot is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-layer caches plus, per sample, the RoPE position the next token gets.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// One entry per decoder layer; `None` before the prefill.
    pub layers: Vec<Option<LayerKv<B>>>,
    /// Position id of each sample's next token.
    pub next_position: Vec<i64>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            next_position: Vec::new(),
        }
    }

    /// Whether the prefill has run.
    pub fn is_filled(&self) -> bool {
        self.layers.iter().all(Option::is_some) && !self.layers.is_empty()
    }

    /// Slots stored per layer (shows what pruning left).
    pub fn lengths(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.as_ref().map_or(0, LayerKv::len)).collect()
    }
}
