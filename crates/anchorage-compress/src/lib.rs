//! Visual-token compression inside the LLM: ACT-IN-LLM, FastV and HiMAP as
//! [`LayerHooks`](anchorage_llm::LayerHooks) policies (spec §5–7), the scoring rules on plain
//! attention maps, and the FLOPs model of spec §5.4.
//!
//! Build hooks with [`CompressionPolicy::hooks`] and pass them to `Llm::forward_embeds` /
//! `Llm::generate` (in generation the prefill prunes or restricts, decode steps reuse the KV cache
//! it left). Hooks are reusable: their state resets when layer 0 starts; check
//! [`Compressor::take_error`] after each forward. [`Compressor::trace`] says what each layer saw,
//! for [`FlopsReport::from_trace`]; [`CompressionPolicy::schedule`] predicts it from settings alone. Each sample of a batch is scored with its own
//! attention and its own image span, and keeps `round(ratio * its image-token count)` tokens.
//!
//! ACT-IN-LLM runs both of the paper's selections: attention-guided top-k (K/V restricted to the
//! kept positions, projecting only their rows) and AvgPool-1D ([`ActSelection::AvgPool`]: pooled
//! keys/values through the seam's `kv_pool`). Where the FLOPs model and the implementation differ:
//! the layer before a stage starts reports attention rows and so projects every key/value even
//! when it is itself restricted, and AvgPool projects every token then pools (the model counts the
//! projection of the pooled keys only, and not the pooling product).

mod act;
mod config;
mod error;
mod fastv;
mod flops;
mod himap;
mod policy;
mod rows;
pub mod rules;
mod schedule;
mod trace;

pub use act::{act_stages, ActHooks, ActStage};
pub use config::{ActConfig, ActSelection, CompressionPolicy, FastVConfig, FastVRule, HimapConfig};
pub use error::CompressError;
pub use fastv::FastVHooks;
pub use flops::{FlopsReport, FlopsShape};
pub use himap::HimapHooks;
pub use policy::Compressor;
pub use rules::{keep_count, ScoreRule};
pub use trace::{LayerTokens, Selection, Trace};
