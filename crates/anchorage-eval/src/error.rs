//! The one error type of the crate: every variant names the file (and line or id) it is about.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    /// A whole-file JSON document did not parse.
    #[error("{path}: not valid JSON: {source}")]
    JsonFile { path: PathBuf, source: serde_json::Error },

    /// One line of a JSON-lines file did not parse (the reference's `json.loads` raises there too).
    #[error("{path}: line {line}: not valid JSON: {source}")]
    JsonLine { path: PathBuf, line: usize, source: serde_json::Error },

    /// A record lacks a field the reference reads, or has it with a type the reference cannot use.
    #[error("{path}: {at}: {message}")]
    Field { path: PathBuf, at: String, message: String },

    /// A result names a question the annotations do not have (the reference raises `KeyError`).
    #[error("{results}: {at}: question {id} is not in {annotations}{hint}")]
    NotAnnotated { results: PathBuf, at: String, id: String, annotations: PathBuf, hint: String },

    /// A question the reference needs an answer for has none in the result file.
    #[error("{annotations}: question {id} has no prediction in {results}{hint}")]
    MissingPrediction { annotations: PathBuf, id: String, results: PathBuf, hint: String },

    /// A question could not be prepared (its image, its prompt).
    #[error("question {id} (line {line}): {source}")]
    Question { id: String, line: usize, source: Box<EvalError> },

    /// A comparison table or plot cannot be made from these runs (none given, nothing to plot).
    #[error("compare: {message}")]
    Compare { message: String },

    /// A plot could not be encoded as PNG.
    #[error("encoding {path}: {source}")]
    Png { path: PathBuf, source: image::ImageError },

    #[error(transparent)]
    Model(#[from] anchorage_model::ModelError),

    #[error(transparent)]
    Data(#[from] anchorage_data::DataError),

    /// The reference fails on this input (a division by zero, an assertion, a lookup): the message
    /// says where and why.
    #[error("{path}: {message}")]
    Reference { path: PathBuf, message: String },
}

impl EvalError {
    pub(crate) fn field(path: &Path, at: impl Into<String>, message: impl Into<String>) -> Self {
        EvalError::Field { path: path.to_path_buf(), at: at.into(), message: message.into() }
    }

    pub(crate) fn reference(path: &Path, message: impl Into<String>) -> Self {
        EvalError::Reference { path: path.to_path_buf(), message: message.into() }
    }
}
