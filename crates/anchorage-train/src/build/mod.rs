//! From recipe sections (wire format) to the model configs of the crates that build models.

mod compression;
mod connector;

pub use compression::compression_policy;
pub use connector::{connector_config, ConnectorDims};
