//! Errors of the compression crate.

use thiserror::Error;

/// What can go wrong when building or running a compression policy. A hook returns a running
/// error inside anchorage-llm's `HookError`, which names the layer (and the sample, where one is
/// at fault); the forward then ends with it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CompressError {
    /// A policy setting is out of range (for this model, when one is known).
    #[error("compression config: {key}: {message}")]
    Config { key: &'static str, message: String },
    /// The attention rows a hook received do not have the shape it asked for.
    #[error("attention rows {found:?} do not match {expected}")]
    RowsShape { expected: String, found: Vec<usize> },
    /// The attention rows could not be read back from the device.
    #[error("reading attention rows failed: {message}")]
    ReadRows { message: String },
    /// The attention rows a selection needs (asked for at layer `asked_at`) never arrived.
    #[error("the attention rows asked for at layer {asked_at} never arrived, so nothing was selected")]
    MissingRows { asked_at: usize },
}
