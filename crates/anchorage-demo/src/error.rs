use std::path::PathBuf;

/// Errors of the demo towers, wrapping the crates below with context.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Data(#[from] anchorage_data::DataError),
    #[error(transparent)]
    Vision(#[from] anchorage_vision::VisionError),
    #[error(transparent)]
    Llm(#[from] anchorage_llm::LlmError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write weights {path}: {message}")]
    Save { path: PathBuf, message: String },
    #[error("demo training: {0}")]
    Train(String),
}

impl DemoError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
