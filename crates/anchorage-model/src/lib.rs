//! The composed LLaVA model (`Llava`): vision tower → connector → splice → LLM (+ compression) →
//! masked causal-LM loss, or batched greedy generation. Built from a [`LlavaSpec`] (the recipe's
//! model sections) on a device, from tower folders, built-ins or Hub ids, and a connector export.
//!
//! Training and evaluation use this one model; neither reaches into the tower, connector or
//! compression crates themselves.

pub mod anyres_pack;
mod batch;
mod build;
mod checkpoint_weights;
mod error;
pub mod export;
pub mod export_hf;
mod generate;
pub mod hf_llava;
pub mod hub;
mod llava;
mod loss;
pub mod run_dir;
pub mod spec;
pub mod seeded;
mod splice;
mod towers;

pub use batch::{stack_images, ImageInput};
pub use build::Built;
pub use checkpoint_weights::{CheckpointWeights, NEWLINE_TAG};
pub use error::ModelError;
pub use generate::{Generation, Prompt};
pub use hub::{resolve_hub_model, HubAccess, HubError};
pub use llava::{ForwardOutput, Llava, Trainable, VisionSelect};
pub use loss::{causal_lm_loss, causal_lm_loss_from_hidden, LossParts};
pub use spec::LlavaSpec;
pub use splice::{splice_embeddings, splice_rows, ImageSpan, SpliceInput, SplicePlan, IGNORE_INDEX, IMAGE_TOKEN_INDEX};
pub use towers::materialize;
