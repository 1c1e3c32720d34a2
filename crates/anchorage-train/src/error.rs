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
    /// Another process trains into the run folder (`<run>/train.lock`).
    #[error("{path}: the run folder is in use: {message}; nothing was changed")]
    Locked { path: PathBuf, message: String },
    /// `--resume` found step folders, but none verifies (each reason is listed).
    #[error("{run_dir}: no step checkpoint verifies, so there is nothing to resume from (nothing was changed; to start the run over, move these step folders away):\n{reasons}")]
    NoVerifiedCheckpoint { run_dir: PathBuf, reasons: String },
    /// `--resume` with a recipe that differs from the checkpoint's.
    #[error("{path}: {message}")]
    RecipeChanged { path: PathBuf, message: String },
    /// The loss or gradient norm was not finite for too many optimizer steps in a row.
    #[error("the run diverged: the loss or gradient norm was not finite for {in_a_row} optimizer steps in a row (steps {first} to {step}; optim.max_nonfinite_steps = {limit}); those steps were skipped without an update, and the last checkpoint is from before them: resume it with, for example, a lower optim.lr (--set optim.lr=... --allow-recipe-change)")]
    Diverged { step: u64, first: u64, in_a_row: u64, limit: u64 },
    /// Every sample of the run was skipped: there is nothing trained to export.
    #[error("{run_dir}: every sample was skipped ({skipped} skips, see skipped.jsonl): the connector never trained, so it is not exported")]
    NothingTrained { run_dir: PathBuf, skipped: u64 },
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
