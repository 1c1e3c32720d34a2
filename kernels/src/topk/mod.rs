//! Top-k by score + gather of rows, for key/value or hidden-state compression. The public function
//! is the dispatch point for the CubeCL kernel (issue 7); today every backend runs the reference.

pub mod reference;

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::KernelError;

/// Keeps, per batch and head, the `k` rows with the largest score, in their original order.
///
/// Tie-break: the larger row index. Differentiable in `rows` (the backward is a scatter-add).
///
/// # Shapes
/// `scores [B, Hkv, L]`, `rows [B, Hkv, L, d] -> (kept [B, Hkv, k, d], indices [B, Hkv, k])`
pub fn topk_gather_rows<B: Backend>(
    scores: Tensor<B, 3>,
    rows: Tensor<B, 4>,
    k: usize,
) -> Result<(Tensor<B, 4>, Tensor<B, 3, Int>), KernelError> {
    reference::topk_gather_rows(scores, rows, k)
}
