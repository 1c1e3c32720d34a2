//! [`TensorsError`]: every failure names the file and, where there is one, the tensor key.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a tensor file.
#[derive(Debug, thiserror::Error)]
pub enum TensorsError {
    /// A file or folder could not be opened, read, written, synced or renamed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (a shard index) is not what it should be.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The safetensors header itself is cut short or malformed.
    #[error("{path}: truncated or corrupt safetensors file: {message}")]
    Header { path: PathBuf, message: String },
    /// One tensor's entry does not fit the file: data past the end, overlapping another tensor,
    /// or a byte length that disagrees with shape x dtype.
    #[error("{path}: tensor `{key}`: {message}")]
    Entry {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// A dtype this layer cannot read or write.
    #[error("{path}: tensor `{key}` has unsupported dtype {dtype}")]
    Dtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    /// The same key in two files of one checkpoint (or twice in what is being written).
    #[error("tensor `{key}` appears in both {first} and {second}")]
    Duplicate {
        key: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// A key that the file (or checkpoint) does not hold.
    #[error("{path}: no tensor `{key}`")]
    Missing { path: PathBuf, key: String },
    /// A shard index that names a file outside its folder, or a key its shard does not hold.
    #[error("{path}: shard index: {message}")]
    Index { path: PathBuf, message: String },
    /// A model folder with no weight file this layer reads.
    #[error(
        "{dir}: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or \
         pytorch_model.bin.index.json"
    )]
    NoWeights { dir: PathBuf },
    /// burn-store could not parse a PyTorch pickle.
    #[error("{path}: cannot read PyTorch checkpoint: {source}")]
    Pytorch {
        path: PathBuf,
        #[source]
        source: burn_store::pytorch::PytorchError,
    },
    /// A PyTorch tensor whose data could not be read (truncated storage, unknown dtype).
    #[error("{path}: tensor `{key}`: {source}")]
    PytorchData {
        path: PathBuf,
        key: String,
        #[source]
        source: burn_store::TensorSnapshotError,
    },
}

/// Result alias of this crate.
pub type Result<T, E = TensorsError> = std::result::Result<T, E>;

/// `TensorsError::Io` for `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TensorsError + '_ {
    move |source| TensorsError::Io {
        path: path.to_path_buf(),
        source,
    }
}
