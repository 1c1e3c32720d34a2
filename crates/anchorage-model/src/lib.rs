//! The composed model: vision tower → connector → splice → LLM (+ compression) → masked causal-LM
//! loss. This crate holds the pieces between the towers: the splice of image features into the
//! text embeddings with LLaVA's semantics, and the loss.

mod error;
mod llava;
mod loss;
mod splice;

pub use error::ModelError;
pub use llava::{encode_images, forward_loss, ForwardOutput, MicroBatch, VisionSelect};
pub use loss::{causal_lm_loss, LossParts};
pub use splice::{splice_embeddings, ImageSpan, SpliceInput, SplicePlan, IGNORE_INDEX, IMAGE_TOKEN_INDEX};
