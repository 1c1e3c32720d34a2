//! Errors of the compression crate.

use thiserror::Error;

/// What can go wrong when building or running a compression policy.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CompressError {
    /// A policy setting is out of range for this model.
    #[error("compression config: {key}: {message}")]
    Config { key: &'static str, message: String },
    /// The attention rows a hook received do not have the shape it asked for.
    #[error("layer {layer}: attention rows {found:?} do not match {expected}")]
    RowsShape {
        layer: usize,
        expected: String,
        found: Vec<usize>,
    },
    /// The attention rows could not be read back from the device.
    #[error("layer {layer}: reading attention rows failed: {message}")]
    ReadRows { layer: usize, message: String },
    /// A sample's layout contradicts what the policy selected earlier.
    #[error("layer {layer}, sample {sample}: {message}")]
    Layout { layer: usize, sample: usize, message: String },
}
