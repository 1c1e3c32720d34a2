//! From recipe sections (wire format) to the model configs of the crates that build models.

mod connector;

pub use connector::{connector_config, ConnectorDims};
