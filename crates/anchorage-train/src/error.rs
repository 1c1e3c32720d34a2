use std::path::PathBuf;

use anchorage_data::Skipped;

/// Errors of recipe loading, planning and training. Each names the recipe key, file, sample or
/// replica that is wrong; errors of the crates below are wrapped with their own type.
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
    Key { path: PathBuf, key: String, message: String },
    #[error("override `{item}`: {message}")]
    Override { item: String, message: String },
    /// A value is well-formed but not valid (a ratio out of range, a missing file, ...).
    #[error("{path}: key `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the run folder (`state.json`) cannot be written or read.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A burn record (optimizer state) cannot be written or read.
    #[error("{path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: burn::record::RecorderError,
    },
    /// A bad sample with `data.strict = true`.
    #[error("{0} (data.strict = true stops at the first bad sample)")]
    Strict(Skipped),
    /// A data-parallel replica other than the first failed.
    #[error("data-parallel replica {replica}: {source}")]
    Replica {
        replica: usize,
        #[source]
        source: Box<TrainError>,
    },
    /// The background loader or a replica thread ended before the trainer expected it to.
    #[error("{what} stopped early (step {step})")]
    Stopped { what: &'static str, step: u64 },
    #[error(transparent)]
    Model(#[from] anchorage_model::ModelError),
    #[error(transparent)]
    Data(#[from] anchorage_data::DataError),
    #[error(transparent)]
    Tensors(#[from] anchorage_tensors::TensorsError),
    #[error(transparent)]
    Parallel(#[from] crate::trainer::ParallelError),
}
