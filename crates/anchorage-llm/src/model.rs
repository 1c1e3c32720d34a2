//! The causal LM: `model.embed_tokens`, `model.layers.{i}`, `model.norm`, `lm_head` (absent when
//! tied to the embeddings). Seams: [`Llm::embed`], [`Llm::forward_embeds`] (in `forward.rs`),
//! [`Llm::logits`], and greedy generation (in `generate.rs`).

use anchorage_kernels::linear;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::config::LlamaConfig;
use crate::error::LlmError;
use crate::layer::DecoderLayer;
use crate::norm::{RmsNorm, RmsNormConfig};
use crate::rope::Rope;

/// `model.*` of the checkpoint.
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
}

/// A Llama-family or Qwen2 causal LM.
#[derive(Module, Debug)]
pub struct Llm<B: Backend> {
    pub model: LlamaModel<B>,
    /// `None` when the output projection is tied to `model.embed_tokens`.
    pub lm_head: Option<Linear<B>>,
    #[module(skip)]
    pub config: LlamaConfig,
    #[module(skip)]
    pub rope: Rope,
}

impl LlamaConfig {
    /// A randomly initialised model (seed the backend for reproducible weights; checkpoints replace
    /// them through `load.rs`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Llm<B> {
        let lm_head = (!self.tie_word_embeddings)
            .then(|| LinearConfig::new(self.hidden_size, self.vocab_size).with_bias(false).init(device));
        Llm {
            model: LlamaModel {
                embed_tokens: EmbeddingConfig::new(self.vocab_size, self.hidden_size).init(device),
                layers: (0..self.num_hidden_layers).map(|_| DecoderLayer::new(self, device)).collect(),
                norm: RmsNormConfig::new(self.hidden_size, self.rms_norm_eps).init(device),
            },
            lm_head,
            config: self.clone(),
            rope: Rope::new(self.head_dim, self.rope_theta, self.rope_scaling),
        }
    }
}

impl<B: Backend> Llm<B> {
    /// Token embeddings.
    ///
    /// # Shapes
    /// `ids [batch, len]` -> `[batch, len, hidden]`
    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.model.embed_tokens.forward(ids)
    }

    /// The position and value of the first id outside the vocabulary, if any.
    pub fn first_bad_id(&self, ids: &[i64]) -> Option<(usize, i64)> {
        let vocab = self.config.vocab_size;
        ids.iter().enumerate().find(|(_, &id)| id < 0 || id as usize >= vocab).map(|(i, &id)| (i, id))
    }

    /// Checks ids against the vocabulary, then embeds them (for ids that come from users).
    pub fn embed_checked(&self, ids: &[Vec<i64>], device: &B::Device) -> Result<Tensor<B, 3>, LlmError> {
        let vocab = self.config.vocab_size;
        let len = ids.first().map_or(0, Vec::len);
        let mut flat = Vec::with_capacity(ids.len() * len);
        for row in ids {
            if row.len() != len {
                return Err(LlmError::InputShape {
                    what: "ids".into(),
                    expected: format!("rows of equal length {len}"),
                    found: vec![ids.len(), row.len()],
                });
            }
            if let Some((_, id)) = self.first_bad_id(row) {
                return Err(LlmError::TokenId { id, vocab });
            }
            flat.extend_from_slice(row);
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [ids.len(), len]), device);
        Ok(self.embed(ids))
    }

    /// Output logits of (already normed) hidden states.
    ///
    /// # Shapes
    /// `hidden [batch, len, hidden]` -> `[batch, len, vocab]`
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => linear::forward(head, hidden),
            None => {
                let weight = self.model.embed_tokens.weight.val();
                let [b, l, d] = hidden.dims();
                hidden
                    .reshape([b * l, d])
                    .matmul(weight.transpose())
                    .reshape([b, l, self.config.vocab_size])
            }
        }
    }

    /// Output logits of rows of (already normed) hidden states: [`Self::logits`] for chosen
    /// positions only.
    ///
    /// # Shapes
    /// `rows [n, hidden]` -> `[n, vocab]`
    pub fn logits_rows(&self, rows: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(head) => linear::forward(head, rows),
            None => rows.matmul(self.model.embed_tokens.weight.val().transpose()),
        }
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    /// This LLM with every layer's attention recomputing its probabilities in the backward pass
    /// under autodiff on a GPU backend (`true`, the default) or keeping burn's recorded attention
    /// (`false`, which holds about three `[batch, heads, len, len]` tensors per layer until the
    /// backward pass). Forward values are the same either way.
    pub fn with_recomputed_attention(mut self, recompute: bool) -> Self {
        for layer in &mut self.model.layers {
            layer.self_attn.recompute_backward = recompute;
        }
        self
    }
}
