use thiserror::Error;

/// Errors of the anchor and top-k ops: each names the argument and the shape it got.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KernelError {
    /// The anchor count is not a multiple of the number of heads (AcFormer: `p = N / H`).
    #[error("anchor count {count} is not a multiple of the {heads} attention heads of cls_attention {shape:?}; AcFormer takes count/heads tokens per head (e.g. 144 = 16×9, 256 = 16×16)")]
    CountNotMultipleOfHeads { count: usize, heads: usize, shape: Vec<usize> },
    /// More tokens were asked for than there are to choose from.
    #[error("{what}: asked for {asked} tokens but only {available} are available (shape {shape:?})")]
    TooFew { what: &'static str, asked: usize, available: usize, shape: Vec<usize> },
    /// Two arguments disagree in shape.
    #[error("{what}: shape {found:?} does not match {expected}")]
    Shape { what: &'static str, expected: String, found: Vec<usize> },
}
