//! Frozen decoder LLMs (Llama family, Qwen2): `embed(ids)`, a forward over embeddings with an
//! attention mask, explicit positions and per-layer hooks, `logits`, and greedy generation with a
//! KV cache and stop tokens.
//!
//! The compression seam is [`LayerHooks`]: a policy can read head-mean attention rows, restrict a
//! layer's keys/values per sample, and drop positions after a layer (see `hooks.rs`).

mod attention;
mod cache;
mod config;
mod error;
mod forward;
mod generate;
mod hooks;
mod layer;
mod load;
mod mlp;
mod model;
mod norm;
mod rope;
mod safetensors;
pub use safetensors::{read_tensors, write_tensors};
mod wire;

pub use attention::{Attention, AttentionConfig, AttnPlan, CacheMode, KeyMask};
pub use cache::{KvCache, LayerKv};
pub use config::{LlamaConfig, LlmFamily, RopeScaling};
pub use error::LlmError;
pub use forward::{LlmInput, LlmOutput};
pub use generate::GenerateOptions;
pub use hooks::{AttentionRows, HiddenRecorder, LayerHooks, LayerRequest, NoHooks, SampleLayout, SeqLayout};
pub use layer::DecoderLayer;
pub use load::{load_llm, read_config};
pub use mlp::{Mlp, MlpConfig};
pub use model::{LlamaModel, Llm};
pub use norm::{RmsNorm, RmsNormConfig};
pub use rope::{apply_rope, Rope};
pub use wire::HfLlmConfig;
