//! The model configuration (a burn `Config`) and its named presets. The Hugging Face
//! `config.json` wire format lives in `wire.rs` and is converted into this explicitly.

use burn::config::Config;
use serde::{Deserialize, Serialize};

/// Which architecture family; decides only the defaults that `config.json` leaves implicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmFamily {
    /// Llama, Llama-2, Llama-3, Vicuna (`model_type = "llama"`).
    Llama,
    /// Qwen2 (`model_type = "qwen2"`): q/k/v projections carry biases.
    Qwen2,
}

/// How rotary frequencies are scaled (`rope_parameters.rope_type` / `rope_scaling.type`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Plain RoPE (`default`).
    None,
    /// Position interpolation: every inverse frequency divided by `factor` (Vicuna-16k, LongChat).
    Linear { factor: f64 },
    /// Llama 3.1's band-wise scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// A Llama-family or Qwen2 decoder. Field names follow `config.json`.
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Architecture family.
    pub family: LlmFamily,
    /// Vocabulary size (rows of `embed_tokens`, outputs of `lm_head`).
    pub vocab_size: usize,
    /// Model width D.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers L.
    pub num_hidden_layers: usize,
    /// Query heads H.
    pub num_attention_heads: usize,
    /// Key/value heads (H for multi-head attention, fewer for GQA, 1 for MQA).
    pub num_key_value_heads: usize,
    /// Width of one head (usually D / H).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Longest position the model was trained for (informational; positions are not clamped).
    pub max_position_embeddings: usize,
    /// Biases on q/k/v projections (Qwen2, or Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama with `attention_bias`).
    pub o_bias: bool,
    /// Biases on the MLP projections (`mlp_bias`).
    pub mlp_bias: bool,
    /// `lm_head` shares the embedding matrix (no `lm_head.weight` in the checkpoint).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// Tokens that end generation.
    pub eos_token_ids: Vec<u32>,
    /// Padding token id.
    pub pad_token_id: Option<u32>,
}

impl LlamaConfig {
    /// Vicuna-7B v1.5 (lmsys/vicuna-7b-v1.5): Llama-2-7B geometry, 32 heads, no GQA.
    pub fn vicuna_7b() -> Self {
        Self {
            family: LlmFamily::Llama,
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            max_position_embeddings: 4096,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            pad_token_id: Some(0),
        }
    }

    /// Llama-2-7B's (and Vicuna-7B v1.5's) architecture: vocabulary 32000, width 4096, 32 layers
    /// of 32 heads of 128 (no GQA), MLP 11008, RMSNorm eps 1e-5, RoPE theta 10000, 4096 positions.
    /// With random weights it is the LLM of `train bench step` at LLaVA-1.5-7B size.
    pub fn llama2_7b() -> Self {
        Self {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            head_dim: 128,
            max_position_embeddings: 4096,
            ..Self::tiny()
        }
    }

    /// The embedded default's LLM: a Llama with vocabulary 1024 (the tiny tokenizer in
    /// `data-manifests/tiny/data/tokenizer.json`: pad 0, BOS 1, EOS 2), width 64, 2 layers,
    /// 4 query heads sharing 2 key/value heads (so GQA is exercised), head width 16.
    pub fn tiny() -> Self {
        Self {
            family: LlmFamily::Llama,
            vocab_size: 1024,
            hidden_size: 64,
            intermediate_size: 172,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            max_position_embeddings: 2048,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            pad_token_id: Some(0),
        }
    }

    /// Query heads per key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads.max(1)
    }
}
