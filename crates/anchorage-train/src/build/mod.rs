//! From recipe sections (wire format) to the configs of the crates that build models.

mod compression;

pub use compression::compression_policy;
