//! Frozen decoder LLMs (Llama family, Qwen2): `embed(ids)`, a forward over embeddings with an
//! attention mask, explicit positions and per-layer hooks, `logits`, and greedy generation with a
//! KV cache and stop tokens.
//!
//! The compression seam is [`LayerHooks`]: a policy can read head-mean attention rows, restrict a
//! layer's keys/values per sample or replace them by pooled ones ([`KvAccess`]), and drop positions
//! after a layer (see `hooks.rs`). Hooks are fallible: a policy's error ends the forward with
//! [`LlmError::Hook`] naming the layer and, where known, the sample.
//!
//! ```no_run
//! use anchorage_llm::{load_llm, GenerateOptions, KvCache, LlmInput, NoHooks};
//! use burn::tensor::DType;
//! # fn main() -> Result<(), anchorage_llm::LlmError> {
//! type B = burn::backend::Flex;
//! let device = Default::default();
//! let llm = load_llm::<B>("vicuna-7b-v1.5".as_ref(), DType::BF16, &device)?;
//! let embeds = llm.embed_checked(&[vec![1, 450, 7483]], &device)?; // or spliced image + text
//! // Right padding, explicit positions and image spans: `LlmInput { .. }` or `LlmInput::padded`.
//! let out = llm.forward_embeds(LlmInput::plain(embeds.clone()), &mut NoHooks)?;
//! let logits = llm.logits(out.hidden); // [batch, len, vocab]
//! let options = GenerateOptions { max_new_tokens: 16, stop_tokens: llm.config.eos_token_ids.clone() };
//! let mut cache = KvCache::new(llm.num_layers());
//! let tokens = llm.generate(LlmInput::plain(embeds), &mut NoHooks, &mut cache, &options)?;
//! # let _ = (logits, tokens); Ok(()) }
//! ```
//!
//! Supported: `model_type` llama (Llama, Llama-2, Llama-3/3.1, Vicuna; GQA; `attention_bias`,
//! `mlp_bias`, `head_dim`) and qwen2 (q/k/v biases, tied embeddings); RoPE `default`, `linear`
//! and `llama3` (`dynamic`, `yarn` and sliding windows are refused with an error naming the key).

mod attention;
mod cache;
mod config;
mod error;
mod forward;
mod generate;
mod hook_error;
mod hf_config;
mod hooks;
mod layer;
mod load;
mod lora;
mod lora_adapter;
mod mlp;
mod model;
mod norm;
mod packed;
mod plan;
mod rope;
mod safetensors;
pub use safetensors::{read_tensors, write_tensors};
/// The tensor-file layer's error, which [`LlmError::Tensors`] wraps.
pub use anchorage_tensors::TensorsError;
mod wire;

pub use attention::{Attention, AttentionConfig, AttnPlan, CacheMode, KeyMask};
pub use cache::{KvCache, LayerKv};
pub use config::{LlamaConfig, LlmFamily, RopeScaling};
pub use error::LlmError;
pub use forward::{LlmInput, LlmOutput};
pub use generate::GenerateOptions;
pub use hook_error::{BadRequest, HookError};
pub use hf_config::{hf_config_check, hf_config_json};
pub use hooks::{AttentionRows, HiddenRecorder, KvAccess, LayerHooks, LayerRequest, NoHooks, SampleLayout, SeqLayout};
pub use layer::DecoderLayer;
pub use load::{load_llm, load_llm_from, read_config, LlmKeyPrefixes};
pub use lora_adapter::{LoraAdapter, LoraSpec, LORA_TARGETS};
pub use mlp::{Mlp, MlpConfig};
pub use model::{LlamaModel, Llm};
pub use norm::{RmsNorm, RmsNormConfig};
pub use rope::{apply_rope, Rope};
pub use wire::HfLlmConfig;
