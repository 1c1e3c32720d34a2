use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong building, loading or saving a connector. Each variant names the
/// file, the key and the shapes involved.
#[derive(Debug, Error)]
pub enum ConnectorError {
    #[error("{file}: missing key `{key}` (expected shape {expected:?}){hint}")]
    MissingKey { file: PathBuf, key: String, expected: Vec<usize>, hint: String },
    #[error("{file}: key `{key}` has shape {found:?}, the connector expects {expected:?}")]
    WrongShape { file: PathBuf, key: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{file}: unexpected keys for this connector: {keys:?}")]
    UnexpectedKeys { file: PathBuf, keys: Vec<String> },
    #[error("{file}: {message}")]
    File { file: PathBuf, message: String },
    #[error("{file}: metadata `{key}`: {message}")]
    Metadata { file: PathBuf, key: String, message: String },
    #[error("{what}: shape {found:?} does not fit: {expected}")]
    InputShape { what: String, expected: String, found: Vec<usize> },
    #[error("connector config `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("format `{format}` cannot hold a {kind} connector: {reason}")]
    Format { format: String, kind: String, reason: String },
    #[error(transparent)]
    Kernel(#[from] anchorage_kernels::KernelError),
    /// Reading or writing a tensor file failed (anchorage-tensors names the file and key).
    #[error(transparent)]
    Tensors(#[from] anchorage_tensors::TensorsError),
}

pub type Result<T> = std::result::Result<T, ConnectorError>;
