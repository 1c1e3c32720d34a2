//! Anchor selection and gather: the public functions are the dispatch point for the CubeCL kernels
//! (issue 7). Until those land every backend runs the pure tensor-op [`reference`] twin.

pub mod reference;

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::KernelError;

/// AcFormer's anchors: CLS plus, per head, the `count / H` best-attended patch tokens not already
/// chosen by earlier heads, ordered by token index.
///
/// Follows liuhaogeng/Anchor-Former `clip_encoder.py` (l.42–58). Tie-break: the larger token index.
///
/// # Shapes
/// `cls_attention [B, H, T]` (row 0 of the select layer's attention, CLS at token 0)
/// `-> indices [B, count + 1]` (i64 token indices, ascending, `indices[:, 0] == 0`).
pub fn select_anchors<B: Backend>(cls_attention: Tensor<B, 3>, count: usize) -> Result<Tensor<B, 2, Int>, KernelError> {
    reference::select_anchors(cls_attention, count)
}

/// Gathers the tokens at `indices` from `tokens` (differentiable: the backward is a scatter-add).
///
/// # Shapes
/// `tokens [B, T, D]`, `indices [B, N] -> [B, N, D]`
pub fn gather_tokens<B: Backend>(tokens: Tensor<B, 3>, indices: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, KernelError> {
    reference::gather_tokens(tokens, indices)
}
