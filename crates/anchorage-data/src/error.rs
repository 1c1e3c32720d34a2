use std::path::PathBuf;

/// Errors of the data crate. Every variant names the file (and where it applies the sample id or
/// key) so that a user can find what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: JSON syntax error at line {line}, column {column}: {message}")]
    JsonSyntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot decode image {path}: {message}")]
    ImageDecode { path: PathBuf, message: String },
    #[error("{path}: unsupported image preprocessor config: {message}")]
    PreprocessorConfig { path: PathBuf, message: String },
    #[error("{what}: expected shape {expected}, found {found}")]
    Shape {
        what: String,
        expected: String,
        found: String,
    },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("cannot write safetensors {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, err: &serde_json::Error) -> Self {
        Self::JsonSyntax {
            path: path.into(),
            line: err.line(),
            column: err.column(),
            message: err.to_string(),
        }
    }
}
