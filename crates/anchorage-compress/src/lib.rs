//! Visual-token compression inside the LLM: ACT-IN-LLM, FastV and HiMAP as
//! [`LayerHooks`](anchorage_llm::LayerHooks) policies (FastV: pkunlp-icler/FastV; HiMAP: ustc-hyin/HiMAP; ACT-IN-LLM: its ICLR 2025 submission), the scoring rules on plain
//! attention maps, and the FLOPs model FastV's paper (arXiv 2403.06764) is quoted with.
//!
//! A recipe's `[compression]` table deserialises straight into [`CompressionPolicy`] (serde, tag
//! `method`); [`CompressionPolicy::validate`] and [`CompressionPolicy::check`] are the only checks
//! of its values. Build hooks with [`CompressionPolicy::hooks`] and pass them to
//! `Llm::forward_embeds` / `Llm::generate` (in generation the prefill prunes or restricts, decode
//! steps reuse the KV cache it left). A selection that cannot be made is an error the forward
//! returns (`LlmError::Hook`, naming the layer), never an uncompressed forward. Hooks are
//! reusable: their state resets when layer 0 starts. [`Compressor::trace`] says what each layer
//! saw, for [`FlopsReport::from_trace`]; [`CompressionPolicy::schedule`] predicts it from settings
//! alone. Each sample of a batch is scored with its own attention and its own image span, and
//! keeps `round(ratio * its image-token count)` tokens.
//!
//! FastV and HiMAP are one policy, [`PruneHooks`]: a list of [`PruneStage`]s (the layer, the keep
//! ratio, the [`ScoreRule`]); [`FastVConfig::stages`] is one stage, [`HimapConfig::stages`] two.
//!
//! ACT-IN-LLM runs both of the paper's selections: attention-guided top-k (K/V restricted to the
//! kept positions, projecting only their rows) and AvgPool-1D ([`ActSelection::AvgPool`]: pooled
//! keys/values through the seam's `KvAccess::Pool`). Where the FLOPs model and the implementation differ:
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
mod prune;
mod rows;
pub mod rules;
mod schedule;
mod trace;

pub use act::{act_stages, ActHooks, ActStage};
pub use config::{ActConfig, ActSelection, CompressionPolicy, FastVConfig, FastVRule, HimapConfig};
pub use error::CompressError;
pub use flops::{FlopsReport, FlopsShape};
pub use policy::Compressor;
pub use prune::{PruneHooks, PruneStage};
pub use rules::{keep_count, ScoreRule};
pub use trace::{LayerTokens, Selection, Trace};
