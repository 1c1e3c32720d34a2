/// Errors of the composed model. Each names the sample (its index in the batch), the shape or the
/// spec key; errors of the crates it composes are wrapped, never flattened.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("sample {sample}: {placeholders} image placeholder(s) in input_ids but {images} image(s) assigned")]
    ImageCount { sample: usize, placeholders: usize, images: usize },
    #[error("sample {sample}: image index {index} is out of range ({available} image feature sets in the batch)")]
    ImageIndex { sample: usize, index: usize, available: usize },
    #[error("sample {sample}: token id {id} is outside the LLM's vocabulary of {vocab} (is the tokenizer the LLM's own?)")]
    TokenId { sample: usize, id: i64, vocab: usize },
    #[error("sample {sample}: input_ids has {ids} tokens but labels has {labels}")]
    LabelLength { sample: usize, ids: usize, labels: usize },
    #[error("sample {sample}: the image has side {found}, the vision tower takes {expected}")]
    ImageSize { sample: usize, expected: usize, found: usize },
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    Shape { what: &'static str, expected: Vec<usize>, found: Vec<usize> },
    #[error("empty batch")]
    EmptyBatch,
    /// A model section asks for something that cannot be built (`key` is the dotted recipe key).
    #[error("`{key}`: {message}")]
    Spec { key: String, message: String },
    /// A connector file (`connector.init`, an export) does not fit the spec.
    #[error("{path}: {message}")]
    ConnectorFile { path: std::path::PathBuf, message: String },
    /// A run or step folder is not what generation and evaluation can load.
    #[error("{path}: {message}")]
    RunFolder { path: std::path::PathBuf, message: String },
    /// A burn record (step checkpoint weights) could not be read or written.
    #[error("{path}: checkpoint weights: {message}")]
    Record { path: std::path::PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Vision(#[from] anchorage_vision::VisionError),
    #[error(transparent)]
    Connector(#[from] anchorage_connectors::ConnectorError),
    #[error(transparent)]
    Llm(#[from] anchorage_llm::LlmError),
    #[error(transparent)]
    Compress(#[from] anchorage_compress::CompressError),
    #[error(transparent)]
    Data(#[from] anchorage_data::DataError),
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
}
