//! Errors of the vision crate: each names the file, the key, or the expected and found shapes.

use std::path::PathBuf;

/// Everything that can go wrong when reading a CLIP vision checkpoint or running the tower.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON for a CLIP config.
    #[error("{path}: not a CLIP config.json: {message}")]
    Config { path: PathBuf, message: String },
    /// `config.json` names a model type this crate does not implement.
    #[error(
        "{path}: unsupported model_type {found:?} (expected \"clip_vision_model\", or \"clip\" with a vision_config)"
    )]
    UnsupportedModelType { path: PathBuf, found: String },
    /// A config value outside what the architecture supports.
    #[error("{path}: {field} = {value}: {reason}")]
    UnsupportedConfig {
        path: PathBuf,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// Reading the weights failed: no weight file in the folder, a truncated or malformed file,
    /// a missing shard (anchorage-tensors names the file and key).
    #[error(transparent)]
    Tensors(#[from] anchorage_tensors::TensorsError),
    /// Tensors the tower needs that the checkpoint does not hold (Hugging Face key names).
    #[error("{path}: missing {} tensor(s): {}", keys.len(), keys.join(", "))]
    MissingTensors { path: PathBuf, keys: Vec<String> },
    /// A tensor whose shape does not match the config (Hugging Face key and layout).
    #[error("{path}: tensor {key}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor stored in a dtype the tower cannot compute in.
    #[error("{path}: tensor {key}: unsupported dtype {dtype} (expected F32, BF16 or F16)")]
    UnsupportedDtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    /// burn-store reported a problem applying tensors to the module.
    #[error("{path}: loading weights failed: {message}")]
    Apply { path: PathBuf, message: String },
    /// A request the tower cannot answer (layer index out of range, wrong input shape).
    #[error("{0}")]
    Request(String),
}

/// Result alias of this crate.
pub type Result<T, E = VisionError> = std::result::Result<T, E>;
