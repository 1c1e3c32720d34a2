//! Errors of loading and running a llava-hf checkpoint: each names the file and the key, the
//! shape expected and found, or the input that is wrong.

use std::path::PathBuf;

/// Everything that can go wrong with a llava-hf folder or an inspection input.
#[derive(Debug, thiserror::Error)]
pub enum HfLlavaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A config value this port does not (or transformers cannot) run.
    #[error("{path}: `{key}`: {message}")]
    Config {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// A tensor the model needs that the checkpoint does not hold.
    #[error("{path}: missing tensor `{key}`{hint}")]
    MissingTensor {
        path: PathBuf,
        key: String,
        hint: String,
    },
    /// A tensor whose shape does not fit the config.
    #[error("{path}: tensor `{key}`: expected shape {expected:?}, found {found:?}")]
    TensorShape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// Token ids, pixels or image sizes that do not fit the model.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Tensors(#[from] anchorage_tensors::TensorsError),
    #[error(transparent)]
    Vision(#[from] anchorage_vision::VisionError),
    #[error(transparent)]
    Llm(#[from] anchorage_llm::LlmError),
    #[error(transparent)]
    Connector(#[from] anchorage_connectors::ConnectorError),
    #[error(transparent)]
    Data(#[from] anchorage_data::DataError),
    #[error(transparent)]
    Model(#[from] crate::ModelError),
}
