//! Vision-language connectors: LLaVA's MLP, Honeybee's C-Abstractor, the Perceiver Resampler and
//! AcFormer's Anchor Former, with export and import under upstream key names.
//!
//! [`ConnectorConfig`] (serde-tagged by `kind`) builds a [`Connector`]:
//! `forward(features [B,T,D], cls_attention Option<[B,H,T]>) -> [B,Q,D_out]`, with
//! `output_tokens` and `parameter_count`. [`format`] saves and loads connector files (the
//! `anchorage` format of run folders, LLaVA / AcFormer / Honeybee / transformers names) and imports
//! LLaVA's `mm_projector.bin`. Each module cites the upstream file it follows.

pub mod anchor_former;
pub mod anchors_png;
pub mod c_abstractor;
pub mod connector;
mod error;
pub mod format;
pub mod mlp;
pub mod perceiver;
pub mod regnet;
pub mod resampler;
pub mod tensor_file;
pub mod weights;

pub use anchor_former::{AnchorFormer, AnchorFormerConfig};
pub use c_abstractor::{CAbstractor, CAbstractorConfig};
pub use connector::{Connector, ConnectorConfig};
pub use error::{ConnectorError, Result};
pub use format::{ConnectorMeta, ExportFormat};
pub use mlp::{Mlp, MlpActivation, MlpConfig};
pub use perceiver::{Perceiver, PerceiverConfig};
pub use resampler::{Resampler, ResamplerConfig};
pub use tensor_file::TensorFile;
/// The tensor-file layer's error, which [`ConnectorError::Tensors`] wraps.
pub use anchorage_tensors::TensorsError;
/// The anchor and gather ops (anchorage-kernels), re-exported for the binary.
pub use anchorage_kernels as kernels;
