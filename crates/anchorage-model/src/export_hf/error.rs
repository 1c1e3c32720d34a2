//! What can stop an export to a Hugging Face folder.

use std::path::PathBuf;

/// An export refused or failed; nothing is left at the destination.
#[derive(Debug, thiserror::Error)]
pub enum HfExportError {
    /// The destination exists and is not an empty folder.
    #[error(
        "{0}: already exists and is not an empty folder; choose a new --out or remove it first"
    )]
    Exists(PathBuf),
    /// The run cannot be written as asked (the message says why and what to do).
    #[error("{path}: {message}")]
    Refused { path: PathBuf, message: String },
    /// A file of the run or of the export could not be read or written.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] crate::ModelError),
}

impl HfExportError {
    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}
