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
//! Known limits of the current LLM seam: ACT-IN-LLM's K/V restriction gathers keys/values after
//! projecting every token (the FLOPs model counts the ideal projection of kept keys only), and
//! the paper's AvgPool-1D K/V variant cannot be expressed (the seam restricts to existing
//! positions; [`ActSelection::UniformWindows`] is the stand-in).

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
