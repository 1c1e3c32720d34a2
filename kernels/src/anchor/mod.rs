//! Anchor selection and gather: the public functions are the dispatch point. With the `wgpu` or
//! `cuda` feature, tensors of burn's CubeCL backends (plain or under `Autodiff`) go to the CubeCL
//! kernels (`crate::cube`); every other backend (flex) runs the pure tensor-op [`reference`] twin.

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
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        check_select_anchors(cls_attention.dims(), count)?;
        if let Some(indices) = crate::cube::select_anchors(&cls_attention, count) {
            return Ok(indices);
        }
    }
    reference::select_anchors(cls_attention, count)
}

/// The argument checks of [`select_anchors`] (the same errors as the reference twin's).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn check_select_anchors([batch, heads, tokens]: [usize; 3], count: usize) -> Result<(), KernelError> {
    let shape = vec![batch, heads, tokens];
    if heads == 0 || count % heads != 0 {
        return Err(KernelError::CountNotMultipleOfHeads { count, heads, shape });
    }
    if count > tokens.saturating_sub(1) {
        return Err(KernelError::TooFew { what: "select_anchors", asked: count, available: tokens.saturating_sub(1), shape });
    }
    Ok(())
}

/// Anchor indices `[B, N+1]` and the head that chose each `[B, N+1]` (`-1` for CLS).
pub type AnchorsAndHeads<B> = (Tensor<B, 2, Int>, Tensor<B, 2, Int>);

/// [`select_anchors`] that also returns, per anchor, the head that chose it (`-1` for CLS).
///
/// # Shapes
/// `cls_attention [B, H, T] -> (indices [B, count + 1], heads [B, count + 1])`
pub fn select_anchors_with_heads<B: Backend>(cls_attention: Tensor<B, 3>, count: usize) -> Result<AnchorsAndHeads<B>, KernelError> {
    reference::select_anchors_with_heads(cls_attention, count)
}

/// Gathers the tokens at `indices` from `tokens` (differentiable: the backward is a scatter-add).
///
/// On a plain CubeCL backend this is the vectorised row-gather kernel; under `Autodiff` it stays
/// burn's `gather` op so the graph records its scatter-add backward.
///
/// # Shapes
/// `tokens [B, T, D]`, `indices [B, N] -> [B, N, D]`
pub fn gather_tokens<B: Backend>(tokens: Tensor<B, 3>, indices: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, KernelError> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if tokens.dims()[0] == indices.dims()[0] {
        if let Some(gathered) = crate::cube::gather_rows(&tokens, &indices) {
            return Ok(gathered);
        }
    }
    reference::gather_tokens(tokens, indices)
}
