use std::path::PathBuf;

/// Errors of recipe loading and planning. Each names the recipe key or file that is wrong and, for
/// enums, the allowed values.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot read recipe {path}: {source}")]
    ReadRecipe {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: TOML syntax error: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A key is unknown, has the wrong type, or an enum value is not allowed. `key` is the dotted
    /// path (`connector.kind`); serde's message lists the allowed keys or values.
    #[error("{path}: key `{key}`: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("override `{item}`: {message}")]
    Override { item: String, message: String },
    /// A value is well-formed but not valid (a ratio out of range, a missing file, ...).
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An error from the model crates (vision, connector, LLM, splice), with their context.
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Data(#[from] anchorage_data::DataError),
}
