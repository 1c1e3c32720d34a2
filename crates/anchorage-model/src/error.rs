/// Errors of the composed model. Each names the sample (its index in the batch) or the shape.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("sample {sample}: {placeholders} image placeholder(s) in input_ids but {images} image(s) assigned")]
    ImageCount { sample: usize, placeholders: usize, images: usize },
    #[error("sample {sample}: image index {index} is out of range ({available} image feature sets in the batch)")]
    ImageIndex { sample: usize, index: usize, available: usize },
    #[error("sample {sample}: input_ids has {ids} tokens but labels has {labels}")]
    LabelLength { sample: usize, ids: usize, labels: usize },
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    Shape { what: &'static str, expected: Vec<usize>, found: Vec<usize> },
    #[error("empty batch")]
    EmptyBatch,
    #[error(transparent)]
    Vision(#[from] anchorage_vision::VisionError),
    #[error(transparent)]
    Connector(#[from] anchorage_connectors::ConnectorError),
    #[error(transparent)]
    Llm(#[from] anchorage_llm::LlmError),
}
