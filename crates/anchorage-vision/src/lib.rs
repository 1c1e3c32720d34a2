//! The frozen CLIP vision tower (`CLIPVisionModel`): hidden states up to a select layer and, on
//! request, the per-head CLS-row attention probabilities of a layer.
//!
//! ```text
//! pixel_values [B, 3, H, W]     (H = W = image_size, or any multiples of P when interpolating)
//!   -> embeddings (patch conv, no bias ‖ class token, + positions)   [B, T, D], T = (H/P)(W/P) + 1
//!   -> pre_layrnorm                                                  hidden_states[0]
//!   -> encoder.layers[i]: x + attn(ln1 x); x + mlp(ln2 x)            hidden_states[i + 1]
//!   -> post_layernorm(CLS of the last)                               pooled [B, D]
//! ```
//! Build with [`ClipVisionConfig::init`] (random weights from the backend's seeded generator) or load a Hugging Face
//! folder with [`load_clip_vision`]. Ask [`ClipVisionModel::forward`] for what you need through a
//! [`VisionRequest`]: layers after the deepest one asked for are never run. With
//! [`VisionRequest::with_interpolate_pos_encoding`] the tower runs at other input sizes, its
//! position table resized as transformers' `interpolate_pos_encoding` does ([`bicubic_weights`]).

mod attention;
mod bicubic;
mod config;
mod embeddings;
mod error;
mod hf_config;
mod inspect;
mod layer;
mod load;
mod model;
mod tensors_io;
mod wire;

/// The tensor-file layer's error, which [`VisionError::Tensors`] wraps.
pub use anchorage_tensors::TensorsError;
pub use attention::ClipAttention;
pub use bicubic::{bicubic_weights, resize_bicubic_grid};
pub use config::{ClipVisionConfig, HiddenAct};
pub use embeddings::ClipVisionEmbeddings;
pub use hf_config::{hf_config_json, hidden_act_name};
pub use error::{Result, VisionError};
pub use inspect::{inspect_tensors, LLAVA_SELECT_LAYER};
pub use layer::{ClipEncoderLayer, ClipMlp};
pub use load::{
    expected_tensors, load_clip_vision, load_clip_vision_from, load_clip_vision_with, LoadOptions,
    VISION_PREFIX,
};
pub use model::{
    select_features, ClipEncoder, ClipVisionModel, FeatureSelect, VisionOutput, VisionRequest,
};
pub use tensors_io::{read_safetensors, write_safetensors};
pub use wire::{read_config, read_config_json, WireConfig, WireVisionConfig};
