//! Vision-language connectors: LLaVA's MLP, Honeybee's C-Abstractor, the Perceiver Resampler and
//! AcFormer's Anchor Former, with export and import under upstream key names.

mod error;
pub mod mlp;
pub mod perceiver;
pub mod tensor_file;
pub mod weights;

pub use error::{ConnectorError, Result};
pub use mlp::{Mlp, MlpActivation, MlpConfig};
pub use perceiver::{Perceiver, PerceiverConfig};
pub use tensor_file::TensorFile;
pub mod anchor_former;
pub mod c_abstractor;
pub mod regnet;
pub mod resampler;
pub use anchor_former::{AnchorFormer, AnchorFormerConfig};
pub use c_abstractor::{CAbstractor, CAbstractorConfig};
pub use resampler::{Resampler, ResamplerConfig};
pub mod connector;
pub use connector::{Connector, ConnectorConfig};
pub mod format;
pub use format::{ConnectorMeta, ExportFormat};
pub mod anchors_png;
/// The anchor and gather ops (anchorage-kernels), re-exported for the binary.
pub use anchorage_kernels as kernels;
