use std::ops::Range;
use std::path::PathBuf;

use crate::hook_error::HookError;

/// Errors of loading and running a decoder LLM. Each names the file, key, shape or sample that is
/// wrong.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("LoRA: {0}")]
    Lora(String),
    #[error("cannot read {path}: {source}")]
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
    /// `config.json` is well-formed but describes something this crate does not run.
    #[error("{path}: key `{key}`: {message}")]
    Config {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: unsupported model_type `{found}` (supported: llama, qwen2)")]
    UnsupportedModelType { path: PathBuf, found: String },
    /// Reading a checkpoint or tensor file failed: no weights in the folder, a truncated or
    /// corrupt file, a shard missing (anchorage-tensors names the file and key).
    #[error(transparent)]
    Tensors(#[from] anchorage_tensors::TensorsError),
    #[error("{dir}: {count} tensor(s) missing from the checkpoint: {keys}")]
    MissingKeys {
        dir: PathBuf,
        count: usize,
        keys: String,
    },
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: tensor `{key}` has unsupported dtype {dtype}")]
    Dtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("{path}: tensor `{key}` could not be applied: {message}")]
    Apply {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// An input tensor does not have the shape the call needs.
    #[error("{what}: expected shape {expected}, found {found:?}")]
    InputShape {
        what: String,
        expected: String,
        found: Vec<usize>,
    },
    /// A sample's attention mask is not right padding (a real token after a padding one).
    #[error("sample {sample}: attention mask is not right-padded (real token at {position} after padding)")]
    NotRightPadded { sample: usize, position: usize },
    /// A compression hook failed, or asked for something inconsistent with the current sequence;
    /// the forward stops rather than run uncompressed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// A sample's image span does not lie inside its real tokens.
    #[error("sample {sample}: image span {span:?} is outside the {len} real tokens")]
    ImageSpan { sample: usize, span: Range<usize>, len: usize },
    /// Reading a tensor back to the host failed (an unexpected element type).
    #[error("reading {what} back from the device: {message}")]
    HostRead { what: String, message: String },
    #[error("token id {id} is out of range for vocabulary size {vocab}")]
    TokenId { id: i64, vocab: usize },
}
